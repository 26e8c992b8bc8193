"""The KD losses, tested against the mistakes that go wrong silently."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab import losses, objectives

# Fixed, asymmetric logits (B=3, K=4): the two KL directions differ a lot on these.
STUDENT = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0], [-1.0, 4.0, 0.0, 1.0]])
TEACHER = torch.tensor([[5.0, -2.0, 1.0, 0.0], [0.0, 0.0, 0.5, 2.5], [1.0, 1.0, -3.0, 6.0]])
TARGETS = torch.tensor([0, 3, 3])


def reference_kd(s, t, T):
    """T^2 * mean over the batch of sum_i p_t,i (log p_t,i - log p_s,i), written out by hand."""
    p_t = torch.softmax(t.double() / T, dim=1)
    log_p_s = torch.log_softmax(s.double() / T, dim=1)
    return T * T * (p_t * (torch.log(p_t) - log_p_s)).sum(1).mean()


# Stored reference values (float64, computed once from the formula above; torchdistill keeps such numbers too).
STORED = {1.0: 2.2653419, 4.0: 3.8928352, 20.0: 3.8595706}


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
def test_kd_loss_matches_the_formula(T):
    torch.testing.assert_close(losses.kd_loss(STUDENT, TEACHER, T).double(), reference_kd(STUDENT, TEACHER, T),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("T,value", sorted(STORED.items()))
def test_kd_loss_stored_values(T, value):
    assert losses.kd_loss(STUDENT, TEACHER, T).item() == pytest.approx(value, rel=1e-5)


# A confident teacher and an unsure student: KL(p_t||p_s) ~ 1.3 nats but KL(p_s||p_t) ~ 4.3.
UNSURE = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]])
CONFIDENT = torch.tensor([[8.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0]])


def test_kl_direction_is_teacher_to_student():
    wrong = reference_kd(CONFIDENT, UNSURE, 1.0)  # KL(p_s || p_t)
    right = reference_kd(UNSURE, CONFIDENT, 1.0)
    assert abs(wrong - right) > 1.0, "test inputs must tell the directions apart"
    assert losses.kd_loss(UNSURE, CONFIDENT, 1.0).item() == pytest.approx(right.item(), rel=1e-5)


def test_log_probabilities_not_probabilities_go_into_kl():
    # The classic bug: F.kl_div(softmax(s), softmax(t)) instead of log-probabilities.
    T = 4.0
    buggy = F.kl_div(F.softmax(STUDENT / T, 1), F.softmax(TEACHER / T, 1), reduction="batchmean") * T * T
    assert abs(buggy.item() - losses.kd_loss(STUDENT, TEACHER, T).item()) > 0.5


def test_batchmean_divides_by_batch_size_not_elements():
    T = 2.0
    per_example = reference_kd(STUDENT, TEACHER, T).item()
    buggy_mean = per_example / STUDENT.shape[1]  # reduction="mean" also divides by K
    value = losses.kd_loss(STUDENT, TEACHER, T).item()
    assert value == pytest.approx(per_example, rel=1e-5) and abs(value - buggy_mean) > 0.5
    # Repeating the batch leaves a per-example average unchanged.
    doubled = losses.kd_loss(STUDENT.repeat(2, 1), TEACHER.repeat(2, 1), T).item()
    assert doubled == pytest.approx(value, rel=1e-5)


def _soft_grad_norm(T, with_t2=True):
    s = STUDENT.clone().requires_grad_(True)
    loss = losses.kd_loss(s, TEACHER, T)
    if not with_t2:
        loss = loss / (T * T)
    loss.backward()
    return s.grad.norm().item()


def test_t_squared_keeps_soft_gradient_magnitude_roughly_constant():
    norms = [_soft_grad_norm(T) for T in (2.0, 5.0, 10.0, 20.0)]
    assert max(norms) / min(norms) < 3.0, norms
    # Without T^2 the gradient shrinks like 1/T^2: a factor ~100 from T=2 to T=20.
    bare = [_soft_grad_norm(T, with_t2=False) for T in (2.0, 20.0)]
    assert bare[0] / bare[1] > 30


def test_gradient_is_T_times_probability_difference_over_batch():
    T = 3.0
    s = STUDENT.clone().requires_grad_(True)
    losses.kd_loss(s, TEACHER, T).backward()
    expected = T * (torch.softmax(STUDENT / T, 1) - torch.softmax(TEACHER / T, 1)) / STUDENT.shape[0]
    torch.testing.assert_close(s.grad, expected, rtol=1e-4, atol=1e-6)


def test_swapped_arguments_give_a_different_loss_and_gradient():
    T = 1.0
    assert abs(losses.kd_loss(UNSURE, CONFIDENT, T).item() - losses.kd_loss(CONFIDENT, UNSURE, T).item()) > 1.0
    # The gradient only flows into the first argument when the second is a (detached) target.
    s = STUDENT.clone().requires_grad_(True)
    t = TEACHER.clone().requires_grad_(True)
    losses.kd_loss(s, t.detach(), T).backward()
    assert s.grad is not None and t.grad is None


@pytest.mark.parametrize("T", [0.05, 1.0, 100.0])
def test_zero_for_identical_logits(T):
    assert losses.kd_loss(STUDENT, STUDENT.clone(), T).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("T", [0.05, 0.5, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_finite_for_extreme_logits(T, scale):
    s = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.5]]) * scale
    t = torch.tensor([[-1.0, 1.0, 0.3], [1.0, -1.0, 0.0]]) * scale
    value = losses.kd_loss(s, t, T)
    assert torch.isfinite(value) and value.item() >= 0
    s.requires_grad_(True)
    losses.kd_loss(s, t, T).backward()
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
    objective = objectives.Distillation(temperature=4.0, alpha=0.9)
    loss, logs = objective(STUDENT, TARGETS, TEACHER)
    torch.testing.assert_close(loss, losses.distillation_loss(STUDENT, TEACHER, TARGETS, 4.0, 0.9))
    assert set(logs) == {"kd", "ce"}


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
def test_distillation_terms_match_the_reference_loss_and_gradient(alpha, temperature):
    gen = torch.Generator().manual_seed(7)
    s = (3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)).requires_grad_()
    t = 3 * torch.randn(16, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (16,), generator=gen)
    ref = losses.distillation_loss(s, t, y, temperature, alpha)
    (g_ref,) = torch.autograd.grad(ref, s)
    loss, kd, ce = losses.distillation_terms(s, t, y, temperature, alpha)
    (g,) = torch.autograd.grad(loss, s)
    assert torch.allclose(loss.double(), ref.double(), atol=1e-5)
    assert torch.allclose(g.double(), g_ref, atol=1e-6), (g - g_ref).abs().max()
    assert torch.allclose(kd.double(), losses.kd_loss(s, t, temperature).double(), atol=1e-5)
    assert not kd.requires_grad and not ce.requires_grad


def test_distillation_terms_errors_and_float32_math():
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 2])
    # The maths runs in float32 (bf16-safe); the gradient keeps the input's dtype.
    loss, _, _ = losses.distillation_terms(s.bfloat16(), t, y, 2.0, 0.7)
    loss.backward()
    assert s.grad is not None and s.grad.dtype == torch.float64 and torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="teacher_logits has shape"):
        losses.distillation_terms(s, t[:, :3], y, 2.0, 0.7)
    with pytest.raises(ValueError, match="alpha"):
        losses.distillation_terms(s, t, y, 2.0, 1.5)


def test_distillation_terms_without_grad_compute_the_values_only():
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(8, 10, generator=gen, requires_grad=True)
    t = torch.randn(8, 10, generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    with torch.no_grad():
        loss, kd, ce = losses.distillation_terms(s, t, y, 4.0, 0.9)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, losses.distillation_loss(s, t, y, 4.0, 0.9).detach())
