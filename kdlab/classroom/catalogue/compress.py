"""The exercises of notebook 09 (pruning, quantization and distillation compared)."""

from __future__ import annotations

import torch
from torch import nn

from ... import compress
from ...checks import compress as checks
from ..exercises import Exercise

NOTEBOOK = "09_pruning_quantization"


def _linear_sparsity(model: nn.Module) -> float:
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def _global_sparsity_tests(t):
    t.formative(checks.check_global_sparsity)
    # nn layers draw their initial weights from the global generator: seed a fork of it, so that grading
    # leaves the notebook's random state as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(90)
        dense = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
        zero = nn.Sequential(nn.Linear(3, 3))
        mixed = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 10), nn.Linear(10, 3))
        pruned = compress.prune_global(nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 4)), 0.3)
    t.expect(t.close(t.number(t.call(dense)), 0.0, atol=1e-9), "A model without zero weights has sparsity 0.")
    with torch.no_grad():
        zero[0].weight.zero_()
    t.expect(t.close(t.number(t.call(zero)), 1.0, atol=1e-9), "A model whose weights are all zero has sparsity 1.")
    with torch.no_grad():
        mixed[0].weight.zero_()  # a zero conv: not counted, the exercise counts Linear weights only
        mixed[2].weight[:, :2] = 0
    expected = _linear_sparsity(mixed)
    t.expect(t.close(t.number(t.call(mixed)), expected, atol=1e-9),
             f"Count the nn.Linear weights only (not Conv2d, not biases): expected {expected:.4f}.")
    t.expect(t.close(t.number(t.call(pruned)), compress.sparsity(pruned), atol=1e-9),
             "Wrong on a pruned model: read module.weight (the masked weight), not weight_orig.")


def _pareto_tests(t):
    t.formative(checks.check_pareto_front)
    gen = torch.Generator().manual_seed(91)
    random_points = [(int(s), round(float(a), 2)) for s, a in
                     zip(torch.randint(10, 60, (25,), generator=gen), torch.rand(25, generator=gen))]
    cases = (([], "no points"), ([(10, 0.5)], "a single point"),
             ([(10, 0.5), (10, 0.5), (20, 0.4)], "two identical points (neither beats the other)"),
             ([(30, 0.9), (20, 0.9), (40, 0.95)], "two points of equal accuracy"),
             (random_points, "25 random points"))
    for points, what in cases:
        value = t.call(list(points))
        try:
            got = [tuple(p) for p in value]
        except TypeError:
            got = None
        expected = [tuple(p) for p in compress.pareto_front(points)]
        t.expect(got == expected, f"Wrong for {what}: expected {expected}, got {value!r}.")


GLOBAL_SPARSITY = Exercise(
    id="global_sparsity", notebook=NOTEBOOK, answer="my_sparsity", points=3,
    hints=("Collect the weights of the nn.Linear layers: [m.weight for m in model.modules() if isinstance(m, "
           "torch.nn.Linear)].",
           "Add up the zeros of all of them, (w == 0).sum(), and divide by the total number of weights: one "
           "fraction for the whole model, not an average of the layers'."),
    stub='''def my_sparsity(model):
    # Loop over model.modules(), keep the torch.nn.Linear ones, count (weight == 0).
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)''',
    check="kdlab.checks.check_global_sparsity(my_sparsity)",
    references=("kdlab.compress.sparsity", "kdlab.compress.layer_sparsities"),
    tests=_global_sparsity_tests,
)

PARETO_FRONT = Exercise(
    id="pareto_front", notebook=NOTEBOOK, answer="my_pareto_front", points=3,
    hints=("Point q beats point p when q[0] <= p[0] and q[1] >= p[1] and q != p: no larger, no less accurate.",
           "Keep the points that no other point beats, then sort them by size: sorted(front)."),
    stub='''def my_pareto_front(points):
    # Keep p unless some q has q[0] <= p[0] and q[1] >= p[1] and q != p; sort by size.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''front = [p for p in points
         if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)]
return sorted(front)''',
    check="kdlab.checks.check_pareto_front(my_pareto_front)",
    references=("kdlab.compress.pareto_front",),
    tests=_pareto_tests,
)

EXERCISES = (GLOBAL_SPARSITY, PARETO_FRONT)
