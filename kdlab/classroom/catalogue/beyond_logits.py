"""The exercises of notebook 11 (beyond logits): the attention map, and the DKD decomposition.

Each autograder test runs the formative check first, then tries other shapes, powers and
temperatures, the edge cases the check leaves out (a dead feature map, a teacher sure of its
answer, two classes), the gradient, and inputs left unchanged.
"""

from __future__ import annotations

import torch

from ... import losses
from ...checks import beyond_logits as checks
from ..exercises import Exercise
from ..grading import unchanged


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _attention_map_tests(t):
    t.formative(checks.check_attention_map)
    for shape, p, seed in (((1, 1, 1, 1), 2.0, 60), ((4, 16, 7, 7), 2.0, 61), ((2, 3, 5, 9), 1.0, 62),
                           ((8, 32, 14, 14), 4.0, 63)):
        x = torch.relu(_randn(*shape, seed=seed))
        same = unchanged(x)
        t.expect(t.close(t.call(x, p), losses.attention_map(x, p)),
                 f"Wrong for features of shape {shape} at p = {p}: expected (B, H·W) rows of unit length.")
        t.expect(same(), f"{t.name} changed the features it was given (an in-place pow_ or abs_?).")
    dead = torch.zeros(2, 4, 3, 3)
    dead[1] = torch.relu(_randn(4, 3, 3, seed=64))
    value = t.call(dead, 2.0)
    t.expect(t.close(value, losses.attention_map(dead, 2.0)),
             "An all-zero feature map (a dead ReLU layer) must give a zero map, not NaN: keep the norm away from 0 "
             "(F.normalize does, with its eps).")
    x = torch.relu(_randn(3, 6, 4, 4, seed=65)).requires_grad_()
    mine = t.call(x, 2.0)
    t.expect(isinstance(mine, torch.Tensor) and mine.requires_grad,
             f"No gradient flows through {t.name}: attention transfer trains the student through it.")
    (grad,) = torch.autograd.grad(mine[:, :3].sum(), x)
    (want,) = torch.autograd.grad(losses.attention_map(x, 2.0)[:, :3].sum(), x)
    t.expect(t.close(grad, want, atol=1e-5), "The gradient through your attention map is wrong.")


def _dkd_terms_tests(t):
    t.formative(checks.check_dkd_terms)
    for (b, k), T, seed in (((1, 2), 1.0, 70), ((16, 10), 4.0, 71), ((8, 100), 0.5, 72), ((5, 3), 10.0, 73)):
        zs, zt = _randn(b, k, seed=seed, scale=2), _randn(b, k, seed=seed + 100, scale=4)
        y = torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(seed))
        same = unchanged(zs), unchanged(zt)
        got = t.call(zs, zt, y, T)
        want = losses.decoupled_kd_terms(zs, zt, y, T)
        t.expect(isinstance(got, (tuple, list)) and len(got) == 2 and t.close(got[0], want[0], atol=1e-4)
                 and t.close(got[1], want[1], atol=1e-4),
                 f"Wrong for a batch of {b} with {k} classes at T = {T}: expected (tckd, nckd), each (B,), times T².")
        t.expect(all(check() for check in same), f"{t.name} changed the logits it was given; use z / T, not z /= T.")
    zs = _randn(4, 10, seed=74)
    zt = torch.zeros(4, 10)
    zt[:, 2] = 60.0  # a teacher sure of the target: 1 - p_t underflows at T = 1
    got = t.call(zs, zt, torch.full((4,), 2), 1.0)
    t.expect(isinstance(got, (tuple, list)) and len(got) == 2 and all(torch.isfinite(g).all() for g in got),
             "Not finite for a teacher sure of its answer (target logit 60 above the others at T = 1): compute "
             "log(1 − p_t) as a logsumexp over the other classes' log-probabilities, not log(1 − p_t).")
    zs = _randn(6, 5, seed=75).requires_grad_()
    zt, y = _randn(6, 5, seed=76, scale=3), torch.tensor([0, 1, 2, 3, 4, 0])
    got = t.call(zs, zt, y, 2.0)
    t.expect(isinstance(got[1], torch.Tensor) and got[1].requires_grad,
             f"No gradient flows through {t.name}'s nckd: keep the computation in torch.")
    (grad,) = torch.autograd.grad(got[0].sum() + 3 * got[1].sum(), zs)
    want = losses.decoupled_kd_terms(zs, zt, y, 2.0)
    (expected,) = torch.autograd.grad(want[0].sum() + 3 * want[1].sum(), zs)
    t.expect(t.close(grad, expected, atol=1e-5), "The gradient with respect to the student's logits is wrong.")


