"""Exercise checks for the core lesson, notebooks 01-04.

Every check prints its feedback and returns a :class:`Feedback` (truthy when the
answer is right). An unanswered exercise (``None``, or a function that raises
``NotImplementedError``) gets a friendly "not done yet" note, never an
exception, so a notebook still runs top to bottom before the exercises are done.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import losses
from .audit import NOTES, audit_kd_loss
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import probe as _probe
from .feedback import report as _report
from .hints import for_exercise


# --- notebook 01 ---------------------------------------------------------------------------

@for_exercise("accuracy")
def check_accuracy(my_accuracy: Callable[[torch.Tensor, torch.Tensor], float] | None) -> Feedback:
    """Exercise: ``my_accuracy(logits, targets)`` returns the fraction of correct top-1 predictions."""
    if my_accuracy is None:
        return _not_done("define my_accuracy(logits, targets).")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 10, generator=gen)
    targets = torch.randint(0, 10, (50,), generator=gen)
    targets[:20] = logits[:20].argmax(1)  # make about half correct
    expected = (logits.argmax(1) == targets).float().mean().item()
    value, err = _call(my_accuracy, logits, targets, name="my_accuracy")
    if err is not None:
        return err
    value = float(value)
    if abs(value - expected) < 1e-6:
        return _report(True, f"Correct: accuracy {value:.2f} on the test batch.")
    if abs(value - expected * 100) < 1e-4:
        return _report(False, f"You returned {value:.1f}, a percentage; return a fraction in [0, 1] ({expected:.2f}).")
    correct = int((logits.argmax(1) == targets).sum())
    if abs(value - correct) < 1e-6:
        return _report(False, f"You returned the count of correct predictions ({correct}); divide by the batch size.")
    if not 0.0 <= value <= 1.0:
        return _report(False, f"An accuracy lies in [0, 1], you returned {value:.4f}. Take the argmax over the class "
                              "dimension, logits.argmax(dim=1), compare with targets, and average.")
    return _report(False, f"You returned {value:.4f}, expected {expected:.4f}. Compare logits.argmax(dim=1) "
                          "with targets and average the matches (as floats).")


@for_exercise("most_confused")
def check_most_confused(answer: tuple | None, cm: torch.Tensor, class_names=None) -> Feedback:
    """Exercise: find ``(true_class, predicted_class)`` of the largest off-diagonal entry of ``cm``."""
    if answer is None:
        return _not_done("set answer = (true_class, predicted_class).")
    cm = torch.as_tensor(cm).clone()
    names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0])]
    diag_max = cm.diag().max().item()
    off = cm.clone()
    off.fill_diagonal_(-1)
    best = off.max().item()
    winners = {(names[i], names[j]) for i, j in (off == best).nonzero().tolist()}
    try:
        given = (str(answer[0]), str(answer[1]))
    except (TypeError, IndexError):
        return _report(False, f"answer should be a pair (true_class, predicted_class), got {answer!r}.")
    if given in winners:
        return _report(True, f"Correct: {given[0]} is mistaken for {given[1]} {int(best)} times, the most of any pair.")
    if (given[1], given[0]) in winners:
        return _report(False, "Close: you have the pair but the wrong way round. Rows are true classes, "
                              "columns are predictions: cm[true, predicted].")
    if given[0] == given[1]:
        return _report(False, "That is a diagonal entry: correct predictions. Ignore the diagonal "
                              "(e.g. cm.fill_diagonal_(0)) before taking the maximum.")
    try:
        count = int(cm[names.index(given[0]), names.index(given[1])])
    except ValueError:
        return _report(False, f"{given} are not class names; use names from {names}.")
    hint = " (larger than any mistake: is that the diagonal?)" if count == diag_max else ""
    return _report(False, f"{given[0]}→{given[1]} happens {count} times{hint}, but another pair happens "
                          f"{int(best)} times. Look for the largest off-diagonal entry.")


# --- notebook 02 ---------------------------------------------------------------------------

@for_exercise("soft_targets")
def check_soft_targets(my_soft_targets: Callable[[torch.Tensor, float], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_soft_targets(logits, T)`` returns softmax(logits / T) over the class dimension."""
    if my_soft_targets is None:
        return _not_done("define my_soft_targets(logits, T).")
    logits = torch.tensor([[4.0, 1.0, -2.0, 0.5], [0.0, 3.0, 1.0, -1.0]])
    T = 4.0
    value, err = _call(my_soft_targets, logits, T, name="my_soft_targets")
    if err is not None:
        return err
    value = torch.as_tensor(value).float()
    expected = losses.soft_targets(logits, T)
    if value.shape != expected.shape:
        return _report(False, f"Your output has shape {tuple(value.shape)}; expected {tuple(expected.shape)}: "
                              "one distribution per example.")
    if torch.allclose(value, expected, atol=1e-5):
        big = _probe(my_soft_targets, torch.tensor([[1000.0, 0.0, -1000.0]]), 1.0)
        if big is not None and not torch.isfinite(torch.as_tensor(big)).all():
            return _report(False, "Right for ordinary logits, but it overflows to NaN for logits of ±1000: subtract "
                                  "the maximum logit before exp(), or use torch.softmax.")
        return _report(True, "Correct: each row sums to 1 and higher T flattens it.")
    candidates = {
        "you forgot to divide by T (that is the T = 1 softmax)": torch.softmax(logits, 1),
        "you multiplied by T; divide the logits by T instead": torch.softmax(logits * T, 1),
        "those are log-probabilities (log_softmax); use softmax": torch.log_softmax(logits / T, 1),
        "you normalised over the batch (dim=0); normalise over classes (dim=1 or -1)": torch.softmax(logits / T, 0),
        "you divided the probabilities by T after the softmax; divide the logits before it": torch.softmax(logits, 1) / T,
    }
    for mistake, wrong in candidates.items():
        if wrong.shape == value.shape and torch.allclose(value, wrong, atol=1e-5):
            return _report(False, f"Not quite: {mistake}.")
    sums = value.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return _report(False, f"Each row should sum to 1, yours sum to {sums.tolist()}: exponentiate, then divide by "
                              "the row's total.")
    return _report(False, "The values differ from softmax(logits / T); compare with kdlab.losses.soft_targets.")


