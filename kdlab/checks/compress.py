"""Exercise checks for notebook 09 (pruning, quantization and distillation compared).

Every check prints its feedback and returns a :class:`Feedback` (truthy when the answer is
right); an unanswered exercise gets a friendly "not done yet" note, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import compress
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import probe as _probe
from .feedback import report as _report
from .hints import for_exercise


def _sparsity_model() -> nn.Module:
    """Two layers of very different sizes and sparsities, so a per-layer average differs from
    the global fraction, and non-zero biases, so counting them changes the answer."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5))
    with torch.no_grad():
        for layer, keep in ((model[0], 0.3), (model[2], 0.9)):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
            layer.weight.mul_((torch.rand(layer.weight.shape, generator=gen) < keep).float())
            layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) + 0.5)
    return model


@for_exercise("global_sparsity")
def check_global_sparsity(my_sparsity: Callable[[nn.Module], float] | None) -> Feedback:
    """Exercise: ``my_sparsity(model)`` is the fraction of zero entries among all the weights of the
    model's ``nn.Linear`` layers taken together (biases excluded)."""
    if my_sparsity is None:
        return _not_done("define my_sparsity(model).")
    model = _sparsity_model()
    expected = compress.sparsity(model)
    value, err = _call(my_sparsity, model, name="my_sparsity")
    if err is not None:
        return err
    try:
        value = float(value)
    except (TypeError, ValueError):
        return _report(False, f"my_sparsity returned {value!r}; return one number, a fraction in [0, 1].")
    layers = [model[0], model[2]]
    per_layer = sum(float((l.weight == 0).float().mean()) for l in layers) / len(layers)
    with_bias = (sum(int((l.weight == 0).sum()) + int((l.bias == 0).sum()) for l in layers)
                 / sum(l.weight.numel() + l.bias.numel() for l in layers))
    zeros = sum(int((l.weight == 0).sum()) for l in layers)
    if abs(value - expected) < 1e-6:
        # A second model, pruned with a mask, catches answers that read weight_orig (the unmasked weights).
        pruned = compress.prune_global(nn.Sequential(nn.Linear(20, 10)), 0.6)
        second = _probe(my_sparsity, pruned)
        if second is not None and abs(float(second) - 0.6) > 1e-6:
            return _report(False, f"Right on a plain model ({value:.4f}), but on a pruned one you got {float(second):.4f} "
                                  "instead of 0.6000: read module.weight (the masked weight), not weight_orig.")
        return _report(True, f"Correct: {value:.4f} of the weights are zero ({zeros} of "
                             f"{sum(l.weight.numel() for l in layers)}).")
    if abs(value - (1 - expected)) < 1e-6:
        return _report(False, f"You returned {value:.4f}, the fraction of NON-zero weights (the density); sparsity "
                              f"is the fraction that are zero, {expected:.4f}.")
    if abs(value - 100 * expected) < 1e-4:
        return _report(False, f"You returned a percentage ({value:.2f}); return a fraction in [0, 1].")
    if abs(value - zeros) < 1e-6:
        return _report(False, f"You returned the count of zeros ({zeros}); divide by the number of weights.")
    if abs(value - per_layer) < 1e-6:
        return _report(False, f"You averaged the layers' sparsities ({value:.4f}); the global sparsity counts all "
                              "weights together, so the big layer weighs more: total zeros / total weights.")
    if abs(value - with_bias) < 1e-6:
        return _report(False, f"You counted the biases too ({value:.4f}); pruning (and this exercise) only counts the "
                              "layers' weight matrices.")
    return _report(False, f"You returned {value:.4f}, expected {expected:.4f}: sum (w == 0) over every Linear "
                          "layer's weight, divided by the total number of those weights.")


_PARETO_POINTS = [(120, 0.91), (40, 0.90), (300, 0.97), (80, 0.93), (80, 0.95), (500, 0.96), (20, 0.62), (300, 0.94)]


@for_exercise("pareto_front")
def check_pareto_front(my_pareto_front: Callable[[list], list] | None) -> Feedback:
    """Exercise: ``my_pareto_front(points)`` takes ``(size, accuracy)`` pairs and returns those that no
    other point beats (smaller or equal size AND higher or equal accuracy, better in one), sorted by size."""
    if my_pareto_front is None:
        return _not_done("define my_pareto_front(points).")
    points = list(_PARETO_POINTS)
    expected = [tuple(p) for p in compress.pareto_front(points)]
    value, err = _call(my_pareto_front, list(points), name="my_pareto_front")
    if err is not None:
        return err
    try:
        got = [tuple(p) for p in value]
    except TypeError:
        return _report(False, f"my_pareto_front returned {value!r}; return a list of (size, accuracy) pairs.")
    if got == expected:
        return _report(True, f"Correct: {len(expected)} of {len(points)} points are on the front: {expected}.")
    if sorted(got) == sorted(expected):
        return _report(False, "You found the right points but not in order; sort them by size, smallest first.")
    worse = [p for p in got if p not in expected]
    missing = [p for p in expected if p not in got]
    reversed_front = [tuple(p) for p in compress.pareto_front([(-s, a) for s, a in points])]
    if sorted(got) == sorted((-s, a) for s, a in reversed_front):
        return _report(False, "You kept the points that are LARGER for their accuracy: a smaller size is better, "
                              "so a point is beaten by one that is no larger and no less accurate.")
    if worse:
        example = worse[0]
        beater = next((q for q in points if q[0] <= example[0] and q[1] >= example[1] and q != example), None)
        why = f" ({beater} is no larger and at least as accurate)" if beater else ""
        return _report(False, f"{example} is dominated and should not be on the front{why}.")
    if missing:
        hint = " A point is only beaten by one that is no larger AND no less accurate, and strictly better in one."
        return _report(False, f"You missed {missing}.{hint}")
    return _report(False, f"You returned {got}; expected {expected}.")