ATTENTION_MAP = Exercise(
    id="attention_map", notebook="11_beyond_logits", answer="my_attention_map", points=3,
    hints=("Average |features|^p over the channel dimension (dim=1): (B, H, W). Then flatten it to (B, H·W).",
           "Divide each row by its L2 norm, kept away from 0: F.normalize(q, p=2, dim=1)."),
    stub='''def my_attention_map(features, p=2.0):
    # features: (B, C, H, W). Return (B, H*W): |features|^p averaged over the channels,
    # flattened, each example's row of unit length.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''q = features.abs().pow(p).mean(dim=1).flatten(1)  # (B, H*W): where the activations are large
return F.normalize(q, p=2, dim=1)  # unit length per example (0 stays 0)''',
    check="kdlab.checks.check_attention_map(my_attention_map)",
    references=("kdlab.losses.attention_map", "kdlab.losses.attention_transfer_loss", "kdlab.beyond.attention_maps"),
    tests=_attention_map_tests,
)

DKD_TERMS = Exercise(
    id="dkd_terms", notebook="11_beyond_logits", answer="my_dkd_terms", points=4,
    hints=("With log_p = F.log_softmax(z / T, dim=1): the binary distribution is (log_p at the target, logsumexp of "
           "log_p over the other classes). For the other classes alone, take a log_softmax of z / T with the "
           "target's column left out (z[~mask].view(B, K - 1)).",
           "tckd = (b_t.exp() * (b_t - b_s)).sum(1) * T * T for the (B, 2) log-distributions b, and nckd the same "
           "over the (B, K - 1) ones; the teacher's side needs no gradient."),
    stub='''def my_dkd_terms(student_logits, teacher_logits, targets, T):
    # Return (tckd, nckd), each of shape (B,), both multiplied by T².
    # tckd: KL(teacher || student) of the binary distributions (p_target, 1 - p_target).
    # nckd: KL(teacher || student) of the distributions over the other K - 1 classes.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''B, K = student_logits.shape
target = F.one_hot(targets, K).bool()  # (B, K)

def parts(logits):
    log_p = F.log_softmax(logits / T, dim=1)  # (B, K)
    rest = torch.logsumexp(log_p.masked_fill(target, float("-inf")), dim=1)  # log(1 - p_target), stably
    binary = torch.stack([log_p[target], rest], dim=1)  # (B, 2)
    others = F.log_softmax(logits[~target].view(B, K - 1) / T, dim=1)  # (B, K-1): target left out
    return binary, others

s_b, s_o = parts(student_logits)
t_b, t_o = parts(teacher_logits)
tckd = (t_b.exp() * (t_b - s_b)).sum(1) * T * T  # KL(b_t || b_s) per example
nckd = (t_o.exp() * (t_o - s_o)).sum(1) * T * T  # KL(p^_t || p^_s) per example
return tckd, nckd''',
    check="kdlab.checks.check_dkd_terms(my_dkd_terms)",
    references=("kdlab.losses.decoupled_kd_terms", "kdlab.losses.dkd_loss"),
    tests=_dkd_terms_tests,
)

EXERCISES = (ATTENTION_MAP, DKD_TERMS)
