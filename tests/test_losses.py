"""The KD losses, tested against the mistakes that go wrong silently.

Each silent mistake (STYLE.md, principle 11) is tested on ``losses.kd_loss``, the function a
learner writes in notebook 03, and on the path that trains: ``objectives.Distillation.forward``
with a :class:`kdlab.teacher.Teacher` serving the teacher's logits, as ``fit`` calls it.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdlab
from kdlab import losses, objectives
from kdlab.data import Batch, Split
from kdlab.teacher import Teacher

from .fixtures import prepared

# Fixed, asymmetric logits (B=3, K=4): the two KL directions differ a lot on these.
STUDENT = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0], [-1.0, 4.0, 0.0, 1.0]])
TEACHER = torch.tensor([[5.0, -2.0, 1.0, 0.0], [0.0, 0.0, 0.5, 2.5], [1.0, 1.0, -3.0, 6.0]])
TARGETS = torch.tensor([0, 3, 3])


def prepared_distillation(teacher_logits, temperature, alpha, *, labels=None):
    """``Distillation`` as fit builds it, over a Teacher that serves ``teacher_logits`` (B, K)
    as precomputed logits of a B-image training split, ready for ``batch_of``."""
    make = lambda teacher: objectives.Distillation(teacher, temperature, alpha)  # noqa: E731
    return prepared(make, teacher_logits, labels)[0]


def batch_of(y, idx=None):
    """A Batch of len(y) images (the inputs are unused with given teacher logits)."""
    n = len(y)
    idx = torch.arange(n) if idx is None else idx
    return Batch(torch.zeros(n, 1, 2, 2), y, idx, torch.zeros(n, dtype=torch.long))


def trained_kd(s, t, T):
    """The soft term as training computes it: Distillation.forward with alpha = 1."""
    objective = prepared_distillation(t.detach(), T, 1.0)
    loss, logs = objective(s, batch_of(torch.zeros(len(s), dtype=torch.long)))
    torch.testing.assert_close(logs["kd"], loss.detach())
    return loss


# Every silent-mistake test runs on both: the taught function, and what fit minimises.
KD = pytest.mark.parametrize("kd", [losses.kd_loss, trained_kd], ids=["kd_loss", "Distillation.forward"])


def reference_kd(s, t, T):
    """T^2 * mean over the batch of sum_i p_t,i (log p_t,i - log p_s,i), written out by hand."""
    p_t = torch.softmax(t.double() / T, dim=1)
    log_p_s = torch.log_softmax(s.double() / T, dim=1)
    return T * T * (p_t * (torch.log(p_t) - log_p_s)).sum(1).mean()


# Stored reference values (float64, computed once from the formula above; torchdistill keeps such numbers too).
STORED = {1.0: 2.2653419, 4.0: 3.8928352, 20.0: 3.8595706}


@KD
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
def test_kd_loss_matches_the_formula(kd, T):
    torch.testing.assert_close(kd(STUDENT, TEACHER, T).double(), reference_kd(STUDENT, TEACHER, T),
                               rtol=1e-5, atol=1e-6)


@KD
@pytest.mark.parametrize("T,value", sorted(STORED.items()))
def test_kd_loss_stored_values(kd, T, value):
    assert kd(STUDENT, TEACHER, T).item() == pytest.approx(value, rel=1e-5)


# A confident teacher and an unsure student: KL(p_t||p_s) ~ 1.3 nats but KL(p_s||p_t) ~ 4.3.
UNSURE = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]])
CONFIDENT = torch.tensor([[8.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0]])


@KD
def test_kl_direction_is_teacher_to_student(kd):
    wrong = reference_kd(CONFIDENT, UNSURE, 1.0)  # KL(p_s || p_t)
    right = reference_kd(UNSURE, CONFIDENT, 1.0)
    assert abs(wrong - right) > 1.0, "test inputs must tell the directions apart"
    assert kd(UNSURE, CONFIDENT, 1.0).item() == pytest.approx(right.item(), rel=1e-5)


@KD
def test_log_probabilities_not_probabilities_go_into_kl(kd):
    # The classic bug: F.kl_div(softmax(s), softmax(t)) instead of log-probabilities.
    T = 4.0
    buggy = F.kl_div(F.softmax(STUDENT / T, 1), F.softmax(TEACHER / T, 1), reduction="batchmean") * T * T
    assert abs(buggy.item() - kd(STUDENT, TEACHER, T).item()) > 0.5


@KD
def test_batchmean_divides_by_batch_size_not_elements(kd):
    T = 2.0
    per_example = reference_kd(STUDENT, TEACHER, T).item()
    buggy_mean = per_example / STUDENT.shape[1]  # reduction="mean" also divides by K
    value = kd(STUDENT, TEACHER, T).item()
    assert value == pytest.approx(per_example, rel=1e-5) and abs(value - buggy_mean) > 0.5
    # Repeating the batch leaves a per-example average unchanged.
    doubled = kd(STUDENT.repeat(2, 1), TEACHER.repeat(2, 1), T).item()
    assert doubled == pytest.approx(value, rel=1e-5)


def _soft_grad_norm(kd, T, with_t2=True):
    s = STUDENT.clone().requires_grad_(True)
    loss = kd(s, TEACHER, T)
    if not with_t2:
        loss = loss / (T * T)
    loss.backward()
    return s.grad.norm().item()


@KD
def test_t_squared_keeps_soft_gradient_magnitude_roughly_constant(kd):
    norms = [_soft_grad_norm(kd, T) for T in (2.0, 5.0, 10.0, 20.0)]
    assert max(norms) / min(norms) < 3.0, norms
    # Without T^2 the gradient shrinks like 1/T^2: a factor ~100 from T=2 to T=20.
    bare = [_soft_grad_norm(kd, T, with_t2=False) for T in (2.0, 20.0)]
    assert bare[0] / bare[1] > 30


@KD
def test_gradient_is_T_times_probability_difference_over_batch(kd):
    T = 3.0
    s = STUDENT.clone().requires_grad_(True)
    kd(s, TEACHER, T).backward()
    expected = T * (torch.softmax(STUDENT / T, 1) - torch.softmax(TEACHER / T, 1)) / STUDENT.shape[0]
    torch.testing.assert_close(s.grad, expected, rtol=1e-4, atol=1e-6)


@KD
def test_swapped_arguments_give_a_different_loss_and_gradient(kd):
    T = 1.0
    assert abs(kd(UNSURE, CONFIDENT, T).item() - kd(CONFIDENT, UNSURE, T).item()) > 1.0
    # The gradient only flows into the first argument when the second is a (detached) target.
    s = STUDENT.clone().requires_grad_(True)
    t = TEACHER.clone().requires_grad_(True)
    kd(s, t.detach(), T).backward()
    assert s.grad is not None and t.grad is None


def test_the_objective_takes_the_teacher_as_the_target_and_never_trains_it():
    # Swapping teacher and student inside the objective (the published Keras bug set
    # ``self.teacher = student``) would make the teacher's logits the ones being pushed.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(CONFIDENT[0])  # the teacher says CONFIDENT[0] for every image
    split = Split(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 3]), torch.zeros(1), torch.ones(1))
    objective = objectives.Distillation(model, temperature=1.0, alpha=1.0)
    objective.prepare(split, augment=False, epochs=1, device=torch.device("cpu"), amp=False, num_classes=4)
    s = UNSURE.clone().requires_grad_(True)
    loss, _ = objective(s, Batch(split.inputs(), split.y, torch.arange(2), torch.zeros(2, dtype=torch.long)))
    teacher = CONFIDENT[0].expand(2, 4)
    assert loss.item() == pytest.approx(reference_kd(UNSURE, teacher, 1.0).item(), rel=1e-5)
    assert abs(loss.item() - reference_kd(teacher, UNSURE, 1.0).item()) > 1.0
    loss.backward()
    assert s.grad is not None and all(p.grad is None for p in model.parameters())
    assert not model.training


@KD
@pytest.mark.parametrize("T", [0.05, 1.0, 100.0])
def test_zero_for_identical_logits(kd, T):
    assert kd(STUDENT, STUDENT.clone(), T).item() == pytest.approx(0.0, abs=1e-6)


@KD
@pytest.mark.parametrize("T", [0.05, 0.5, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_finite_for_extreme_logits(kd, T, scale):
    s = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.5]]) * scale
    t = torch.tensor([[-1.0, 1.0, 0.3], [1.0, -1.0, 0.0]]) * scale
    value = kd(s, t, T)
    assert torch.isfinite(value) and value.item() >= 0
    s.requires_grad_(True)
    kd(s, t, T).backward()
    assert torch.isfinite(s.grad).all()


def test_distillation_loss_puts_alpha_on_the_soft_term():
    T, alpha = 4.0, 0.7
    kd = losses.kd_loss(STUDENT, TEACHER, T)
    ce = F.cross_entropy(STUDENT, TARGETS)
    combined = losses.distillation_loss(STUDENT, TEACHER, TARGETS, T, alpha)
    torch.testing.assert_close(combined, alpha * kd + (1 - alpha) * ce)
    torch.testing.assert_close(losses.distillation_loss(STUDENT, TEACHER, TARGETS, T, 1.0), kd)
    torch.testing.assert_close(losses.distillation_loss(STUDENT, TEACHER, TARGETS, T, 0.0), ce)


def test_distillation_objective_equals_the_function():
    objective = prepared_distillation(TEACHER, 4.0, 0.9, labels=TARGETS)
    loss, logs = objective(STUDENT, batch_of(TARGETS))
    torch.testing.assert_close(loss, losses.distillation_loss(STUDENT, TEACHER, TARGETS, 4.0, 0.9))
    assert set(logs) == {"kd", "ce"}
    torch.testing.assert_close(logs["kd"], losses.kd_loss(STUDENT, TEACHER, 4.0))
    torch.testing.assert_close(logs["ce"], F.cross_entropy(STUDENT, TARGETS))
    assert objective.describe() == {"objective": "Distillation", "temperature": 4.0, "alpha": 0.9,
                                    "teacher_logits": "given", "soft_loss": "kd_loss"}


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_alpha_one_ignores_the_labels_and_alpha_zero_is_cross_entropy(T):
    gen = torch.Generator().manual_seed(5)
    s, t = 3 * torch.randn(16, 10, generator=gen), 3 * torch.randn(16, 10, generator=gen)
    y1, y2 = torch.randint(0, 10, (16,), generator=gen), torch.randint(0, 10, (16,), generator=gen)
    assert not torch.equal(y1, y2)
    soft_only = prepared_distillation(t, T, alpha=1.0)
    a, b = soft_only(s, batch_of(y1))[0], soft_only(s, batch_of(y2))[0]
    assert torch.equal(a, b)  # kdlab's alpha weighs the SOFT term: alpha = 1 never looks at y
    torch.testing.assert_close(a, losses.kd_loss(s, t, T))
    hard_only = prepared_distillation(t, T, alpha=0.0)
    for y in (y1, y2):
        torch.testing.assert_close(hard_only(s, batch_of(y))[0], F.cross_entropy(s, y))
    # The other convention (alpha on the hard term, as torchdistill and Keras) would swap these two.
    assert abs(a.item() - F.cross_entropy(s, y1).item()) > 0.1


def test_soft_targets_is_tempered_softmax():
    for T in (1.0, 4.0):
        torch.testing.assert_close(losses.soft_targets(TEACHER, T), torch.softmax(TEACHER / T, dim=1))
    hot = losses.soft_targets(TEACHER, 1e4)
    torch.testing.assert_close(hot, torch.full_like(hot, 0.25), atol=1e-3, rtol=0)


def test_entropy_in_bits():
    assert losses.entropy(torch.full((8,), 1 / 8)).item() == pytest.approx(3.0)
    assert losses.entropy(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-9)
    assert losses.entropy(torch.tensor([0.5, 0.5])).item() == pytest.approx(math.log2(2))


def test_soft_cross_entropy_differs_from_kl_by_the_target_entropy():
    q = torch.softmax(TEACHER, 1)
    kl = F.kl_div(torch.log_softmax(STUDENT, 1), q, reduction="batchmean")
    h = -(q * q.log()).sum(1).mean()
    torch.testing.assert_close(losses.soft_cross_entropy(STUDENT, q), kl + h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_distillation_objective_matches_the_reference_loss_and_gradient(alpha, temperature):
    gen = torch.Generator().manual_seed(7)
    s = (3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)).requires_grad_()
    t = 3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (16,), generator=gen)
    ref = losses.distillation_loss(s, t, y, temperature, alpha)
    (g_ref,) = torch.autograd.grad(ref, s)
    loss, logs = prepared_distillation(t, temperature, alpha, labels=y)(s, batch_of(y))
    (g,) = torch.autograd.grad(loss, s)
    assert loss.dtype == torch.float32  # Distillation computes in float32, like the loss functions
    assert torch.allclose(loss.double(), ref.double(), atol=1e-5)
    assert torch.allclose(g.double(), g_ref.double(), atol=1e-6), (g - g_ref).abs().max()
    assert torch.allclose(logs["kd"].double(), losses.kd_loss(s, t, temperature).double(), atol=1e-5)
    assert all(not v.requires_grad for v in logs.values())


def test_distillation_objective_computes_in_float32_from_bf16_logits():
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 5, generator=gen)
    y = torch.tensor([0, 4, 2, 2])
    # Logits from a bf16 autocast region: the maths runs in float32; the gradient keeps the input's dtype.
    loss, _ = prepared_distillation(t, 2.0, 0.7, labels=y)(s.bfloat16(), batch_of(y))
    assert loss.dtype == torch.float32
    loss.backward()
    assert s.grad is not None and s.grad.dtype == torch.float64 and torch.isfinite(s.grad).all()
    torch.testing.assert_close(loss, losses.distillation_loss(s.bfloat16().float(), t, y, 2.0, 0.7))


def test_the_old_fused_terms_are_gone():
    # Training uses Distillation.forward -> losses.kd_loss with plain autograd, nothing else.
    assert not hasattr(losses, "distillation_terms") and not hasattr(losses, "_DistillationTerms")


# --- precomputed teacher logits must follow the shuffled (and augmented) batches --------------------

@pytest.fixture(scope="module")
def digits():
    return kdlab.data.load("digits", seed=0)


class CheckingDistillation(objectives.Distillation):
    """Distillation that compares, on every batch, the teacher logits it trains on with the
    teacher's own answer on the images of that batch."""

    def __init__(self, teacher, model):
        super().__init__(teacher, temperature=4.0, alpha=0.9)
        self._model = (model,)  # a tuple: not registered as a submodule
        self.max_error, self.shuffled, self.batches = 0.0, False, 0

    def forward(self, student_logits, batch):
        with torch.no_grad():
            direct = self._model[0](batch.x)  # (B, K) on exactly the images the student sees
        served = self.teacher.logits(batch)
        self.max_error = max(self.max_error, (served - direct).abs().max().item())
        start = self.batches * len(batch.idx)
        self.shuffled |= not torch.equal(batch.idx, torch.arange(start, start + len(batch.idx)))
        self.batches += 1
        return super().forward(student_logits, batch)