@for_exercise("entropy_bits")
def check_entropy_bits(my_entropy: Callable[[torch.Tensor], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_entropy(p)`` returns the entropy in bits of each row of ``p``, with 0·log 0 = 0."""
    if my_entropy is None:
        return _not_done("define my_entropy(p).")
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    value, err = _call(my_entropy, p, name="my_entropy")
    if err is not None:
        return err
    value = torch.as_tensor(value).float().flatten()
    expected = torch.tensor([1.0, 2.0, 0.0])
    if value.shape != expected.shape:
        return _report(False, f"Return one entropy per row: shape {tuple(expected.shape)}, got {tuple(value.shape)}.")
    if torch.isnan(value).any():
        return _report(False, "You got NaN: 0 · log 0 must count as 0. Clamp p (p.clamp_min(1e-30)) inside the log, "
                              "or mask the zeros.")
    if torch.allclose(value, expected, atol=1e-4):
        return _report(True, "Correct: 1 bit for a fair coin, 2 bits for 4 equal classes, 0 for a certain answer.")
    if torch.allclose(value, expected * torch.log(torch.tensor(2.0)), atol=1e-4):
        return _report(False, "Those are nats (natural log). Use torch.log2 for bits.")
    if torch.allclose(value, -expected, atol=1e-4):
        return _report(False, "The sign is flipped: entropy is -Σ p log p, which is never negative.")
    return _report(False, f"Expected {expected.tolist()} bits for the test rows, got {value.tolist()}.")


# --- notebook 04 ---------------------------------------------------------------------------

@for_exercise("gap_closed")
def check_gap_closed(my_gap_closed: Callable[[float, float, float], float] | None) -> Feedback:
    """Exercise: ``my_gap_closed(student, scratch, teacher)`` returns the fraction of the
    teacher-scratch accuracy gap that the distilled student closes."""
    if my_gap_closed is None:
        return _not_done("define my_gap_closed(student, scratch, teacher).")
    student, scratch, teacher = 0.97, 0.95, 0.99  # closes half the gap
    value, err = _call(my_gap_closed, student, scratch, teacher, name="my_gap_closed")
    if err is not None:
        return err
    value = float(value)
    if abs(value - 0.5) < 1e-6:
        other = _probe(my_gap_closed, 0.95, 0.95, 0.99)
        if other is not None and abs(float(other)) > 1e-9:
            return _report(False, "Right for the first case, but a student no better than scratch closes 0% of the gap.")
        return _report(True, "Correct: (student − scratch) / (teacher − scratch). Hinton et al. closed about 90% "
                             "on full MNIST (146 → 74 errors against a 67-error teacher).")
    if abs(value - 50.0) < 1e-4:
        return _report(False, "You returned a percentage (50); return a fraction (0.5).")
    if abs(value - 0.02) < 1e-6:
        return _report(False, "That is the gain in accuracy (student − scratch); divide it by the gap (teacher − scratch).")
    if abs(value - (student - scratch) / teacher) < 1e-6 or abs(value - student / teacher) < 1e-6:
        return _report(False, "Divide by the gap between teacher and scratch, not by the teacher's accuracy.")
    if abs(value + 0.5) < 1e-6 or abs(value - 2.0) < 1e-6:
        return _report(False, "Check the order: the numerator is student − scratch and the denominator teacher − scratch.")
    return _report(False, f"For student 0.97, scratch 0.95, teacher 0.99 the answer is 0.5; you returned {value:.4f}.")


@for_exercise("ece")
def check_ece(my_ece: Callable[[torch.Tensor, torch.Tensor], float] | None, n_bins: int = 15) -> Feedback:
    """Exercise: ``my_ece(probs, targets)`` returns the expected calibration error with
    ``n_bins`` equal-width confidence bins: sum_b |B_b|/N · |acc(B_b) − conf(B_b)|."""
    from ..metrics import reliability

    if my_ece is None:
        return _not_done("define my_ece(probs, targets).")
    gen = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(400, 10, generator=gen) * 3, dim=1)
    targets = torch.randint(0, 10, (400,), generator=gen)
    targets[:200] = probs[:200].argmax(1)
    expected = reliability(probs, targets, n_bins)["ece"]
    value, err = _call(my_ece, probs, targets, name="my_ece")
    if err is not None:
        return err
    value = float(value)
    if abs(value - expected) < 1e-4:
        return _report(True, f"Correct: ECE = {value:.4f} on the test batch.")
    conf, pred = probs.max(1)
    correct = (pred == targets).float()
    if abs(value - abs(correct.mean() - conf.mean()).item()) < 1e-4:
        return _report(False, "That is the overall |accuracy − confidence| (one bin). Split the examples into "
                              f"{n_bins} equal-width confidence bins and weight each bin's gap by its share of examples.")
    if abs(value - expected * 100) < 1e-2:
        return _report(False, "You returned a percentage; return a fraction.")
    return _report(False, f"Expected {expected:.4f}, got {value:.4f}. Use the top-1 probability as the confidence, "
                          f"bins (i/{n_bins}, (i+1)/{n_bins}], and weight |acc − conf| by the bin's fraction of examples.")


# --- notebook 03 ---------------------------------------------------------------------------

@for_exercise("kd_loss")
def check_kd_loss(my_kd_loss: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None) -> Feedback:
    """Exercise: ``my_kd_loss(student_logits, teacher_logits, T)`` = T² · KL(p_t^T ‖ p_s^T), batch mean.

    The mistakes are named by :func:`kdlab.checks.audit_kd_loss`, the auditor of notebook 10,
    so both give the same explanation. A loss that is right but passes no gradient is left
    to the autograder, which tests gradients.
    """
    if my_kd_loss is None:
        return _not_done("define my_kd_loss(student_logits, teacher_logits, T).")
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(16, 10, generator=gen) * 2
    t = torch.randn(16, 10, generator=gen) * 4
    T = 3.0
    value, err = _call(my_kd_loss, s, t, T, name="my_kd_loss")
    if err is not None:
        return err
    value = torch.as_tensor(value).float()
    if value.dim() != 0:
        return _report(False, f"Return one number (a 0-dim tensor), not shape {tuple(value.shape)}: average over the batch.")
    expected = losses.kd_loss(s, t, T)
    audit = audit_kd_loss(my_kd_loss, show=False)
    problems = [code for code in audit.problems if code not in ("no_gradient", "wrong_gradient")]
    if torch.allclose(value, expected, rtol=1e-4, atol=1e-6):
        same = _probe(my_kd_loss, s, s.clone(), T)
        if same is not None and abs(float(same)) > 1e-5:
            return _report(False, "Right value, but the loss should be 0 when student and teacher logits are equal.")
        if not problems:
            return _report(True, f"Correct: {float(value):.4f}, equal to kdlab.losses.kd_loss.")
        return _report(False, "Right on the test batch, but: " + audit.explain(problems))
    if problems and "wrong_value" not in problems:
        return _report(False, audit.explain(problems))
    if not problems and audit.notes:
        return _report(False, NOTES[audit.notes[0]] + " The exercise asks for the KL itself.")
    return _report(False, f"Expected {float(expected):.4f} for the test batch, got {float(value):.4f}. Recipe: "
                          "log_softmax(student/T), softmax(teacher/T), F.kl_div(..., reduction='batchmean') · T².")


def check_distillation_loss(my_loss: Callable | None) -> Feedback:
    """Exercise: ``my_loss(student_logits, teacher_logits, targets, T, alpha)`` =
    alpha · kd_loss + (1 − alpha) · CE, with alpha on the SOFT term (kdlab's convention)."""
    import torch.nn.functional as F

    if my_loss is None:
        return _not_done("define my_loss(student_logits, teacher_logits, targets, T, alpha).")
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(16, 10, generator=gen) * 2
    t = torch.randn(16, 10, generator=gen) * 4
    y = torch.randint(0, 10, (16,), generator=gen)
    T, alpha = 4.0, 0.8
    value, err = _call(my_loss, s, t, y, T, alpha, name="my_loss")
    if err is not None:
        return err
    value = float(torch.as_tensor(value))
    kd, ce = losses.kd_loss(s, t, T).item(), F.cross_entropy(s, y).item()
    expected = alpha * kd + (1 - alpha) * ce
    if abs(value - expected) < 1e-4:
        return _report(True, f"Correct: {value:.4f} = {alpha}·{kd:.3f} (soft) + {1 - alpha:.1f}·{ce:.3f} (hard).")
    if abs(value - ((1 - alpha) * kd + alpha * ce)) < 1e-4:
        return _report(False, "alpha is on the hard term. In kdlab alpha weights the SOFT (distillation) term: "
                              "alpha·KD + (1−alpha)·CE. (Some papers use the other convention.)")
    if abs(value - (alpha * kd / (T * T) + (1 - alpha) * ce)) < 1e-4:
        return _report(False, "The soft term lacks T²: use kdlab.losses.kd_loss or multiply your KL by T·T.")
    if abs(value - (kd + ce)) < 1e-4:
        return _report(False, "You added the terms without weights; multiply by alpha and (1 − alpha).")
    if abs(value - (alpha * kd + (1 - alpha) * F.cross_entropy(s / T, y).item())) < 1e-4:
        return _report(False, "The hard-label term uses T = 1: cross-entropy on the raw student logits, not logits / T.")
    return _report(False, f"Expected {expected:.4f}, got {value:.4f}: alpha·kd_loss(s, t, T) + (1 − alpha)·cross_entropy(s, y).")
