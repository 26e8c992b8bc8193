"""The exercises of notebook 08 (interpretable students: the soft decision tree's arithmetic)."""

from __future__ import annotations

import torch

from ... import interpretable
from ...checks import interpretable as checks
from ..exercises import Exercise

NOTEBOOK = "08_interpretable_students"


def _leaf_paths_tests(t):
    t.formative(checks.check_leaf_paths)
    p = torch.rand(7, 3, generator=torch.Generator().manual_seed(80))
    value = t.call(p)
    t.expect(t.close(value, interpretable.path_probabilities(p)),
             "Wrong for a float32 batch of 7: leaves left to right are left-left, left-right, right-left, right-right.")
    t.expect(t.close(torch.as_tensor(value).sum(1), torch.ones(7)), "Each row must sum to 1.")
    p = p.clone().requires_grad_()
    mine = t.call(p)
    t.expect(isinstance(mine, torch.Tensor) and mine.requires_grad,
             f"No gradient flows through {t.name}, so the tree could not learn its decisions.")
    weights = torch.arange(1.0, 5.0)
    (grad,) = torch.autograd.grad((mine * weights).sum(), p)
    (want,) = torch.autograd.grad((interpretable.path_probabilities(p) * weights).sum(), p)
    t.expect(t.close(grad, want), "The gradient with respect to p_right is wrong.")


def _balance_penalty_tests(t):
    t.formative(checks.check_balance_penalty)
    gen = torch.Generator().manual_seed(81)
    for depth, batch in ((2, 5), (3, 32)):
        p = (torch.rand(batch, 2 ** depth - 1, generator=gen, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
        _, reach = interpretable.path_probabilities(p.detach(), return_reach=True)
        depths = interpretable.node_depths(depth)
        value = t.call(p, reach, depths)
        want = interpretable.balance_penalty(p, reach, depths)
        t.expect(t.close(value, want, atol=1e-6),
                 f"Wrong for a depth-{depth} tree ({2 ** depth - 1} inner nodes) and a batch of {batch}: expected "
                 f"{want.item():.5f}, got {t.number(value)}.")
        t.expect(isinstance(value, torch.Tensor) and value.requires_grad,
                 f"No gradient flows through {t.name}, so the penalty could not steer training.")
        (grad,) = torch.autograd.grad(value, p)
        (grad_want,) = torch.autograd.grad(want, p)
        t.expect(t.close(grad, grad_want, atol=1e-6), f"The gradient of the penalty is wrong at depth {depth}.")


LEAF_PATHS = Exercise(
    id="leaf_paths", notebook=NOTEBOOK, answer="my_leaf_paths", points=3,
    hints=("A leaf's probability is the product of the decisions on its path: p for a step right, 1 - p for a "
           "step left.",
           "The left-left leaf is (1 - root) * (1 - left child); the right subtree uses the right child, "
           "p_right[:, 2]. Stack the four columns with torch.stack(..., dim=1)."),
    stub='''def my_leaf_paths(p_right):
    # Multiply the decisions along each root-to-leaf path (1 - p for a step left).
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''root, left, right = p_right[:, 0], p_right[:, 1], p_right[:, 2]
return torch.stack([(1 - root) * (1 - left), (1 - root) * left,  # leaves left to right
                    root * (1 - right), root * right], dim=1)''',
    check="kdlab.checks.check_leaf_paths(my_leaf_paths)",
    references=("kdlab.interpretable.path_probabilities",),
    tests=_leaf_paths_tests,
)

BALANCE_PENALTY = Exercise(
    id="balance_penalty", notebook=NOTEBOOK, answer="my_balance_penalty", points=4,
    hints=("alpha per node is the reach-weighted average decision: (reach * p_right).sum(0) / reach.sum(0).",
           "Each node's term is 2 ** -depth * -0.5 * log(4 * alpha * (1 - alpha)); sum the terms over the nodes."),
    stub='''def my_balance_penalty(p_right, reach, depths):
    # alpha per node (reach-weighted average), then the decayed sum of the penalty terms.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''alpha = (reach * p_right).sum(0) / reach.sum(0)  # reach-weighted average decision per node
decay = 2.0 ** -depths.double()  # the root counts most
return (decay * -0.5 * torch.log(4 * alpha * (1 - alpha))).sum()''',
    check="kdlab.checks.check_balance_penalty(my_balance_penalty)",
    references=("kdlab.interpretable.balance_penalty", "kdlab.interpretable.average_decisions"),
    tests=_balance_penalty_tests,
)

EXERCISES = (LEAF_PATHS, BALANCE_PENALTY)
