"""Transfer sets: what the student is trained on, and how to read what it learned.

Hinton et al. (2015, sections 3 and 6) ask what a *transfer set* must contain for
distillation to work: a small fraction of the data (soft targets as a regulariser),
a set with one class left out (the student never sees a 3, yet recognises 3s once
its bias for class 3 is corrected), or only two classes. This module holds the
pieces those experiments need, each small and checked:

* :func:`stratified_indices` / :func:`stratified_fraction`: the same fraction of
  every class, drawn with a seed;
* :func:`class_indices`, :func:`without_classes`, :func:`only_classes`: class filters;
* :func:`epochs_for_steps`: epochs that give a fixed number of optimiser steps,
  so a 1% subset gets as many updates as the full set;
* :func:`hard_pseudo_labels`: the teacher's argmax predictions;
* :func:`per_class_accuracy`;
* :func:`shift_bias` (a shifted copy of a model), :func:`shift_logits` (the same
  shift applied to cached logits), :func:`bias_sweep` and :func:`best_offset`.

Adding ``offset`` to the output bias of class c adds ``offset`` to logit c of every
input and changes nothing else, so a sweep over offsets can run on cached logits.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import validate
from .data import Split, stratified_indices  # noqa: F401 - one sampler, also offered here for notebook 05
from .errors import ParameterError, ParameterTypeError


def _labels(labels: torch.Tensor | np.ndarray | Sequence[int], name: str = "labels") -> torch.Tensor:
    y = torch.as_tensor(labels)
    if y.dim() != 1 or y.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
        raise ParameterTypeError(f"{name} must be a 1-D tensor of integer class labels, got dtype {y.dtype} "
                                 f"and shape {tuple(y.shape)}.")
    return y.long()


def _classes(classes: int | Iterable[int], name: str = "classes") -> list[int]:
    """``classes`` as a sorted list of distinct non-negative ints (one int is accepted too)."""
    if isinstance(classes, numbers.Integral) and not isinstance(classes, bool):
        classes = [int(classes)]
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise ParameterTypeError(f"{name} must be a class index or a list of class indices, got {classes!r}.")
    items = list(classes)
    if not items:
        raise ParameterError(f"{name}={items!r} is empty; give at least one class index.")
    for c in items:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
            raise ParameterError(f"{name}={items!r} must hold class indices (integers >= 0); {c!r} is not one.")
    return sorted({int(c) for c in items})


# --- subsets ----------------------------------------------------------------------------------

def stratified_fraction(split: Split, fraction: float, seed: int = 0) -> Split:
    """The split restricted to a stratified ``fraction`` of its examples (see
    :func:`stratified_indices`; use that function when cached per-example values,
    such as teacher logits, must be indexed the same way)."""
    if not isinstance(split, Split):
        raise ParameterTypeError(f"split must be a kdlab.data.Split (e.g. ds.train), got {type(split).__name__}.")
    return split.subset(stratified_indices(split.y, fraction, seed))


def class_indices(labels: torch.Tensor | np.ndarray | Sequence[int], classes: int | Iterable[int], *,
                  keep: bool = True) -> torch.Tensor:
    """Indices (sorted, int64, CPU) of the examples whose label is in ``classes``
    (``keep=True``) or is not (``keep=False``). Every class must occur in ``labels``
    (a typo such as class 33 would otherwise silently filter nothing), and the
    result must not be empty."""
    y = _labels(labels).cpu()
    wanted = _classes(classes)
    present = sorted(torch.unique(y).tolist())
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ParameterError(f"classes={wanted!r}: class(es) {missing} do not occur in the labels; "
                             f"the labels present are {present}.")
    mask = torch.isin(y, torch.tensor(wanted))
    if not keep:
        mask = ~mask
    idx = mask.nonzero().flatten()
    if len(idx) == 0:
        raise ParameterError(f"classes={wanted!r} with keep={keep} leaves no examples; "
                             f"the labels present are {present}.")
    return idx


def without_classes(split: Split, classes: int | Iterable[int]) -> Split:
    """The split with every example of ``classes`` removed (e.g. ``without_classes(ds.train, [3])``)."""
    if not isinstance(split, Split):
        raise ParameterTypeError(f"split must be a kdlab.data.Split (e.g. ds.train), got {type(split).__name__}.")
    return split.subset(class_indices(split.y, classes, keep=False))


def only_classes(split: Split, classes: int | Iterable[int]) -> Split:
    """The split restricted to the examples of ``classes`` (e.g. ``only_classes(ds.train, [7, 8])``)."""
    if not isinstance(split, Split):
        raise ParameterTypeError(f"split must be a kdlab.data.Split (e.g. ds.train), got {type(split).__name__}.")
    return split.subset(class_indices(split.y, classes, keep=True))


def epochs_for_steps(n_examples: int, batch_size: int, steps: int) -> int:
    """The fewest epochs over ``n_examples`` that give at least ``steps`` optimiser steps
    with ``batch_size`` (the loop takes ``ceil(n / batch_size)`` steps per epoch).

    Training every subset for the same number of *steps* (rather than epochs) gives a
    1% subset as many updates as the full set; with a fixed number of epochs it would
    get a hundredth of them and be undertrained rather than overfitted.
    """
    n_examples = validate.integer("n_examples", n_examples, low=1)
    batch_size = validate.integer("batch_size", batch_size, low=1)
    steps = validate.integer("steps", steps, low=1)
    per_epoch = math.ceil(n_examples / batch_size)
    return math.ceil(steps / per_epoch)


# --- targets and per-class scores -------------------------------------------------------------

def hard_pseudo_labels(teacher_logits: torch.Tensor) -> torch.Tensor:
    """The teacher's top-1 predictions ``argmax_k z_t[i, k]``, int64 ``(N,)``: what a student
    trained on "hard" teacher targets sees (all of the teacher's other beliefs dropped)."""
    logits = torch.as_tensor(teacher_logits)
    if logits.dim() != 2:
        raise ParameterError(f"teacher_logits must have shape (N, num_classes), got {tuple(logits.shape)}.")
    return logits.argmax(dim=1)


def per_class_accuracy(logits: torch.Tensor, targets: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Accuracy of ``logits.argmax(1)`` on each true class, float ``(K,)`` on the CPU;
    ``nan`` for a class with no examples in ``targets``."""
    logits = torch.as_tensor(logits)
    y = _labels(targets, "targets").to(logits.device)
    if logits.dim() != 2 or logits.shape[0] != y.shape[0]:
        raise ParameterError(f"logits {tuple(logits.shape)} and targets {tuple(y.shape)} must be (N, K) and (N,).")
    k = logits.shape[1] if num_classes is None else validate.integer("num_classes", num_classes, low=1)
    correct = (logits.argmax(1) == y).float()
    totals = torch.bincount(y, minlength=k).float()
    hits = torch.bincount(y, weights=correct, minlength=k).float()
    acc = hits / totals
    acc[totals == 0] = float("nan")
    return acc.cpu()


# --- output-bias shifts ----------------------------------------------------------------------

def output_layer(model: nn.Module) -> nn.Linear:
    """The final ``nn.Linear`` of ``model`` (``model.output_layer`` for kdlab's MLP)."""
    if not isinstance(model, nn.Module):
        raise ParameterTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    layer = getattr(model, "output_layer", None)
    if layer is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        layer = linears[-1] if linears else None
    if not isinstance(layer, nn.Linear) or layer.bias is None:
        raise ParameterError(f"model {type(model).__name__} has no final nn.Linear layer with a bias to shift.")
    return layer


def shift_bias(model: nn.Module, classes: int | Iterable[int], offset: float) -> nn.Module:
    """A deep copy of ``model`` whose output bias for ``classes`` is raised by ``offset``
    (lowered if negative). The original model is left untouched.

    For every input this adds ``offset`` to the logits of ``classes`` and nothing else:
    the cheap correction Hinton et al. apply to a student that never saw a class.
    """
    offset = validate.real("offset", offset)
    layer = output_layer(model)
    wanted = _classes(classes)
    if wanted[-1] >= layer.out_features:
        raise ParameterError(f"classes={wanted!r}: the model has {layer.out_features} outputs, so class indices "
                             f"must be < {layer.out_features}.")
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        output_layer(shifted).bias[wanted] += offset
    return shifted


def shift_logits(logits: torch.Tensor, classes: int | Iterable[int], offset: float) -> torch.Tensor:
    """``logits`` with ``offset`` added to the columns of ``classes`` (a new tensor): the
    logits that :func:`shift_bias` 's model would produce."""
    logits = torch.as_tensor(logits)
    wanted = _classes(classes)
    if logits.dim() != 2 or wanted[-1] >= logits.shape[1]:
        raise ParameterError(f"classes={wanted!r} must index the columns of logits of shape {tuple(logits.shape)}.")
    out = logits.clone()
    out[:, wanted] += validate.real("offset", offset)
    return out


def bias_sweep(logits: torch.Tensor, targets: torch.Tensor, classes: int | Iterable[int],
               offsets: Sequence[float]) -> dict[str, np.ndarray]:
    """Accuracy as the output bias of ``classes`` is shifted by each of ``offsets``.

    Returns numpy arrays ``offset``, ``accuracy`` (all examples), ``class_accuracy``
    (examples of ``classes`` only; nan if there are none) and ``errors`` (count).
    """
    y = _labels(targets, "targets").to(torch.as_tensor(logits).device)
    wanted = _classes(classes)
    offsets = [validate.real("offsets", o) for o in offsets]
    if not offsets:
        raise ParameterError("offsets is empty; give the bias offsets to try, e.g. numpy.arange(-2, 10.25, 0.25).")
    in_classes = torch.isin(y, torch.tensor(wanted, device=y.device))
    acc, cls_acc, errors = [], [], []
    for o in offsets:
        correct = shift_logits(logits, wanted, o).argmax(1) == y
        acc.append(float(correct.float().mean()))
        cls_acc.append(float(correct[in_classes].float().mean()) if in_classes.any() else float("nan"))
        errors.append(int((~correct).sum()))
    return {"offset": np.asarray(offsets), "accuracy": np.asarray(acc), "class_accuracy": np.asarray(cls_acc),
            "errors": np.asarray(errors)}


def best_offset(sweep: dict[str, np.ndarray], key: str = "accuracy") -> float:
    """The offset of ``sweep`` (from :func:`bias_sweep`) with the highest ``key``; among
    ties, the one closest to 0 (the smallest change that does as well)."""
    validate.choice("key", key, ("accuracy", "class_accuracy"))
    values, offsets = np.asarray(sweep[key], dtype=float), np.asarray(sweep["offset"], dtype=float)
    if np.all(np.isnan(values)):
        raise ParameterError(f"sweep[{key!r}] is all nan; there is nothing to maximise.")
    best = np.nanmax(values)
    ties = np.flatnonzero(values == best)
    return float(offsets[ties[np.argmin(np.abs(offsets[ties]))]])
