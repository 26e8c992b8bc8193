"""The exercises of notebook 12, distilling a language model: the reverse KL, the per-position
KD loss with padding masked out, and a temperature sampler.

The autograder runs each formative check, then other shapes, temperatures and masks, equal
and very large logits, gradients and inputs left unchanged.
"""

from __future__ import annotations

import torch

from ... import losses
from ...checks import language as checks
from ..exercises import Exercise
from ..grading import unchanged

NOTEBOOK = "12_language_model_distillation"


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _gradient_matches(t, mine, s, want) -> None:
    t.expect(isinstance(mine, torch.Tensor) and mine.requires_grad,
             f"No gradient flows through {t.name}: keep the computation in torch (no .item(), no numpy).")
    (grad,) = torch.autograd.grad(mine, s)
    (expected,) = torch.autograd.grad(want, s)
    t.expect(t.close(grad, expected, atol=1e-6), "The gradient with respect to the student's logits is wrong, so "
             "training with this loss would not distil.")


def _reverse_kl_tests(t):
    t.formative(checks.check_reverse_kl)
    for i, (b, v) in enumerate(((1, 3), (32, 10), (7, 100))):
        s, z = _randn(b, v, seed=70 + i, scale=2), _randn(b, v, seed=80 + i, scale=4)
        same = unchanged(s), unchanged(z)
        t.expect(t.close(t.call(s, z), losses.reverse_kl_loss(s, z, 1.0)),
                 f"Wrong for a batch of {b} with {v} classes: expected KL(p_s ‖ p_t), averaged over the batch.")
        t.expect(all(check() for check in same), f"{t.name} changed the logits it was given.")
    big_s, big_z = _randn(4, 10, seed=90, scale=1000), _randn(4, 10, seed=91, scale=1000)
    t.expect(t.close(t.call(big_s, big_z), losses.reverse_kl_loss(big_s, big_z, 1.0), atol=1e-2, rtol=1e-3),
             "Wrong or not finite for logits of size ~1000: use log_softmax, not the log of a softmax.")
    s, z = _randn(16, 10, seed=92, scale=2).requires_grad_(), _randn(16, 10, seed=93, scale=4)
    _gradient_matches(t, t.call(s, z), s, losses.reverse_kl_loss(s, z, 1.0))


def _sequence_kd_loss_tests(t):
    t.formative(checks.check_sequence_kd_loss)
    for i, ((b, length, v), T) in enumerate((((1, 5, 4), 1.0), ((8, 16, 30), 4.0), ((3, 2, 100), 0.5))):
        s, z = _randn(b, length, v, seed=100 + i, scale=2), _randn(b, length, v, seed=110 + i, scale=3)
        mask = torch.rand(b, length, generator=torch.Generator().manual_seed(120 + i)) < 0.7
        mask[0, 0] = True  # at least one position counts
        same = unchanged(s), unchanged(z), unchanged(mask)
        t.expect(t.close(t.call(s, z, mask, T), losses.kd_loss(s, z, T, mask=mask)),
                 f"Wrong for logits of shape {(b, length, v)} at T = {T} with a random mask: expected T² · KL(p_t ‖ p_s) "
                 "averaged over the positions where mask is True.")
        t.expect(all(check() for check in same), f"{t.name} changed its inputs; compute on them without modifying them.")
    s, z, mask = checks.sequence_batch(seed=130)
    flat = s.reshape(-1, s.shape[-1]), z.reshape(-1, z.shape[-1])
    full = torch.ones(s.shape[:2], dtype=torch.bool)
    t.expect(t.close(t.call(s, z, full, 2.0), losses.kd_loss(*flat, 2.0)),
             "With every position counting, the loss on (B, L, V) logits must equal the image-style KD loss on the "
             "(B·L, V) rows.")
    t.expect(t.close(t.call(s, s.clone(), mask, 2.0), torch.tensor(0.0)), "The loss must be 0 when student and "
             "teacher logits are equal.")
    garbage = s.clone()
    garbage[~mask] = 1e4 * torch.sign(garbage[~mask])  # what a model outputs after padding must not matter
    t.expect(t.close(t.call(garbage, z, mask, 2.0), losses.kd_loss(s, z, 2.0, mask=mask)),
             "The student's logits at padded positions changed the loss: they must not count at all (and must not "
             "make it NaN: use log_softmax, not the log of a softmax).")
    s = s.clone().requires_grad_()
    _gradient_matches(t, t.call(s, z, mask, 2.0), s, losses.kd_loss(s, z, 2.0, mask=mask))


