"""Property-based tests of the KD losses over shapes, extreme logits and temperatures."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdlab import losses

shapes = st.tuples(st.integers(1, 8), st.integers(2, 20))
temperatures = st.floats(0.05, 100.0)
scales = st.sampled_from([1.0, 10.0, 1e2, 1e3, 1e4])


def logits(shape, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(shape, generator=gen) * 2 - 1) * scale).float()


@settings(max_examples=150, deadline=None)
@given(shape=shapes, T=temperatures, scale=scales, seed=st.integers(0, 2**16))
def test_kd_loss_is_finite_and_non_negative(shape, T, scale, seed):
    s, t = logits(shape, scale, seed), logits(shape, scale, seed + 1)
    value = losses.kd_loss(s, t, T)
    assert torch.isfinite(value) and value.item() >= 0.0


@settings(max_examples=100, deadline=None)
@given(shape=shapes, T=temperatures, scale=scales, seed=st.integers(0, 2**16))
def test_kd_loss_is_zero_when_student_equals_teacher(shape, T, scale, seed):
    z = logits(shape, scale, seed)
    assert losses.kd_loss(z, z.clone(), T).item() <= 1e-4 * T * T


@settings(max_examples=100, deadline=None)
@given(shape=shapes, T=temperatures, scale=scales, alpha=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_distillation_loss_is_finite_and_non_negative(shape, T, scale, alpha, seed):
    s, t = logits(shape, scale, seed), logits(shape, scale, seed + 1)
    y = torch.randint(0, shape[1], (shape[0],), generator=torch.Generator().manual_seed(seed))
    value = losses.distillation_loss(s, t, y, T, alpha)
    assert torch.isfinite(value) and value.item() >= 0.0


@settings(max_examples=60, deadline=None)
@given(shape=shapes, T=temperatures, scale=scales, seed=st.integers(0, 2**16))
def test_kd_gradient_is_finite(shape, T, scale, seed):
    s = logits(shape, scale, seed).requires_grad_(True)
    losses.kd_loss(s, logits(shape, scale, seed + 1), T).backward()
    assert torch.isfinite(s.grad).all()
