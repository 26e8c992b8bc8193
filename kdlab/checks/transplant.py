"""Exercise checks for notebook 07 (starting a student from the teacher's weights).

Every check prints its feedback and returns a :class:`Feedback` (truthy when the answer is
right); an unanswered exercise gets a friendly "not done yet" note, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import models, transplant
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import probe as _probe
from .feedback import report as _report
from .hints import for_exercise


def _conv_weight(seed: int = 0) -> torch.Tensor:
    """A conv weight (out=6, in=4, 3, 3) of mixed signs, where the per-filter L1 ranking differs
    from the signed sum's, the L2 norm's and the per-input-channel ranking."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 4, 3, 3, generator=gen)
    w[1] *= 3.0
    w[4] -= 0.8  # mostly negative: large L1, very negative signed sum
    return w


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=1e-5)


@for_exercise("filter_l1")
def check_filter_l1(my_filter_l1: Callable[[torch.Tensor], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_filter_l1(weight)`` takes a conv weight ``(out, in, kh, kw)`` and returns one
    importance score per output channel ``(out,)``: the L1 norm of that channel's filter."""
    if my_filter_l1 is None:
        return _not_done("define my_filter_l1(weight).")
    w = _conv_weight()
    expected = transplant.l1_scores(w)
    value, err = _call(my_filter_l1, w.clone(), name="my_filter_l1")
    if err is not None:
        return err
    if not isinstance(value, torch.Tensor):
        return _report(False, f"my_filter_l1 returned {type(value).__name__}; return a tensor of shape (out,) = (6,).")
    if _same(value, expected):
        other = _probe(my_filter_l1, torch.ones(2, 1, 1, 1))
        if other is not None and not _same(torch.as_tensor(other), torch.ones(2)):
            return _report(False, "Right on a 3x3 filter, but wrong on a 1x1 one; sum over every dimension but the first.")
        return _report(True, f"Correct: |w| summed over (in, kh, kw) gives one score per output channel, "
                             f"here {[round(float(v), 2) for v in expected]}.")
    if _same(value, w.abs().sum(dim=(0, 2, 3))):
        return _report(False, "You scored the INPUT channels (summed over dim 0); a filter is a row of the weight: "
                              "sum over dims 1, 2, 3 for one score per output channel.")
    if _same(value, w.flatten(1).sum(1)):
        return _report(False, "You summed the signed weights, so positive and negative weights cancel; take abs() first.")
    if _same(value, w.flatten(1).norm(dim=1)):
        return _report(False, "That is the L2 norm of each filter; the L1 norm is the sum of absolute values.")
    if _same(value, w.abs().flatten(1).mean(1)):
        return _report(False, "You averaged |w| over the filter; the L1 norm is the sum (same ranking here, "
                              "but not the same number).")
    if value.numel() == 1:
        return _report(False, "You returned one number for the whole layer; return one per output channel, shape (6,).")
    if value.shape != expected.shape:
        return _report(False, f"Your scores have shape {tuple(value.shape)}; expected (out,) = {tuple(expected.shape)}: "
                              "sum |w| over every dimension but the first.")
    return _report(False, f"Expected {[round(float(v), 2) for v in expected]}, got "
                          f"{[round(float(v), 2) for v in value.flatten()]}: abs(), then sum over dims 1, 2, 3.")


@for_exercise("slice_conv")
def check_slice_conv(my_slice_conv: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_slice_conv(weight, out_idx, in_idx)`` keeps the output channels ``out_idx`` (rows,
    dim 0) and the input channels ``in_idx`` (dim 1) of a conv weight ``(out, in, kh, kw)``."""
    if my_slice_conv is None:
        return _not_done("define my_slice_conv(weight, out_idx, in_idx).")
    w = _conv_weight(1)
    out_idx, in_idx = torch.tensor([0, 2, 5]), torch.tensor([1, 3])
    expected = transplant.slice_weight(w, out_idx, in_idx)
    value, err = _call(my_slice_conv, w.clone(), out_idx.clone(), in_idx.clone(), name="my_slice_conv")
    if err is not None:
        return err
    if not isinstance(value, torch.Tensor):
        return _report(False, f"my_slice_conv returned {type(value).__name__}; return the sliced weight tensor.")
    if _same(value, expected):
        # A second call with the output and input sets of equal size catches answers that swapped the dims.
        sq_out, sq_in = torch.tensor([1, 4]), torch.tensor([0, 2])
        other = _probe(my_slice_conv, w.clone(), sq_out, sq_in)
        if other is None or not _same(other, transplant.slice_weight(w, sq_out, sq_in)):
            return _report(False, "Right on the first case but not on a second one (out_idx=[1, 4], in_idx=[0, 2]); "
                                  "index dim 0 with out_idx and dim 1 with in_idx.")
        return _report(True, f"Correct: weight[out_idx][:, in_idx] has shape {tuple(expected.shape)}. The next layer "
                             "must drop the same channels from its inputs, or the shapes will not fit.")
    if value.shape == w.shape:
        return _report(False, "The weight still has its full shape (6, 4, 3, 3); keep only the listed channels.")
    if _same(value, w[out_idx]):
        return _report(False, "You kept the output channels but not the input channels: also index dim 1 with in_idx.")
    if _same(value, w[:, in_idx]):
        return _report(False, "You kept the input channels but not the output channels: also index dim 0 with out_idx.")
    if value.shape == (len(in_idx), len(out_idx), 3, 3):
        return _report(False, "You swapped the dimensions: a conv weight is (out, in, kh, kw), so out_idx indexes dim 0.")
    return _report(False, f"Expected shape {tuple(expected.shape)} = (len(out_idx), len(in_idx), 3, 3), got "
                          f"{tuple(value.shape)}: weight[out_idx][:, in_idx].")


@for_exercise("kept_fraction")
def check_kept_fraction(my_kept_fraction: Callable[[nn.Module, nn.Module], float] | None) -> Feedback:
    """Exercise: ``my_kept_fraction(student, teacher)`` returns the student's parameter count divided by
    the teacher's (every parameter: conv and linear weights, biases and BatchNorm's gamma and beta)."""
    if my_kept_fraction is None:
        return _not_done("define my_kept_fraction(student, teacher).")
    teacher = models.create("cnn", num_classes=10, input_shape=(1, 8, 8), channels=(8, 16), fc=32, seed=0)
    student = transplant.narrow_copy(teacher, keep=0.5)
    expected = transplant.kept_fraction(student, teacher)
    value, err = _call(my_kept_fraction, student, teacher, name="my_kept_fraction")
    if err is not None:
        return err
    try:
        value = float(value)
    except (TypeError, ValueError):
        return _report(False, f"my_kept_fraction returned {value!r}; return one number (a fraction).")

    def count(model, kinds=None, bias=True):
        return sum(p.numel() for m in model.modules() if kinds is None or isinstance(m, kinds)
                   for n, p in m.named_parameters(recurse=False) if bias or n == "weight")

    if abs(value - expected) < 1e-9:
        return _report(True, f"Correct: the student keeps {value:.3f} of the teacher's parameters at keep=0.5, "
                             "about keep² = 0.25, since most weights connect a kept unit to a kept unit.")
    if abs(value - 1 / expected) < 1e-6:
        return _report(False, "You divided the teacher's count by the student's; the fraction kept is student / teacher.")
    if abs(value - 100 * expected) < 1e-4:
        return _report(False, f"You returned a percentage ({value:.2f}); return a fraction in (0, 1].")
    if abs(value - 0.5) < 1e-9:
        return _report(False, "keep=0.5 halves every layer's width, but a weight matrix shrinks in both its input and "
                              "its output dimension: count the parameters, sum(p.numel() for p in model.parameters()).")
    without_bn = count(student, (nn.Conv2d, nn.Linear)) / count(teacher, (nn.Conv2d, nn.Linear))
    weights_only = count(student, (nn.Conv2d, nn.Linear), bias=False) / count(teacher, (nn.Conv2d, nn.Linear), bias=False)
    if abs(value - without_bn) < 1e-9 or abs(value - weights_only) < 1e-9:
        return _report(False, "Close, but you left some parameters out (BatchNorm's gamma and beta, or the biases); "
                              "count every parameter of both models.")
    buffers = ((sum(p.numel() for p in student.parameters()) + sum(b.numel() for b in student.buffers()))
               / (sum(p.numel() for p in teacher.parameters()) + sum(b.numel() for b in teacher.buffers())))
    if abs(value - buffers) < 1e-9:
        return _report(False, "You counted the buffers too (BatchNorm running statistics); they are not parameters.")
    return _report(False, f"Expected {expected:.4f} (student parameters / teacher parameters), got {value:.4f}.")
