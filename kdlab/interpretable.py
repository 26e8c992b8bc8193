"""Interpretable students: a soft decision tree, and the figures that read it.

A *soft decision tree* (Frosst & Hinton 2017) is a complete binary tree of depth
``D``. Each of its ``2^D - 1`` inner nodes ``i`` is a logistic filter: it sends an
input ``x`` to its right child with probability

    p_i(x) = sigmoid(beta * (w_i . x + b_i))

and to its left child with ``1 - p_i(x)``. The probability of reaching leaf ``l``
is the product of the decisions along its path, ``P_l(x)``; the ``2^D`` leaves
hold learned class distributions ``Q_l = softmax(phi_l)``. Every filter ``w_i``
has the shape of an input image, so it can be *looked at*, and one prediction is
a short sequence of filter decisions.

Here the tree's output is the log of the path-weighted mixture of its leaves,

    z(x) = log( sum_l P_l(x) Q_l ),

which are valid logits (``softmax(z) = sum_l P_l Q_l``), so the kit's one
training loop, its metrics and its distillation losses work on the tree
unchanged. (Frosst & Hinton minimise instead the path-weighted cross-entropy of
the individual leaves, ``-sum_l P_l(x) sum_k T_k log Q_lk``, and predict with the
single most probable leaf; :meth:`SoftDecisionTree.predict_max_path` gives that
prediction too.)

Balancing penalty (Frosst & Hinton, section 4): a node that sends (almost) every
input one way wastes its subtree. For inner node ``i`` at depth ``d_i`` let
``alpha_i`` be its average decision, weighted by the probability of reaching it:

    alpha_i = sum_x P_i(x) p_i(x) / sum_x P_i(x)
    C = sum_i 2^(-d_i) * ( -1/2 * log(4 * alpha_i * (1 - alpha_i)) )

The paper writes ``-1/2 (log alpha + log(1 - alpha))``; we subtract its minimum,
``log 2``, so a perfectly balanced tree costs exactly 0 (the gradient is the same).
:class:`BalancedTree` adds ``strength * C`` to any objective of the loop. (The
paper also averages ``alpha`` over recent batches for deep nodes; here it is the
batch average.)

Reference:
    N. Frosst, G. Hinton. "Distilling a Neural Network Into a Soft Decision Tree."
    CEx workshop, AI*IA 2017. arXiv:1711.09784.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import models, validate
from .errors import ParameterError, ParameterTypeError
from .objectives import CrossEntropy, Objective

MAX_DEPTH = 10  # 1,023 filters and 1,024 leaves: already far past "readable"


# --- pure functions: the arithmetic of a tree, shared by the model, tests and checks --------

def node_depths(depth: int) -> torch.Tensor:
    """Depth of each inner node in breadth-first order (root 0): ``(2^depth - 1,)`` long."""
    depth = validate.integer("depth", depth, low=1)
    return torch.cat([torch.full((2 ** d,), d, dtype=torch.long) for d in range(depth)])


def _tree_depth(n_inner: int) -> int:
    depth = int(round(math.log2(n_inner + 1)))
    if 2 ** depth - 1 != n_inner or depth < 1:
        raise ParameterError(f"p_right has {n_inner} inner nodes; a complete binary tree has 2^depth - 1 "
                             "(1, 3, 7, 15, ...), in breadth-first order.")
    return depth


def path_probabilities(p_right: torch.Tensor, *, return_reach: bool = False):
    """Probability of reaching every leaf from the inner nodes' decisions.

    Args:
        p_right: ``(B, 2^D - 1)`` probability that each inner node sends the input
            right, nodes in breadth-first order (root, its left child, its right child, ...).
        return_reach: also return ``(B, 2^D - 1)``, the probability of *reaching* each
            inner node (1 for the root).

    Returns:
        ``(B, 2^D)`` leaf probabilities, leaves left to right; each row sums to 1.
    """
    if p_right.dim() != 2:
        raise ParameterError(f"p_right must have shape (batch, inner nodes), got {tuple(p_right.shape)}.")
    depth = _tree_depth(p_right.shape[1])
    reach = [p_right.new_ones(p_right.shape[0], 1)]  # (B, 1): everything reaches the root
    for d in range(depth):
        mu = reach[-1]                                 # (B, 2^d) reach of the nodes at level d
        p = p_right[:, 2 ** d - 1: 2 ** (d + 1) - 1]   # (B, 2^d) their decisions
        reach.append(torch.stack([mu * (1 - p), mu * p], dim=2).flatten(1))  # children: left, right
    leaves = reach.pop()
    return (leaves, torch.cat(reach, dim=1)) if return_reach else leaves


def average_decisions(p_right: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """``alpha_i``: each inner node's probability of going right, averaged over the batch
    and weighted by the probability of reaching the node. ``(B, N), (B, N) -> (N,)``."""
    return (reach * p_right).sum(0) / reach.sum(0).clamp_min(1e-12)


def balance_penalty(p_right: torch.Tensor, reach: torch.Tensor, depths: torch.Tensor | None = None,
                    eps: float = 1e-6) -> torch.Tensor:
    """Frosst & Hinton's balancing penalty, shifted so that balanced splits cost 0:
    ``sum_i 2^(-d_i) * -1/2 * log(4 alpha_i (1 - alpha_i))`` (a 0-dim tensor, >= 0)."""
    if p_right.shape != reach.shape:
        raise ParameterError(f"p_right {tuple(p_right.shape)} and reach {tuple(reach.shape)} must have the same shape.")
    if depths is None:
        depths = node_depths(_tree_depth(p_right.shape[1]))
    alpha = average_decisions(p_right, reach).clamp(eps, 1 - eps)
    decay = torch.pow(2.0, -depths.to(device=p_right.device, dtype=p_right.dtype))
    return (decay * -0.5 * torch.log(4 * alpha * (1 - alpha))).sum()


# --- the model -----------------------------------------------------------------------------

class SoftDecisionTree(nn.Module):
    """Soft decision tree of ``depth`` levels of logistic filters; ``forward`` returns logits.

    ``forward(x)`` also stores ``last_penalty``: the depth-decayed balancing penalty of
    this batch (a tensor in the autograd graph), which :class:`BalancedTree` adds to
    the loss. See the module docstring for the formulas.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], depth: int = 4, beta: float = 1.0):
        super().__init__()
        self.depth = validate.integer("depth", depth, low=1)
        if self.depth > MAX_DEPTH:
            raise ParameterError(f"depth={depth!r} is too deep to read or train here; accepted: 1 to {MAX_DEPTH}.")
        self.beta = validate.positive("beta", beta)
        self.num_classes = validate.integer("num_classes", num_classes, low=2)
        self.input_shape = tuple(input_shape)
        self.n_inner, self.n_leaves = 2 ** self.depth - 1, 2 ** self.depth
        self.inner = nn.Linear(math.prod(self.input_shape), self.n_inner)      # one filter per row
        self.leaf_logits = nn.Parameter(0.1 * torch.randn(self.n_leaves, self.num_classes))  # phi_l
        self.register_buffer("depths", node_depths(self.depth), persistent=False)
        self.last_penalty: torch.Tensor | None = None

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, 2^D - 1)``: probability that each inner node sends x right."""
        return torch.sigmoid(self.beta * self.inner(x.flatten(1)))

    def path_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2^D)``: probability of reaching each leaf (rows sum to 1)."""
        return path_probabilities(self.routing(x))

    def leaf_distributions(self) -> torch.Tensor:
        """``(2^D, K)``: each leaf's class distribution ``softmax(phi_l)`` (detached)."""
        return self.leaf_logits.detach().softmax(dim=1)

    def filters(self) -> torch.Tensor:
        """``(2^D - 1, C, H, W)``: every inner node's filter ``w_i`` as an image, breadth-first."""
        return self.inner.weight.detach().view(-1, *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        z = self.beta * self.inner(x.flatten(1)).float()                     # (B, N) filter activations
        p_right = torch.sigmoid(z)
        leaves, reach = path_probabilities(p_right, return_reach=True)        # (B, L), (B, N)
        self.last_penalty = balance_penalty(p_right, reach, self.depths)
        # log sum_l P_l Q_l, in log space: the mixture of leaf distributions stays exact when P_l is tiny.
        log_leaf = torch.log(leaves.clamp_min(1e-30))                         # (B, L)
        log_q = F.log_softmax(self.leaf_logits.float(), dim=1)                # (L, K)
        return torch.logsumexp(log_leaf[:, :, None] + log_q[None], dim=1)     # (B, K)

    @torch.no_grad()
    def predict_max_path(self, x: torch.Tensor) -> torch.Tensor:
        """Frosst & Hinton's readable prediction: follow the single most probable path and
        return that leaf's most likely class, ``(B,)``."""
        best_leaf = self.path_probabilities(x).argmax(dim=1)
        return self.leaf_distributions().argmax(dim=1)[best_leaf]

    @torch.no_grad()
    def decision_path(self, x: torch.Tensor) -> list[tuple[int, float]]:
        """For ONE input ``(C, H, W)``: the greedy path as ``(node, p_right)`` pairs, root first."""
        p = self.routing(x.unsqueeze(0))[0]
        node, path = 0, []
        while node < self.n_inner:
            path.append((node, float(p[node])))
            node = 2 * node + (2 if p[node] >= 0.5 else 1)
        return path


def _build(num_classes: int, input_shape: Sequence[int], depth: int = 4, beta: float = 1.0) -> SoftDecisionTree:
    return SoftDecisionTree(num_classes, input_shape, depth=depth, beta=beta)


models.register("soft_tree", _build)


# --- the objective -------------------------------------------------------------------------

class BalancedTree(Objective):
    """Any objective plus the tree's balancing penalty: ``L = base + strength * C``.

    ``base`` is e.g. :class:`~kdlab.objectives.CrossEntropy` (hard labels) or
    :class:`~kdlab.objectives.Distillation`; the penalty ``C`` is the one the tree
    stored in its last forward pass (the loop's forward on this batch).
    """

    def __init__(self, tree: SoftDecisionTree, base: Objective | None = None, strength: float = 0.1):
        super().__init__()
        if not isinstance(tree, SoftDecisionTree):
            raise ParameterTypeError(f"tree must be a SoftDecisionTree, got {type(tree).__name__}.")
        base = base if base is not None else CrossEntropy()
        if not isinstance(base, Objective):
            raise ParameterTypeError(f"base must be a kdlab.objectives.Objective, got {type(base).__name__}.")
        self.base = base
        self.teacher = base.teacher
        self.strength = validate.real("strength", strength, low=0.0)
        self._tree = (tree,)  # a tuple, so the tree's parameters are not registered as the objective's

    def prepare(self, split, **kwargs) -> None:
        self.base.prepare(split, **kwargs)

    def forward(self, student_logits, batch):
        loss, logs = self.base(student_logits, batch)
        penalty = self._tree[0].last_penalty
        if penalty is None:
            raise ParameterError("the tree has not run a forward pass yet; BalancedTree needs the penalty "
                                 "that SoftDecisionTree.forward stores.")
        return loss + self.strength * penalty, {**logs, "balance": penalty.detach()}

    def describe(self) -> dict:
        return {**self.base.describe(), "balance_objective": "BalancedTree", "balance_strength": self.strength}


# --- figures -------------------------------------------------------------------------------

def _show(ax, image: torch.Tensor, title: str = "", fontsize: int = 7) -> None:
    img = image.float().cpu()
    img = img[0] if img.shape[0] == 1 else img.mean(0)
    lim = float(img.abs().max()) or 1.0
    ax.imshow(img.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)  # red: pushes right / towards the class
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_tree(tree: SoftDecisionTree, *, levels: int | None = None, class_names: Sequence[str] | None = None,
              title: str = ""):
    """The tree's filters laid out by level (root on top) and, when every level is shown,
    a bottom row with each leaf's distribution. Red pixels push an input to the right child."""
    import matplotlib.pyplot as plt

    levels = tree.depth if levels is None else validate.integer("levels", levels, low=1)
    levels = min(levels, tree.depth)
    show_leaves = levels == tree.depth
    cols = 2 ** (levels if show_leaves else levels - 1)
    rows = levels + int(show_leaves)
    fig = plt.figure(figsize=(min(1.0 * cols + 1, 18), 1.3 * rows + 0.6))
    grid = fig.add_gridspec(rows, cols)
    filters = tree.filters()
    names = list(class_names) if class_names is not None else [str(k) for k in range(tree.num_classes)]
    for d in range(levels):
        span = cols // 2 ** d  # each node is centred over the columns of its subtree
        for j in range(2 ** d):
            node = 2 ** d - 1 + j
            start = j * span + (span - 1) // 2
            ax = fig.add_subplot(grid[d, start: start + (2 if span > 1 else 1)] if span > 1 else grid[d, start])
            _show(ax, filters[node], f"node {node}")
    if show_leaves:
        q = tree.leaf_distributions().cpu()
        for leaf in range(tree.n_leaves):
            ax = fig.add_subplot(grid[levels, leaf])
            ax.bar(range(tree.num_classes), q[leaf].numpy(), color="tab:blue")
            ax.set_ylim(0, 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"→{names[int(q[leaf].argmax())]}", fontsize=8)
    fig.suptitle(title or f"soft decision tree, depth {tree.depth}" + ("" if show_leaves else f" (top {levels} levels)"))
    fig.tight_layout()
    return fig


def plot_templates(templates: Mapping[str, torch.Tensor], class_names: Sequence[str] | None = None, title: str = ""):
    """One row of per-class images per entry of ``templates`` (name -> ``(K, C, H, W)``),
    each image on its own symmetric colour scale (red: evidence for the class)."""
    import matplotlib.pyplot as plt

    if not templates:
        raise ParameterError("templates is empty; pass {name: tensor of shape (K, C, H, W)}.")
    k = next(iter(templates.values())).shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    fig, axes = plt.subplots(len(templates), k, figsize=(1.1 * k, 1.3 * len(templates) + 0.4), squeeze=False)
    for r, (row_name, w) in enumerate(templates.items()):
        for c in range(k):
            _show(axes[r, c], w[c], names[c] if r == 0 else "", fontsize=9)
        axes[r, 0].set_ylabel(row_name, fontsize=9)
    fig.suptitle(title or "linear students: one weight template per class")
    fig.tight_layout()
    return fig
