"""Exercise checks for notebook 06, adversarial distillation.

Each check runs the learner's function on a small fixed batch, compares it with
:mod:`kdlab.adversarial`, and names the likely mistake when it differs (labels
swapped, a term missing, an average where a sum was asked for, ...).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import adversarial
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import probe as _probe
from .feedback import report as _report
from .hints import for_exercise


def _scores() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(6)
    real = torch.randn(16, generator=gen) + 1.0  # (B,) mostly positive: mostly judged real
    fake = torch.randn(16, generator=gen) - 0.5  # (B,) mostly negative: mostly judged fake
    return real, fake


def _close(value, expected: torch.Tensor, tol: float = 1e-5) -> bool:
    try:
        value = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return False
    return value.shape == expected.shape and bool(torch.allclose(value, expected.float(), atol=tol, rtol=1e-4))


@for_exercise("discriminator_loss")
def check_discriminator_loss(my_discriminator_loss: Callable | None) -> Feedback:
    """Exercise: ``my_discriminator_loss(real_scores, fake_scores)``, the BCE loss of the discriminator.

    Scores are logits ``(B,)``; real (teacher) inputs have target 1, fake (student) inputs
    target 0; the answer is the sum of the two batch-mean BCE terms.
    """
    if my_discriminator_loss is None:
        return _not_done("define my_discriminator_loss(real_scores, fake_scores).")
    real, fake = _scores()
    value, err = _call(my_discriminator_loss, real, fake, name="my_discriminator_loss")
    if err is not None:
        return err
    expected = adversarial.discriminator_loss(real, fake, "bce")
    try:
        value = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return _report(False, f"Return a number (a 0-dim tensor), got {type(value).__name__}.")
    if value.numel() != 1:
        return _report(False, f"Return one number for the whole batch, got shape {tuple(value.shape)}: take the "
                              "mean over the batch of each BCE term, then add the two terms.")
    value = value.reshape(())
    bce = F.binary_cross_entropy_with_logits
    real_term = bce(real, torch.ones_like(real))
    fake_term = bce(fake, torch.zeros_like(fake))
    if _close(value, expected):
        # A second batch with extreme scores: a hand-written log(sigmoid) overflows there.
        big_real, big_fake = torch.tensor([40.0, -40.0]), torch.tensor([-40.0, 40.0])
        again = _probe(my_discriminator_loss, big_real, big_fake)
        ref = adversarial.discriminator_loss(big_real, big_fake, "bce")
        if again is None or not torch.isfinite(torch.as_tensor(again, dtype=torch.float32)).all() \
                or not _close(torch.as_tensor(again, dtype=torch.float32).reshape(()), ref, tol=1e-3):
            return _report(False, "Right on ordinary scores, but it fails or gives inf/NaN for scores of ±40. "
                                  "Use F.binary_cross_entropy_with_logits (stable) instead of log(sigmoid(...)).")
        return _report(True, f"Correct: loss {float(value):.4f} = BCE(real→1) {float(real_term):.4f} + "
                             f"BCE(fake→0) {float(fake_term):.4f}.")
    swapped = bce(real, torch.zeros_like(real)) + bce(fake, torch.ones_like(fake))
    if _close(value, swapped):
        return _report(False, "The labels are swapped: the teacher's distributions are the *real* ones "
                              "(target 1) and the student's are *fake* (target 0).")
    if _close(value, expected / 2):
        return _report(False, "You averaged the two terms; add them instead: BCE(real→1) + BCE(fake→0).")
    if _close(value, real_term):
        return _report(False, "Only the real term is there; add BCE(fake_scores, 0) for the student's outputs.")
    if _close(value, fake_term):
        return _report(False, "Only the fake term is there; add BCE(real_scores, 1) for the teacher's outputs.")
    if _close(value, bce(fake, torch.ones_like(fake))):
        return _report(False, "That is the student's (generator's) loss, BCE(fake→1). The discriminator wants "
                              "fake→0 and real→1.")
    probs_bce = F.binary_cross_entropy(real.clamp(0, 1), torch.ones_like(real)) + \
        F.binary_cross_entropy(fake.clamp(0, 1), torch.zeros_like(fake))
    if _close(value, probs_bce, tol=1e-3):
        return _report(False, "The scores are logits, not probabilities: use binary_cross_entropy_with_logits "
                              "(or apply a sigmoid first).")
    return _report(False, f"You returned {float(value):.4f}, expected {float(expected):.4f}. Use "
                          "F.binary_cross_entropy_with_logits(real_scores, ones) + "
                          "F.binary_cross_entropy_with_logits(fake_scores, zeros).")


@for_exercise("discriminator_accuracy")
def check_discriminator_accuracy(my_discriminator_accuracy: Callable | None) -> Feedback:
    """Exercise: ``my_discriminator_accuracy(real_scores, fake_scores) -> (acc_real, acc_fake)``.

    Scores are BCE logits: a score > 0 means "real". ``acc_real`` is the fraction of real
    inputs called real, ``acc_fake`` the fraction of fake inputs called fake.
    """
    if my_discriminator_accuracy is None:
        return _not_done("define my_discriminator_accuracy(real_scores, fake_scores).")
    real, fake = _scores()
    value, err = _call(my_discriminator_accuracy, real, fake, name="my_discriminator_accuracy")
    if err is not None:
        return err
    exp_real, exp_fake = (float(a) for a in adversarial.discriminator_accuracy(real, fake, "bce"))
    try:
        got_real, got_fake = (float(v) for v in value)
    except (TypeError, ValueError, RuntimeError):
        try:
            single = float(value)
        except (TypeError, ValueError, RuntimeError):
            single = None
        if single is not None and abs(single - (exp_real + exp_fake) / 2) < 1e-6:
            return _report(False, "You returned the overall accuracy; return the pair (acc_real, acc_fake) so that "
                                  "each side can be watched separately.")
        return _report(False, f"Return a pair (acc_real, acc_fake), got {value!r}.")
    n = real.numel()
    if abs(got_real - exp_real) < 1e-6 and abs(got_fake - exp_fake) < 1e-6:
        # All-zero scores sit on the threshold: 0 is not > 0, so real 0% and fake 100%.
        zeros = torch.zeros(4)
        again = _probe(my_discriminator_accuracy, zeros, zeros)
        try:
            edge = tuple(float(v) for v in again)
        except (TypeError, ValueError, RuntimeError):
            edge = None
        if edge is not None and edge != (0.0, 1.0):
            return _report(False, f"Right on the test batch, but a score of exactly 0 gave {edge}; decide real with "
                                  "score > 0 (so a score of 0 counts as fake), giving (0.0, 1.0) for all-zero scores.")
        return _report(True, f"Correct: real {exp_real:.2f} and fake {exp_fake:.2f} on the test batch.")
    if abs(got_real - exp_fake) < 1e-6 and abs(got_fake - exp_real) < 1e-6:
        return _report(False, "Your pair is in the wrong order: return (acc_real, acc_fake).")
    if abs(got_real - exp_real * n) < 1e-4 or abs(got_fake - exp_fake * n) < 1e-4:
        return _report(False, "You returned counts; divide by the batch size to get fractions in [0, 1].")
    if abs(got_fake - (1 - exp_fake)) < 1e-6:
        return _report(False, "acc_fake should count the fake inputs scored as fake (score <= 0); you counted "
                              "those scored as real.")
    if abs(got_real - float((real > 0.5).float().mean())) < 1e-6:
        return _report(False, "The scores are logits: the decision threshold is 0 (sigmoid(0) = 0.5), not 0.5.")
    return _report(False, f"You returned ({got_real:.3f}, {got_fake:.3f}), expected ({exp_real:.3f}, {exp_fake:.3f}). "
                          "acc_real = mean(real_scores > 0), acc_fake = mean(fake_scores <= 0).")


@for_exercise("conditioned_input")
def check_conditioned_input(my_conditioned_input: Callable | None) -> Feedback:
    """Exercise: ``my_conditioned_input(probs, targets, num_classes)`` returns what a label-conditioned
    discriminator sees: ``probs`` ``(B, K)`` followed by the one-hot label ``(B, K)``, shape ``(B, 2K)``."""
    if my_conditioned_input is None:
        return _not_done("define my_conditioned_input(probs, targets, num_classes).")
    gen = torch.Generator().manual_seed(60)
    k = 5
    probs = torch.randn(6, k, generator=gen).softmax(1)
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    value, err = _call(my_conditioned_input, probs, targets, k, name="my_conditioned_input")
    if err is not None:
        return err
    if not isinstance(value, torch.Tensor):
        return _report(False, f"Return a tensor, got {type(value).__name__}.")
    expected = adversarial.conditioned_input(probs, targets, k)
    if value.shape == (12, k):
        return _report(False, "You stacked along the batch (dim 0): concatenate along the features, "
                              "torch.cat([probs, one_hot], dim=1), so each row is one example.")
    if value.shape == (6, k + 1):
        return _report(False, "The label went in as one number per row; encode it one-hot "
                              "(F.one_hot(targets, num_classes)) so that no class looks 'bigger' than another.")
    if value.shape != expected.shape:
        return _report(False, f"Shape {tuple(value.shape)}; expected {tuple(expected.shape)} = (batch, 2 * num_classes).")
    value = value.float()
    if torch.allclose(value, expected, atol=1e-6):
        return _report(True, "Correct: each row is the distribution followed by its one-hot label, "
                             f"shape {tuple(value.shape)}.")
    if torch.allclose(value, torch.cat([expected[:, k:], expected[:, :k]], 1), atol=1e-6):
        return _report(False, "Right pieces, wrong order: put the distribution first, then the one-hot label "
                              "(the kit's Discriminator expects that layout).")
    if torch.allclose(value[:, :k], probs, atol=1e-6):
        return _report(False, "The first half (the distribution) is right; the second half should be "
                              "F.one_hot(targets, num_classes) as floats.")
    return _report(False, "The values differ from torch.cat([probs, F.one_hot(targets, num_classes).float()], dim=1).")
