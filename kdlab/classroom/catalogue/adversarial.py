"""The exercises of notebook 06 (adversarial distillation: the discriminator's side)."""

from __future__ import annotations

import torch

from ... import adversarial
from ...checks import adversarial as checks
from ..exercises import Exercise

NOTEBOOK = "06_adversarial_distillation"


def _scores(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 2 + shift


def _discriminator_loss_tests(t):
    t.formative(checks.check_discriminator_loss)
    real, fake = _scores(5, 60, 1.0), _scores(9, 61, -1.0)  # batches of different sizes
    t.expect(t.close(t.call(real, fake), adversarial.discriminator_loss(real, fake, "bce")),
             "Wrong for a real batch of 5 and a fake batch of 9: average each BCE term over its own batch, then add.")
    real, fake = _scores(8, 62).requires_grad_(), _scores(8, 63).requires_grad_()
    mine = t.call(real, fake)
    t.expect(isinstance(mine, torch.Tensor) and mine.requires_grad,
             f"No gradient flows through {t.name}: the discriminator could not learn from it.")
    grads = torch.autograd.grad(mine, (real, fake))
    want = torch.autograd.grad(adversarial.discriminator_loss(real, fake, "bce"), (real, fake))
    t.expect(all(t.close(g, w, atol=1e-6) for g, w in zip(grads, want)),
             "The gradient with respect to the scores is wrong, so the discriminator would learn the wrong thing.")


def _discriminator_accuracy_tests(t):
    t.formative(checks.check_discriminator_accuracy)
    cases = ((torch.tensor([0.5, 2.0, 0.1]), torch.tensor([-1.0, -0.2]), (1.0, 1.0), "a perfect discriminator"),
             (_scores(3, 64), _scores(8, 65), None, "batches of 3 and 8"))
    for real, fake, expected, what in cases:
        value = t.call(real, fake)
        expected = expected or tuple(float(a) for a in adversarial.discriminator_accuracy(real, fake, "bce"))
        try:
            got = tuple(float(v) for v in value)
        except (TypeError, ValueError, RuntimeError):
            got = None
        t.expect(got is not None and len(got) == 2 and all(abs(g - e) < 1e-6 for g, e in zip(got, expected)),
                 f"For {what} expected (acc_real, acc_fake) = {expected}, got {value!r}.")


def _conditioned_input_tests(t):
    t.formative(checks.check_conditioned_input)
    gen = torch.Generator().manual_seed(66)
    for b, k, targets in ((4, 6, [0, 1, 1, 0]), (1, 3, [2])):
        probs = torch.randn(b, k, generator=gen).softmax(1)
        targets = torch.tensor(targets)
        value = t.call(probs, targets, k)
        t.expect(isinstance(value, torch.Tensor) and value.is_floating_point(),
                 f"Return a float tensor, got {getattr(value, 'dtype', type(value).__name__)}.")
        t.expect(t.close(value, adversarial.conditioned_input(probs, targets, k)),
                 f"Wrong for {b} examples of {k} classes with targets {targets.tolist()}: the one-hot part has "
                 "num_classes columns even when the batch holds fewer classes (F.one_hot(targets, num_classes)).")


DISCRIMINATOR_LOSS = Exercise(
    id="discriminator_loss", notebook=NOTEBOOK, answer="my_discriminator_loss", points=3,
    hints=("The teacher's distributions are real (target 1), the student's fake (target 0); the scores are logits.",
           "F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores)) + the same for "
           "fake_scores with torch.zeros_like(fake_scores)."),
    stub='''import torch
import torch.nn.functional as F


def my_discriminator_loss(real_scores, fake_scores):
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))  # teacher: real, 1
fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))  # student: fake, 0
return real + fake''',
    check="kdlab.checks.check_discriminator_loss(my_discriminator_loss)",
    references=("kdlab.adversarial.discriminator_loss",),
    tests=_discriminator_loss_tests,
)

DISCRIMINATOR_ACCURACY = Exercise(
    id="discriminator_accuracy", notebook=NOTEBOOK, answer="my_discriminator_accuracy", points=2,
    hints=("A score above 0 means real: (real_scores > 0) marks the real inputs called real.",
           "Average the booleans as floats for each side: ((real_scores > 0).float().mean(), "
           "(fake_scores <= 0).float().mean())."),
    stub='''def my_discriminator_accuracy(real_scores, fake_scores):
    # Return (acc_real, acc_fake).
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''# A score above 0 means real; a score of exactly 0 counts as fake.
return (real_scores > 0).float().mean(), (fake_scores <= 0).float().mean()''',
    check="kdlab.checks.check_discriminator_accuracy(my_discriminator_accuracy)",
    references=("kdlab.adversarial.discriminator_accuracy",),
    tests=_discriminator_accuracy_tests,
)

CONDITIONED_INPUT = Exercise(
    id="conditioned_input", notebook=NOTEBOOK, answer="my_conditioned_input", points=2,
    hints=("Encode the labels one-hot: F.one_hot(targets, num_classes), as floats.",
           "Put the distribution first and the one-hot labels after it, side by side: torch.cat([...], dim=1)."),
    stub='''import torch
import torch.nn.functional as F


def my_conditioned_input(probs, targets, num_classes):
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''return torch.cat([probs, F.one_hot(targets, num_classes).float()], dim=1)  # (B, 2K)''',
    check="kdlab.checks.check_conditioned_input(my_conditioned_input)",
    references=("kdlab.adversarial.conditioned_input",),
    tests=_conditioned_input_tests,
)

EXERCISES = (DISCRIMINATOR_LOSS, DISCRIMINATOR_ACCURACY, CONDITIONED_INPUT)