def _sampler_tests(t):
    t.formative(checks.check_sampler)
    logits = _randn(6, 12, seed=140, scale=3)
    same = unchanged(logits)
    first = t.call(logits, 0.7, torch.Generator().manual_seed(5))
    t.expect(same(), f"{t.name} changed the logits it was given; use logits / T, not logits /= T.")
    t.expect(isinstance(first, torch.Tensor) and first.shape == (6,) and bool(((first >= 0) & (first < 12)).all()),
             "Return one token id per row, each between 0 and V − 1.")
    t.expect(torch.equal(t.call(logits, 0.0, torch.Generator()), logits.argmax(-1)),
             "At temperature 0 the sampler must return the argmax of every row.")
    peaked = torch.tensor([[0.0, 50.0, 0.0]]).repeat(100, 1)
    t.expect(bool((t.call(peaked, 1.0, torch.Generator().manual_seed(6)) == 1).all()),
             "A distribution with almost all its mass on one token must always give that token.")
    wide = torch.zeros(30_000, 5)
    freq = torch.bincount(t.call(wide, 3.0, torch.Generator().manual_seed(7)), minlength=5).double() / 30_000
    t.expect(bool(((freq - 0.2).abs() < 0.02).all()), "Equal logits must give every token the same chance, at any T.")


REVERSE_KL = Exercise(
    id="reverse_kl", notebook=NOTEBOOK, answer="my_reverse_kl", points=3,
    hints=("KL(p_s ‖ p_t) = Σ_v p_s (log p_s − log p_t): the student's probabilities weigh the log-ratio. Work with "
           "log_p_s = F.log_softmax(student_logits, dim=-1) and the same for the teacher.",
           "(log_p_s.exp() * (log_p_s - log_p_t)).sum(dim=-1) is one KL per row; average the rows with .mean()."),
    stub='''def my_reverse_kl(student_logits, teacher_logits):
    # Both (B, V). Return KL(p_student ‖ p_teacher), averaged over the batch.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''log_p_s = F.log_softmax(student_logits, dim=-1)  # (B, V)
log_p_t = F.log_softmax(teacher_logits, dim=-1)
return (log_p_s.exp() * (log_p_s - log_p_t)).sum(dim=-1).mean()  # the student's mass weighs the log-ratio''',
    check="kdlab.checks.check_reverse_kl(my_reverse_kl)",
    references=("kdlab.losses.reverse_kl_loss", "kdlab.losses.kd_loss"),
    tests=_reverse_kl_tests,
)

SEQUENCE_KD_LOSS = Exercise(
    id="sequence_kd_loss", notebook=NOTEBOOK, answer="my_sequence_kd_loss", points=4,
    hints=("Compute one KL per position: F.kl_div(log_p_s, p_t, reduction='none').sum(dim=-1) has shape (B, L), "
           "with log_p_s = F.log_softmax(student_logits / T, dim=-1) and p_t = F.softmax(teacher_logits / T, dim=-1).",
           "Average only where mask is True: (per_position * mask).sum() / mask.sum(); then multiply by T * T."),
    stub='''def my_sequence_kd_loss(student_logits, teacher_logits, mask, T):
    # Logits (B, L, V); mask (B, L) is True where a character counts, False on padding.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''log_p_s = F.log_softmax(student_logits / T, dim=-1)  # (B, L, V)
p_t = F.softmax(teacher_logits / T, dim=-1)
per_position = F.kl_div(log_p_s, p_t, reduction="none").sum(dim=-1)  # (B, L): KL(p_t ‖ p_s) at each position
return (per_position * mask).sum() / mask.sum() * T * T  # mean over the characters that count''',
    check="kdlab.checks.check_sequence_kd_loss(my_sequence_kd_loss)",
    references=("kdlab.losses.kd_loss", "kdlab.losses.masked_mean", "kdlab.losses.distillation_loss"),
    tests=_sequence_kd_loss_tests,
)

TEMPERATURE_SAMPLER = Exercise(
    id="temperature_sampler", notebook=NOTEBOOK, answer="my_sample", points=3,
    hints=("At temperature 0 return logits.argmax(dim=-1). Otherwise the probabilities are "
           "torch.softmax(logits / temperature, dim=-1).",
           "torch.multinomial(probs, 1, generator=generator) draws one id per row, shape (B, 1); .squeeze(-1) "
           "makes it (B,)."),
    stub='''def my_sample(logits, temperature, generator):
    # logits (B, V) -> one token id per row, shape (B,).
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''if temperature == 0:
    return logits.argmax(dim=-1)  # greedy
probs = torch.softmax(logits / temperature, dim=-1)
return torch.multinomial(probs, 1, generator=generator).squeeze(-1)''',
    check="kdlab.checks.check_sampler(my_sample)",
    references=("kdlab.lm.sample_next",),
    tests=_sampler_tests,
)

EXERCISES = (TEMPERATURE_SAMPLER, SEQUENCE_KD_LOSS, REVERSE_KL)  # in the order of the notebook
