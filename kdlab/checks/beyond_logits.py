"""Exercise checks for notebook 11 (beyond logits): the attention map and the DKD decomposition.

Every check prints its feedback and returns a :class:`Feedback` (truthy when the answer is
right); an unanswered exercise gets a "not done yet" note, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import losses
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import report as _report
from .hints import for_exercise


def _close(value, expected, atol=1e-5) -> bool:
    return (isinstance(value, torch.Tensor) and value.shape == expected.shape
            and bool(torch.allclose(value.detach().float(), expected.float(), atol=atol, rtol=1e-4)))


@for_exercise("attention_map")
def check_attention_map(my_attention_map: Callable[[torch.Tensor, float], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_attention_map(features, p)`` maps (B, C, H, W) features to (B, H·W) attention maps:
    |x|^p averaged over the channels, flattened, each row of unit L2 length."""
    if my_attention_map is None:
        return _not_done("define my_attention_map(features, p).")
    gen = torch.Generator().manual_seed(11)
    features = torch.relu(torch.randn(3, 5, 4, 6, generator=gen))  # post-ReLU, like a stage output
    value, err = _call(my_attention_map, features, 2.0, name="my_attention_map")
    if err is not None:
        return err
    expected = losses.attention_map(features, 2.0)
    if not isinstance(value, torch.Tensor):
        return _report(False, f"my_attention_map returned a {type(value).__name__}; return a tensor of shape "
                              f"{tuple(expected.shape)}.")
    if value.shape == (3, 4, 6):
        return _report(False, "Close: flatten each map, so the result is (B, H·W) = (3, 24), not (B, H, W).")
    if value.shape == (3, 5):
        return _report(False, "You averaged over the positions; average over the channels (dim=1) instead and "
                              "keep one value per position.")
    if value.shape != expected.shape:
        return _report(False, f"Your output has shape {tuple(value.shape)}; expected {tuple(expected.shape)}: one "
                              "flattened map per example.")
    if _close(value, expected):
        signed = torch.randn(3, 5, 4, 6, generator=gen)
        other, _ = _call(my_attention_map, signed, 2.0, name="my_attention_map")
        if not _close(other, losses.attention_map(signed, 2.0)):
            return _report(False, "Right on non-negative features, wrong on features with negative values: at p = 2 "
                                  "square them (x.pow(p) or x.abs().pow(p)).")
        cubed, _ = _call(my_attention_map, features, 3.0, name="my_attention_map")
        if not _close(cubed, losses.attention_map(features, 3.0)):
            return _report(False, "Right for p = 2 but not for p = 3: raise the features to the power p you are given.")
        return _report(True, "Correct: each example's map has unit length and shows where the layer's activations are "
                             "large, whatever its number of channels.")
    q = features.pow(2).mean(1).flatten(1)
    candidates = {
        "the map is not normalised: divide each row by its L2 norm (F.normalize(q, dim=1))": q,
        "you divided by the sum; the map must have unit L2 length (divide by the L2 norm)": q / q.sum(1, keepdim=True),
        "you normalised over the batch (dim=0); normalise each example's row (dim=1)": F.normalize(q, dim=0),
        "you forgot the power p: square the activations before averaging": F.normalize(features.mean(1).flatten(1),
                                                                                           dim=1),
        "you normalised before averaging over the channels; average first, then normalise":
            F.normalize(F.normalize(features.pow(2).flatten(2), dim=2).mean(1), dim=1),
    }
    for mistake, wrong in candidates.items():
        if _close(value, wrong):
            return _report(False, f"Not quite: {mistake}.")
    return _report(False, "Not the attention map yet: average features.pow(p) over the channels (dim=1), flatten to "
                          "(B, H·W) and divide each row by its L2 norm.")


@for_exercise("dkd_terms")
def check_dkd_terms(my_dkd_terms: Callable | None) -> Feedback:
    """Exercise: ``my_dkd_terms(student_logits, teacher_logits, targets, T)`` returns ``(tckd, nckd)``, each (B,),
    T²-scaled: KL of the binary (target, rest) distributions, and KL of the distributions over the other classes."""
    if my_dkd_terms is None:
        return _not_done("define my_dkd_terms(student_logits, teacher_logits, targets, T).")
    gen = torch.Generator().manual_seed(12)
    zs, zt = torch.randn(6, 5, generator=gen) * 2, torch.randn(6, 5, generator=gen) * 3
    y, T = torch.tensor([0, 1, 2, 3, 4, 0]), 2.0
    value, err = _call(my_dkd_terms, zs, zt, y, T, name="my_dkd_terms")
    if err is not None:
        return err
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(isinstance(v, torch.Tensor) for v in value):
        return _report(False, "my_dkd_terms should return two tensors, (tckd, nckd).")
    tckd, nckd = value
    want_t, want_n = losses.decoupled_kd_terms(zs, zt, y, T)
    if tckd.dim() == 0 or nckd.dim() == 0:
        return _report(False, "Return one value per example, shape (B,): the identity holds example by example, "
                              "because 1 − p_t differs between them. Do not average over the batch.")
    ok_t, ok_n = _close(tckd, want_t), _close(nckd, want_n)
    if ok_t and ok_n:
        p_t = losses.soft_targets(zt, T).gather(1, y[:, None]).squeeze(1)
        kd = losses.kd_loss(zs, zt, T)
        recovered = float((tckd + (1 - p_t) * nckd).mean())
        return _report(True, f"Correct: and TCKD + (1 − p_t)·NCKD = {recovered:.4f}, the classic KD loss "
                             f"T²·KL(p_t ‖ p_s) = {float(kd):.4f} on this batch.")
    for name, got, want, ok in (("tckd", tckd, want_t, ok_t), ("nckd", nckd, want_n, ok_n)):
        if ok:
            continue
        if _close(got, want / T**2):
            return _report(False, f"{name} is missing the T² factor (multiply by T * T, as kd_loss does).")
        if got.shape != want.shape:
            return _report(False, f"{name} has shape {tuple(got.shape)}; expected one value per example, "
                                  f"{tuple(want.shape)}.")
    if not ok_n:
        log_ps, log_pt = F.log_softmax(zs / T, 1), F.log_softmax(zt / T, 1)
        other = ~F.one_hot(y, 5).bool()
        unnormalised = (log_pt.exp() * (log_pt - log_ps) * other).sum(1) * T**2
        if _close(nckd, unnormalised):
            return _report(False, "nckd uses the full softmax's probabilities of the other classes; renormalise them "
                                  "over the K − 1 non-target classes (a softmax of the logits with the target's left "
                                  "out).")
        if _close(nckd, T**2 * (log_pt.exp() * (log_pt - log_ps)).sum(1)):
            return _report(False, "nckd is the whole KD loss: leave the target class out of both distributions.")
    if not ok_t:
        swapped = losses.decoupled_kd_terms(zt, zs, y, T)[0]
        if _close(tckd, swapped):
            return _report(False, "tckd runs the KL the wrong way: KL(b_teacher ‖ b_student), the teacher's "
                                  "distribution weighs the log-ratio.")
    wrong = " and ".join(n for n, ok in (("tckd", ok_t), ("nckd", ok_n)) if not ok)
    return _report(False, f"{wrong} differ from the expected values. tckd: the KL between (p_target, "
                          "1 − p_target) of teacher and student; nckd: the KL between their softmaxes over the "
                          "other classes; both at temperature T, times T².")
