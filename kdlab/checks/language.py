"""Exercise checks for notebook 12, distilling a language model.

* ``check_reverse_kl``: the reverse KL, KL(p_student ‖ p_teacher), averaged over the batch;
* ``check_sequence_kd_loss``: the per-position KD loss on (B, L, V) logits with padding masked out;
* ``check_sampler``: sampling the next character at a temperature (0 meaning greedy).

Each names the usual mistake when it recognises one: the KL the wrong way round, the
average taken over padding or over the batch only, T applied the wrong way, a draw that
ignores the generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import losses
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import probe as _probe
from .feedback import report as _report
from .hints import for_exercise


def _close(value, expected: torch.Tensor, tol: float = 1e-4) -> bool:
    try:
        value = torch.as_tensor(value).detach().double()
    except (TypeError, ValueError, RuntimeError):
        return False
    return value.shape == expected.shape and bool(torch.allclose(value, expected.double(), rtol=tol, atol=1e-6))


def _logits(*shape: int, seed: int, scale: float) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


@for_exercise("reverse_kl")
def check_reverse_kl(my_reverse_kl: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_reverse_kl(student_logits, teacher_logits)`` = KL(p_s ‖ p_t) at T = 1, averaged over the batch."""
    if my_reverse_kl is None:
        return _not_done("define my_reverse_kl(student_logits, teacher_logits).")
    s, t = _logits(12, 7, seed=60, scale=2), _logits(12, 7, seed=61, scale=3)
    value, err = _call(my_reverse_kl, s, t, name="my_reverse_kl")
    if err is not None:
        return err
    value = torch.as_tensor(value).float() if isinstance(value, (torch.Tensor, float, int)) else value
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        return _report(False, f"Return one number (a 0-dim tensor), not {shape}: average over the batch.")
    expected = losses.reverse_kl_loss(s, t, 1.0)
    log_s, log_t = F.log_softmax(s, -1), F.log_softmax(t, -1)
    per_row = (log_s.exp() * (log_s - log_t)).sum(-1)
    if _close(value, expected):
        same = _probe(my_reverse_kl, s, s.clone())
        if same is not None and abs(float(torch.as_tensor(same))) > 1e-5:
            return _report(False, "Right value, but the KL of a distribution with itself must be 0.")
        return _report(True, f"Correct: {float(value):.4f} = KL(p_s ‖ p_t), equal to kdlab.losses.reverse_kl_loss.")
    mistakes = {
        "that is the forward KL, KL(p_t ‖ p_s): in the reverse KL the student's probabilities weigh the log-ratio "
        "(F.kl_div(input, target) computes KL(target ‖ input), so swap what goes in)": losses.kd_loss(s, t, 1.0),
        "you summed over the batch; average over it (reduction='batchmean', or .mean() over rows)": per_row.sum(),
        "you averaged over classes too (reduction='mean' divides by B·K); sum over classes, average over the batch":
            per_row.mean() / s.shape[1],
        "the sign is flipped: KL(p ‖ q) = Σ p (log p − log q) is never negative": -expected,
    }
    for why, wrong in mistakes.items():
        if _close(value, wrong):
            return _report(False, f"Not quite: {why}.")
    return _report(False, f"Expected {float(expected):.4f} for the test batch, got {float(value):.4f}. Recipe: "
                          "log_p_s = log_softmax(student), log_p_t = log_softmax(teacher), then "
                          "(log_p_s.exp() * (log_p_s − log_p_t)).sum(−1).mean().")


def sequence_batch(seed: int = 62, b: int = 4, length: int = 6, v: int = 9):
    """Student and teacher logits ``(b, length, v)`` and a mask that pads the end of most rows."""
    s, t = _logits(b, length, v, seed=seed, scale=2), _logits(b, length, v, seed=seed + 1, scale=3)
    lengths = torch.tensor([length, length - 2, 2, length - 1][:b])
    mask = torch.arange(length)[None, :] < lengths[:, None]  # (b, length): True where a character counts
    return s, t, mask