@pytest.mark.parametrize("augment", [False, True])
def test_precomputed_teacher_logits_stay_aligned_after_shuffling(digits, augment):
    # A linear teacher: its logits tell the images apart, so a row served for the wrong
    # image (or the wrong shift of the right image) shows up as a large error.
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    predict = kdlab.inference.predict_augmented_logits if augment else kdlab.inference.predict_logits
    given = predict(model, digits.train)  # row i belongs to training image i
    objective = CheckingDistillation(Teacher(model, logits=given), model)
    student = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(16,), seed=0)
    history = kdlab.train.fit(student, digits, objective=objective, epochs=2, batch_size=64, augment=augment,
                              progress=False)
    assert history.config["teacher_logits"] == "given"
    assert objective.shuffled and objective.batches == 2 * math.ceil(len(digits.train) / 64)
    assert objective.max_error < 1e-4


def test_the_loss_uses_the_rows_of_the_batch_not_the_first_rows():
    # What an unaligned cache would compute: the first B rows instead of the batch's own.
    gen = torch.Generator().manual_seed(2)
    t = 4 * torch.randn(32, 10, generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)
    idx = torch.randperm(32, generator=gen)[:8]
    s = torch.randn(8, 10, generator=gen)
    objective = prepared_distillation(t, 4.0, 0.9, labels=y)
    loss, _ = objective(s, batch_of(y[idx], idx))
    torch.testing.assert_close(loss, losses.distillation_loss(s, t[idx], y[idx], 4.0, 0.9))
    assert abs(loss.item() - losses.distillation_loss(s, t[:8], y[idx], 4.0, 0.9).item()) > 0.1
