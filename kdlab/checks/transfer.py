"""Exercise checks for notebook 05 (hard vs soft targets, transfer sets).

Each check runs the learner's function on a small fixed input, compares it with
:mod:`kdlab.transfer`, and names the typical mistake when they differ.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .. import transfer
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import probe as _probe
from .feedback import report as _report
from .hints import for_exercise


def _as_index_tensor(value) -> torch.Tensor | None:
    try:
        return torch.as_tensor(value)
    except Exception:  # noqa: BLE001 - judged by the caller
        return None


@for_exercise("stratified_fraction")
def check_stratified_fraction(my_stratified_indices: Callable | None) -> Feedback:
    """Exercise: ``my_stratified_indices(labels, fraction, seed)`` returns the indices of a
    subset holding ``max(1, round(fraction * n_c))`` examples of every class c, without
    repeats, different for different seeds."""
    if my_stratified_indices is None:
        return _not_done("define my_stratified_indices(labels, fraction, seed).")
    # Unbalanced classes (60, 30, 10 examples), so a plain random sample of 10% is not stratified.
    labels = torch.cat([torch.zeros(60), torch.ones(30), torch.full((10,), 2)]).long()
    labels = labels[torch.randperm(100, generator=torch.Generator().manual_seed(1))]
    fraction = 0.1
    expected = {0: 6, 1: 3, 2: 1}
    value, err = _call(my_stratified_indices, labels, fraction, 0, name="my_stratified_indices")
    if err is not None:
        return err
    idx = _as_index_tensor(value)
    if idx is None or idx.dim() != 1:
        return _report(False, f"Return a 1-D tensor (or list) of indices into labels, got {type(value).__name__}.")
    if idx.dtype == torch.bool:
        return _report(False, "You returned a boolean mask; return the indices it selects: mask.nonzero().flatten().")
    if idx.is_floating_point():
        return _report(False, "Your indices are floats; return integer indices (dtype torch.long).")
    idx = idx.long()
    if len(idx) == len(labels) and set(idx.tolist()) == set(range(len(labels))):
        return _report(False, "You returned every index: draw only fraction of each class's examples.")
    if len(idx) and (idx.min() < 0 or idx.max() >= len(labels)):
        return _report(False, f"Indices must lie in [0, {len(labels) - 1}]; yours run from {int(idx.min())} to "
                              f"{int(idx.max())}.")
    if len(set(idx.tolist())) != len(idx):
        return _report(False, "Some indices appear twice: draw without replacement (e.g. a torch.randperm of each "
                              "class's members, then its first k).")
    counts = {c: int((labels[idx] == c).sum()) for c in expected}
    if counts == expected:
        other = _probe(my_stratified_indices, labels, fraction, 1)
        if other is not None and sorted(torch.as_tensor(other).long().tolist()) == sorted(idx.tolist()):
            return _report(False, "The counts are right, but seed=0 and seed=1 give the same subset: use the seed "
                                  "(e.g. torch.Generator().manual_seed(seed)) when you shuffle.")
        tiny = _probe(my_stratified_indices, labels, 0.01, 0)
        if tiny is not None and sorted(int((labels[torch.as_tensor(tiny).long()] == c).sum()) > 0
                                       for c in expected) != [True] * 3:
            return _report(False, "Right for 10%, but with fraction=0.01 some class gets no example at all: keep at "
                                  "least one per class (max(1, round(fraction * n_c))).")
        return _report(True, f"Correct: {counts} examples of classes 0, 1, 2 — the same 10% of each class.")
    if len(idx) == round(fraction * len(labels)):
        return _report(False, f"You drew {len(idx)} examples in total, but per class you got {counts} instead of "
                              f"{expected}: draw round(fraction * n_c) from each class separately (stratify).")
    if len(idx) == round(100 * fraction * len(labels)) or sum(counts.values()) > len(labels) // 2:
        return _report(False, f"You drew {len(idx)} examples; fraction is a share in (0, 1], not a percentage.")
    return _report(False, f"Per class you drew {counts}; expected {expected} (round(fraction * n_c) of each class).")


@for_exercise("shift_bias")
def check_shift_bias(my_shift_bias: Callable | None) -> Feedback:
    """Exercise: ``my_shift_bias(model, cls, offset)`` returns a copy of ``model`` whose output
    bias for class ``cls`` is raised by ``offset``; the original model is not changed."""
    if my_shift_bias is None:
        return _not_done("define my_shift_bias(model, cls, offset).")
    from .. import models
    model = models.create("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=(16,), seed=0)
    before = copy.deepcopy(model.state_dict())
    cls, offset = 3, 2.5
    value, err = _call(my_shift_bias, model, cls, offset, name="my_shift_bias")
    if err is not None:
        return err
    changed_original = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    if not isinstance(value, nn.Module):
        hint = " (you changed the model in place and returned nothing?)" if changed_original else ""
        return _report(False, f"Return the shifted model (an nn.Module), got {type(value).__name__}{hint}.")
    if value is model or changed_original:
        return _report(False, "You changed the original model: make a copy first (copy.deepcopy(model)) and shift "
                              "the copy, so the unshifted student stays available for comparison.")
    try:
        bias = transfer.output_layer(value).bias.detach()
        weight = transfer.output_layer(value).weight.detach()
    except Exception as exc:  # noqa: BLE001
        return _report(False, f"The returned model has no output layer with a bias: {exc}")
    orig_layer = transfer.output_layer(model)
    orig = orig_layer.bias.detach()
    delta = bias - orig
    want = torch.zeros_like(orig)
    want[cls] = offset
    if not torch.equal(weight, orig_layer.weight.detach()):
        return _report(False, "You changed the output layer's weights; add the offset to its bias only "
                              "(model.output_layer.bias).")
    if torch.allclose(delta, want, atol=1e-6):
        x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ok = torch.allclose(value(x), transfer.shift_logits(model(x), cls, offset), atol=1e-5)
        if not ok:
            return _report(False, "The bias is right but the outputs differ elsewhere: change only the output bias.")
        return _report(True, f"Correct: logit {cls} rises by {offset} for every input, nothing else changes, "
                             "and the original model is untouched.")
    if torch.allclose(delta, -want, atol=1e-6):
        return _report(False, f"You lowered the bias by {offset}; raise it (+= offset).")
    if torch.allclose(delta, torch.full_like(orig, offset), atol=1e-6):
        return _report(False, f"You shifted every class's bias; shift only bias[{cls}].")
    shifted = (delta.abs() > 1e-6).nonzero().flatten().tolist()
    if len(shifted) == 1 and abs(float(delta[shifted[0]]) - offset) < 1e-6:
        return _report(False, f"You shifted the bias of class {shifted[0]}; shift class {cls} (bias[cls]).")
    if not shifted:
        return _report(False, "The output bias did not change: add offset to output_layer.bias[cls] "
                              "(inside torch.no_grad()).")
    return _report(False, f"The bias changed by {[round(float(d), 3) for d in delta]}; expected +{offset} at "
                          f"index {cls} and 0 elsewhere.")


@for_exercise("pseudo_labels")
def check_pseudo_labels(my_pseudo_labels: Callable | None) -> Feedback:
    """Exercise: ``my_pseudo_labels(teacher_logits)`` returns the teacher's top-1 class per
    example, int64 ``(N,)``."""
    if my_pseudo_labels is None:
        return _not_done("define my_pseudo_labels(teacher_logits).")
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.1], [0.0, 0.2, 3.0, 1.0], [1.0, 4.0, 0.0, -2.0],
                           [0.3, 0.1, 0.2, 2.0], [5.0, 1.0, 1.5, 0.0]])
    expected = transfer.hard_pseudo_labels(logits)
    value, err = _call(my_pseudo_labels, logits, name="my_pseudo_labels")
    if err is not None:
        return err
    value = torch.as_tensor(value)
    if value.shape == logits.shape:
        if torch.allclose(value.float(), torch.nn.functional.one_hot(expected, 4).float()):
            return _report(False, "You returned one-hot vectors; return the class indices (argmax), shape (N,). "
                                  "F.cross_entropy takes indices.")
        return _report(False, "You returned a (N, K) tensor, e.g. probabilities; a hard label is one class index "
                              "per example: logits.argmax(dim=1).")
    if value.shape == (logits.shape[1],):
        return _report(False, "You took the argmax over the batch (dim=0); take it over the classes (dim=1).")
    if value.shape != expected.shape:
        return _report(False, f"Expected shape {tuple(expected.shape)} (one label per example), got "
                              f"{tuple(value.shape)}.")
    if value.is_floating_point():
        if torch.allclose(value, logits.max(dim=1).values):
            return _report(False, "Those are the largest logits; return their positions: logits.argmax(dim=1).")
        return _report(False, "Labels must be integer class indices (dtype torch.long), not floats.")
    if torch.equal(value.long(), expected):
        return _report(True, f"Correct: the teacher's hard labels are {expected.tolist()}.")
    if torch.equal(value.long(), logits.argmin(dim=1)):
        return _report(False, "You took the argmin; the teacher's prediction is the argmax.")
    return _report(False, f"Got {value.tolist()}, expected {expected.tolist()}: logits.argmax(dim=1).")