@for_exercise("sequence_kd_loss")
def check_sequence_kd_loss(my_sequence_kd_loss: Callable | None) -> Feedback:
    """Exercise: ``my_sequence_kd_loss(student_logits, teacher_logits, mask, T)`` on ``(B, L, V)`` logits
    = T² · KL(p_t^T ‖ p_s^T) averaged over the positions where ``mask`` is True."""
    if my_sequence_kd_loss is None:
        return _not_done("define my_sequence_kd_loss(student_logits, teacher_logits, mask, T).")
    s, t, mask = sequence_batch()
    T = 2.0
    value, err = _call(my_sequence_kd_loss, s, t, mask, T, name="my_sequence_kd_loss")
    if err is not None:
        return err
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        return _report(False, f"Return one number (a 0-dim tensor), not {shape}: average over the positions that count.")
    expected = losses.kd_loss(s, t, T, mask=mask)
    per_position = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="none",
                            log_target=True).sum(-1) * T * T  # (B, L)
    if _close(value, expected):
        unmasked = _probe(my_sequence_kd_loss, s, t, torch.ones_like(mask), T)
        if unmasked is not None and not _close(unmasked, losses.kd_loss(s, t, T)):
            return _report(False, "Right with this mask, but wrong when every position counts (an all-True mask): "
                                  "divide by the number of positions that count, mask.sum().")
        return _report(True, f"Correct: {float(value):.4f}, the KD loss averaged over the "
                             f"{int(mask.sum())} characters that are not padding.")
    mistakes = {
        "padding counts: you averaged over every position, padded ones included; keep only mask's positions":
            per_position.mean(),
        "you divided by the batch size B only (F.kl_div's 'batchmean' on (B, L, V) logits divides by B, not by "
        "the number of positions); divide the masked sum by mask.sum()": (per_position * mask).sum() / s.shape[0],
        "you divided by the batch size B only (F.kl_div's 'batchmean' on (B, L, V) logits divides by B, not by "
        "the number of positions), and padding counts; average over the positions where mask is True":
            per_position.sum() / s.shape[0],
        "you zeroed the padded positions but still divided by all B·L positions; divide by mask.sum()":
            (per_position * mask).sum() / mask.numel(),
        "the KL runs the wrong way: the teacher's distribution is the target, KL(p_t ‖ p_s)":
            losses.reverse_kl_loss(s, t, T, mask=mask),
        "T² is missing: multiply the KL by T * T": expected / (T * T),
        "you summed over the positions; average over them": (per_position * mask).sum(),
    }
    for why, wrong in mistakes.items():
        if _close(value, wrong):
            return _report(False, f"Not quite: {why}.")
    return _report(False, f"Expected {float(expected):.4f}, got {float(value):.4f}. Per position: Σ_v p_t (log p_t − "
                          "log p_s) at temperature T; then average over the positions where mask is True, times T².")


@for_exercise("temperature_sampler")
def check_sampler(my_sample: Callable | None) -> Feedback:
    """Exercise: ``my_sample(logits, temperature, generator)`` draws one token id per row of ``logits``
    ``(B, V)`` from softmax(logits / temperature), with ``generator``; the argmax at temperature 0."""
    if my_sample is None:
        return _not_done("define my_sample(logits, temperature, generator).")
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20_000, 1)  # (20000, 4): many draws of one distribution
    draws, err = _call(my_sample, logits, 1.0, torch.Generator().manual_seed(0), name="my_sample")
    if err is not None:
        return err
    if not isinstance(draws, torch.Tensor) or draws.shape != (logits.shape[0],):
        shape = tuple(draws.shape) if isinstance(draws, torch.Tensor) else type(draws).__name__
        squeeze = shape == (logits.shape[0], 1)
        hint = " (squeeze the last dimension of torch.multinomial's (B, 1) result)" if squeeze else ""
        return _report(False, f"Return one token id per row, shape ({logits.shape[0]},); got {shape}{hint}.")
    if draws.dtype != torch.long:
        return _report(False, f"Return token ids (int64), got {draws.dtype}.")
    greedy = _probe(my_sample, logits[:3] * torch.tensor([1.0, -1.0, 1.0])[:, None], 0.0, torch.Generator())
    if greedy is None or not torch.equal(torch.as_tensor(greedy), torch.tensor([0, 3, 0])):
        return _report(False, "At temperature 0 the sampler is greedy: return logits.argmax(dim=-1) "
                              "(dividing by 0 gives inf and NaN).")
    again = _probe(my_sample, logits, 1.0, torch.Generator().manual_seed(0))
    if again is None or not torch.equal(torch.as_tensor(again), draws):
        return _report(False, "The same generator seed gave different draws: pass generator=generator to "
                              "torch.multinomial, so that a seed makes the samples repeatable.")
    for temperature in (1.0, 0.5, 2.0):
        got = draws if temperature == 1.0 else _probe(my_sample, logits, temperature, torch.Generator().manual_seed(1))
        if got is None:
            return _report(False, f"my_sample failed at temperature {temperature}.")
        freq = torch.bincount(torch.as_tensor(got).flatten(), minlength=4)[:4].double() / logits.shape[0]
        want = torch.softmax(logits[0].double() / temperature, -1)
        if (freq - want).abs().max() > 0.02:  # 20,000 draws: a frequency is within ±0.01 of its probability
            multiplied = torch.softmax(logits[0] * temperature, -1)
            for why, p in (("you multiplied the logits by T; divide them by T", multiplied),
                           ("the temperature is ignored: divide the logits by T before the softmax",
                            torch.softmax(logits[0], -1)),
                           ("every draw is the most likely token: sample with torch.multinomial instead of argmax",
                            torch.tensor([1.0, 0, 0, 0]))):
                if (freq - p.double()).abs().max() <= 0.02:
                    return _report(False, f"Not quite at temperature {temperature}: {why}.")
            return _report(False, f"At temperature {temperature} your draws have frequencies {freq.tolist()}; "
                                  f"softmax(logits / T) is {[round(x, 3) for x in want.tolist()]}.")
    return _report(True, "Correct: greedy at T = 0, and the frequencies of 20,000 draws match softmax(logits / T) at "
                         "T = 0.5, 1 and 2.")
