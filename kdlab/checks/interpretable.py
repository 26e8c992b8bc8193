"""Exercise checks for notebook 08, interpretable students (soft decision trees)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import interpretable
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import probe as _probe
from .feedback import report as _report
from .hints import for_exercise


def _as_tensor(value, name: str):
    try:
        return torch.as_tensor(value, dtype=torch.float64), None
    except Exception as err:  # noqa: BLE001 - reported as feedback
        return None, _report(False, f"{name} should return a tensor; got {type(value).__name__} ({err}).")


@for_exercise("leaf_paths")
def check_leaf_paths(my_leaf_paths: Callable[[torch.Tensor], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_leaf_paths(p_right)`` maps the 3 inner nodes' right-probabilities of a
    depth-2 tree, ``(B, 3)`` as [root, left child, right child], to the 4 leaves' path
    probabilities ``(B, 4)``, leaves left to right."""
    if my_leaf_paths is None:
        return _not_done("define my_leaf_paths(p_right).")
    p = torch.tensor([[0.2, 0.7, 0.4], [0.9, 0.1, 0.5], [0.5, 0.5, 0.5]], dtype=torch.float64)
    expected = interpretable.path_probabilities(p)
    value, err = _call(my_leaf_paths, p.clone(), name="my_leaf_paths")
    if err is not None:
        return err
    value, err = _as_tensor(value, "my_leaf_paths")
    if err is not None:
        return err
    if tuple(value.shape) != (3, 4):
        return _report(False, f"For p_right of shape (3, 3) the answer has shape (3, 4), one column per leaf; "
                              f"you returned {tuple(value.shape)}.")
    if torch.allclose(value, expected, atol=1e-6):
        if _probe(my_leaf_paths, torch.rand(5, 3, dtype=torch.float64)) is None:
            return _report(False, "Right on the test batch, but your function fails on a batch of 5 inputs; "
                                  "do not assume a batch size.")
        return _report(True, "Correct: each leaf's probability is the product of the decisions on its path, "
                             "and every row sums to 1.")
    sums = value.sum(1)
    root, left, right = p[:, 0], p[:, 1], p[:, 2]
    swapped = torch.stack([root * right, root * (1 - right), (1 - root) * left, (1 - root) * (1 - left)], 1)
    if torch.allclose(value, swapped, atol=1e-6) or torch.allclose(value, swapped.flip(1), atol=1e-6):
        return _report(False, "You have left and right the wrong way round: p_right is the probability of going "
                              "RIGHT, so the leftmost leaf has probability (1 - p_root) * (1 - p_left).")
    wrong_child = torch.stack([(1 - root) * (1 - right), (1 - root) * right, root * (1 - left), root * left], 1)
    if torch.allclose(value, wrong_child, atol=1e-6):
        return _report(False, "The left subtree must use the LEFT child's decision p_right[:, 1], and the right "
                              "subtree the right child's p_right[:, 2]; you used them the other way round.")
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-6):
        return _report(False, f"Each row should sum to 1 (every input ends in exactly one leaf), yours sum to "
                              f"{[round(float(s), 3) for s in sums]}. Multiply the probabilities along each path, "
                              "using 1 - p for a step to the left.")
    return _report(False, f"For p_right={p[0].tolist()} expected {[round(float(v), 3) for v in expected[0]]}, got "
                          f"{[round(float(v), 3) for v in value[0]]}. Leaf order: left-left, left-right, right-left, "
                          "right-right.")


@for_exercise("balance_penalty")
def check_balance_penalty(my_balance_penalty: Callable | None) -> Feedback:
    """Exercise: ``my_balance_penalty(p_right, reach, depths)`` returns
    ``sum_i 2^(-d_i) * -1/2 * log(4 alpha_i (1 - alpha_i))`` with ``alpha_i`` the
    reach-weighted average of node i's right-probabilities."""
    if my_balance_penalty is None:
        return _not_done("define my_balance_penalty(p_right, reach, depths).")
    gen = torch.Generator().manual_seed(8)
    p = torch.rand(16, 3, generator=gen, dtype=torch.float64)
    _, reach = interpretable.path_probabilities(p, return_reach=True)
    depths = interpretable.node_depths(2)
    expected = float(interpretable.balance_penalty(p, reach, depths))
    value, err = _call(my_balance_penalty, p.clone(), reach.clone(), depths.clone(), name="my_balance_penalty")
    if err is not None:
        return err
    try:
        value = float(value)
    except (TypeError, ValueError, RuntimeError):
        return _report(False, f"Return one number (a 0-dim tensor or a float), got {type(value).__name__} "
                              f"{getattr(value, 'shape', '')}: sum over the nodes.")
    if abs(value - expected) < 1e-6:
        balanced = _probe(my_balance_penalty, torch.full((4, 3), 0.5, dtype=torch.float64),
                          torch.tensor([[1.0, 0.5, 0.5]] * 4, dtype=torch.float64), depths.clone())
        if balanced is None or abs(float(balanced)) > 1e-6:
            return _report(False, "Right on the test batch, but for perfectly balanced nodes (alpha = 0.5) your "
                                  f"penalty is {balanced} instead of 0.")
        return _report(True, f"Correct: penalty {value:.4f}; it is 0 only when every node splits its inputs evenly.")

    alpha = (reach * p).sum(0) / reach.sum(0)
    decay = 2.0 ** -depths.double()
    term = lambda a: -0.5 * torch.log(4 * a * (1 - a))  # noqa: E731
    plain_alpha = p.mean(0)
    if abs(value - float((decay * term(plain_alpha)).sum())) < 1e-6:
        return _report(False, "You averaged p_right without weighting by the probability of reaching each node: "
                              "alpha_i = sum(reach_i * p_i) / sum(reach_i). An input that never reaches a node "
                              "should not count towards its balance.")
    if abs(value - float(term(alpha).sum())) < 1e-6:
        return _report(False, "You forgot the decay with depth: multiply node i's term by 2 ** -depths[i], so the "
                              "root counts most.")
    if abs(value - float((decay * -0.5 * (torch.log(alpha) + torch.log(1 - alpha))).sum())) < 1e-6:
        return _report(False, "Close: that is the paper's form, -1/2 (log a + log(1 - a)), which is log 2 at a "
                              "balanced node. Use -1/2 log(4 a (1 - a)) so that balanced splits cost exactly 0.")
    if abs(value + expected) < 1e-6:
        return _report(False, "The sign is flipped: the penalty is -1/2 * log(4 a (1 - a)), which is >= 0.")
    if abs(value - float((decay * term(alpha)).mean())) < 1e-6:
        return _report(False, "You averaged over the nodes; sum the weighted terms instead.")
    return _report(False, f"Expected {expected:.4f}, got {value:.4f}. Steps: alpha = (reach * p_right).sum(0) / "
                          "reach.sum(0); term = -0.5 * log(4 * alpha * (1 - alpha)); sum of 2 ** -depths * term.")
