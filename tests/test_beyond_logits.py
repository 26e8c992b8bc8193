"""Notebook 11's losses and objectives: attention transfer, FitNets hints, relational KD and decoupled KD.

Each loss is compared, on random inputs, with an independent re-implementation of its authors'
reference code (Zagoruyko's attention-transfer, Park's RKD, Zhao's DKD as published in
mdistiller), re-derived here from their formulas, and with a few stored values. The objectives
are trained in the one loop, ``kdlab.train.fit``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import kdlab
from kdlab import losses, objectives
from kdlab.errors import ParameterError, ParameterTypeError


def _randn(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# --- reference formulas, as the authors' code computes them -------------------------------------

def ref_at(x, p=2):
    # Zagoruyko & Komodakis: q = x^p averaged over channels, flattened, L2-normalised per example.
    q = x.pow(p).mean(1).view(x.size(0), -1)
    return q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)


def ref_at_loss(students, teachers, p=2):
    return sum((ref_at(s, p) - ref_at(t, p)).pow(2).mean() for s, t in zip(students, teachers))


def ref_pdist(e, eps=1e-12):
    # Park et al.: |a|^2 + |b|^2 - 2ab, clamped, square root, zero diagonal.
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps).sqrt().clone()
    d[range(len(e)), range(len(e))] = 0
    return d


def ref_rkd(s, t, dw=25.0, aw=50.0):
    t_d = ref_pdist(t)
    t_d = t_d / t_d[t_d > 0].mean()
    s_d = ref_pdist(s)
    s_d = s_d / s_d[s_d > 0].mean()
    distance = F.smooth_l1_loss(s_d, t_d)
    td = F.normalize(t.unsqueeze(0) - t.unsqueeze(1), p=2, dim=2)
    sd = F.normalize(s.unsqueeze(0) - s.unsqueeze(1), p=2, dim=2)
    angle = F.smooth_l1_loss(torch.bmm(sd, sd.transpose(1, 2)).view(-1), torch.bmm(td, td.transpose(1, 2)).view(-1))
    return dw * distance + aw * angle


def ref_dkd(zs, zt, y, alpha, beta, T):
    # Zhao et al. (mdistiller): binary (target, rest) probabilities summed from the softmax; the
    # non-target softmax masks the target logit by subtracting 1000.
    gt = torch.zeros_like(zs).scatter_(1, y[:, None], 1).bool()
    ps, pt = F.softmax(zs / T, 1), F.softmax(zt / T, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1)
    tckd = F.kl_div(torch.log(bs), bt, reduction="sum") * T**2 / len(y)
    nckd = F.kl_div(F.log_softmax(zs / T - 1000.0 * gt, 1), F.softmax(zt / T - 1000.0 * gt, 1),
                    reduction="sum") * T**2 / len(y)
    return alpha * tckd + beta * nckd


# --- losses against the references ----------------------------------------------------------------

@pytest.mark.parametrize("shapes", [[(4, 3, 5, 5)], [(8, 16, 14, 14), (8, 32, 7, 7)], [(2, 1, 3, 4)]])
def test_attention_transfer_equals_the_reference_code(shapes):
    seed = sum(sum(s) for s in shapes)
    students = [_randn(*s, seed=seed + i) for i, s in enumerate(shapes)]
    teachers = [_randn(s[0], 2 * s[1], *s[2:], seed=seed + 50 + i, scale=3) for i, s in enumerate(shapes)]
    torch.testing.assert_close(losses.attention_transfer_loss(students, teachers), ref_at_loss(students, teachers))
    for s in students:
        torch.testing.assert_close(losses.attention_map(s), ref_at(s))


def test_attention_maps_for_other_p_on_relu_features():
    s = torch.relu(_randn(6, 4, 5, 5, seed=1))
    t = torch.relu(_randn(6, 8, 5, 5, seed=2))
    for p in (1.0, 3.0, 4.0):  # the paper's |x|^p is the code's x^p on non-negative features
        torch.testing.assert_close(losses.attention_transfer_loss([s], [t], p=p), ref_at_loss([s], [t], p=p))
    assert losses.attention_map(s).norm(dim=1).sub(1).abs().max() < 1e-5, "each map has unit length"


def test_attention_transfer_ignores_channels_and_scale_and_is_zero_for_one_map():
    s = torch.relu(_randn(3, 4, 6, 6, seed=3))
    assert float(losses.attention_transfer_loss(s, 7.0 * s.repeat(1, 3, 1, 1))) < 1e-10


@pytest.mark.parametrize("b, d_s, d_t, seed", [(2, 3, 5, 0), (16, 8, 32, 1), (33, 64, 16, 2)])
def test_rkd_equals_the_reference_code_value_and_gradient(b, d_s, d_t, seed):
    s = _randn(b, d_s, seed=seed).requires_grad_()
    t = _randn(b, d_t, seed=seed + 10, scale=4)
    mine = losses.rkd_loss(s, t)
    (g_mine,) = torch.autograd.grad(mine, s)
    s_ref = s.detach().clone().requires_grad_()
    ref = ref_rkd(s_ref, t)
    (g_ref,) = torch.autograd.grad(ref, s_ref)
    torch.testing.assert_close(mine, ref)
    torch.testing.assert_close(g_mine, g_ref, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(losses.rkd_loss(s, t, 1.0, 0.0) * 25.0 + losses.rkd_loss(s, t, 0.0, 1.0) * 50.0, mine)


def test_rkd_is_zero_for_a_scaled_copy_and_leaves_the_teacher_alone():
    s = _randn(10, 6, seed=4)
    assert float(losses.rkd_loss(s, 3.0 * s)) < 1e-6, "distances are normalised by their mean, angles are scale-free"
    t = _randn(10, 6, seed=5).requires_grad_()
    losses.rkd_loss(s.requires_grad_(), t).backward()
    assert t.grad is None and s.grad is not None


@pytest.mark.parametrize("b, k, T, alpha, beta, seed", [(8, 10, 4.0, 1.0, 8.0, 0), (32, 100, 1.0, 0.5, 2.0, 1),
                                                       (5, 2, 10.0, 1.0, 0.5, 2), (64, 10, 0.5, 2.0, 1.0, 3)])
def test_dkd_equals_the_reference_code_value_and_gradient(b, k, T, alpha, beta, seed):
    zs = _randn(b, k, seed=seed, scale=3).requires_grad_()
    zt = _randn(b, k, seed=seed + 10, scale=5)
    y = torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(seed))
    mine = losses.dkd_loss(zs, zt, y, alpha, beta, T)
    (g_mine,) = torch.autograd.grad(mine, zs)
    zs_ref = zs.detach().clone().requires_grad_()
    ref = ref_dkd(zs_ref, zt, y, alpha, beta, T)
    (g_ref,) = torch.autograd.grad(ref, zs_ref)
    torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_mine, g_ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("b, k, T, seed", [(8, 10, 4.0, 0), (32, 100, 1.0, 1), (5, 2, 10.0, 2), (16, 10, 0.5, 3)])
def test_tckd_plus_weighted_nckd_is_classic_kd_for_every_example(b, k, T, seed):
    zs, zt = _randn(b, k, seed=seed, scale=3), _randn(b, k, seed=seed + 10, scale=5)
    y = torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(seed))
    tckd, nckd = losses.decoupled_kd_terms(zs, zt, y, T)
    p_target = F.softmax(zt / T, 1).gather(1, y[:, None]).squeeze(1)
    per_example = T**2 * (F.softmax(zt / T, 1) * (F.log_softmax(zt / T, 1) - F.log_softmax(zs / T, 1))).sum(1)
    torch.testing.assert_close(tckd + (1 - p_target) * nckd, per_example, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close((tckd + (1 - p_target) * nckd).mean(), losses.kd_loss(zs, zt, T), rtol=1e-4, atol=1e-5)
    # With alpha = beta = 1 DKD is NOT KD: it drops the teacher's (1 - p_target) weight on NCKD.
    assert float(losses.dkd_loss(zs, zt, y, 1.0, 1.0, T)) >= float(losses.kd_loss(zs, zt, T)) - 1e-5


def test_dkd_stays_finite_for_a_very_confident_teacher():
    zs = _randn(4, 10, seed=7)
    zt = torch.zeros(4, 10)
    zt[:, 3] = 500.0  # p_target = 1 in float32: the reference takes log(1 - 1) of the student
    value = losses.dkd_loss(zs, zt, torch.full((4,), 3), temperature=1.0)
    assert math.isfinite(float(value))


def test_hint_loss_is_the_mean_squared_error_and_detaches_the_teacher():
    s = _randn(4, 8, 3, 3, seed=8).requires_grad_()
    t = _randn(4, 8, 3, 3, seed=9).requires_grad_()
    value = losses.hint_loss(s, t)
    torch.testing.assert_close(value, ((s - t) ** 2).sum() / s.numel())
    value.backward()
    assert t.grad is None and s.grad is not None


# Values computed once with the inputs below (seeded) and stored, so a change of formula shows.
STORED = {"at": 0.0507005, "rkd": 3.761858, "dkd": 53.09877, "tckd": 0.6423081, "nckd": 6.557058}


def test_stored_values():
    students = [_randn(4, 3, 6, 6, seed=100), _randn(4, 5, 3, 3, seed=101)]
    teachers = [_randn(4, 6, 6, 6, seed=102), _randn(4, 10, 3, 3, seed=103)]
    assert float(losses.attention_transfer_loss(students, teachers)) == pytest.approx(STORED["at"], rel=1e-5)
    assert float(losses.rkd_loss(_randn(12, 7, seed=104), _randn(12, 9, seed=105))) == \
        pytest.approx(STORED["rkd"], rel=1e-5)
    zs, zt = _randn(6, 10, seed=106, scale=3), _randn(6, 10, seed=107, scale=3)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    assert float(losses.dkd_loss(zs, zt, y)) == pytest.approx(STORED["dkd"], rel=1e-5)
    tckd, nckd = losses.decoupled_kd_terms(zs, zt, y, 4.0)
    assert (float(tckd.mean()), float(nckd.mean())) == pytest.approx((STORED["tckd"], STORED["nckd"]), rel=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: losses.attention_transfer_loss([torch.zeros(2, 3, 4, 4)], [torch.zeros(2, 3, 5, 5)]), "spatial size"),
    (lambda: losses.attention_transfer_loss([torch.zeros(2, 3, 4, 4)], []), "non-empty list"),
    (lambda: losses.attention_transfer_loss([torch.zeros(2, 3, 4, 4)] * 2, [torch.zeros(2, 3, 4, 4)]),
     "one teacher map per student map"),
    (lambda: losses.attention_map(torch.zeros(2, 16)), r"features\[0\] is \(2, 16\)"),
    (lambda: losses.attention_map(torch.zeros(2, 3, 4, 4), p=0), "p=0"),
    (lambda: losses.hint_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 6, 4, 4)), "regressor must map"),
    (lambda: losses.rkd_loss(torch.zeros(1, 4), torch.zeros(1, 4)), "at least 2"),
    (lambda: losses.rkd_loss(torch.zeros(3, 4), torch.zeros(4, 4)), "same batch"),
    (lambda: losses.rkd_loss(torch.zeros(3), torch.zeros(3)), "expected embeddings"),
    (lambda: losses.rkd_loss(torch.randn(3, 4), torch.randn(3, 4), distance_weight=-1), "distance_weight=-1"),
    (lambda: losses.dkd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3])), "outside the 3 classes"),
    (lambda: losses.dkd_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([0, 1])), "must match"),
    (lambda: losses.dkd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), beta=-1.0), "beta=-1.0"),
    (lambda: losses.dkd_loss(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.long)),
     r"\(batch, classes\) logits"),
])
def test_bad_inputs_are_named(call, match):
    with pytest.raises((ParameterError, ParameterTypeError), match=match):
        call()


# --- the models name their feature layers ----------------------------------------------------------

def test_cnn_and_resnet_expose_stages_and_an_embedding():
    cnn = kdlab.models.create("cnn", num_classes=10, input_shape=(1, 28, 28), channels=(4, 8), fc=16, seed=0).eval()
    logits, feats = objectives.capture(cnn, cnn.stages + [cnn.embedding_layer], torch.zeros(2, 1, 28, 28))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 14, 14), (2, 8, 7, 7), (2, 16)] and logits.shape == (2, 10)
    net = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), depth=14, width=4, seed=0).eval()
    _, feats = objectives.capture(net, net.stages + [net.embedding_layer], torch.zeros(2, 3, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8), (2, 16)]
    mlp = kdlab.models.create("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=(8,))
    with pytest.raises(ParameterTypeError, match="student MLP does not name its feature layers"):
        objectives.AttentionTransfer(cnn, mlp)


# --- the objectives in the one loop ----------------------------------------------------------------

def _cnn(ds, channels, fc, seed):
    return kdlab.models.create("cnn", num_classes=ds.num_classes, input_shape=ds.input_shape, channels=channels,
                               fc=fc, seed=seed)


@pytest.fixture(scope="module")
def cnn_teacher(digits):
    teacher = _cnn(digits, (8, 16), 32, 0)
    kdlab.train.fit(teacher, digits, epochs=4, lr=1e-2, progress=False, device="cpu")  # about 95% on validation
    return teacher.eval()


MAKERS = {
    "hint": lambda t, m: objectives.HintDistillation(t, m, seed=0),
    "at": lambda t, m: objectives.AttentionTransfer(t, m),
    "rkd": lambda t, m: objectives.RelationalDistillation(t, m),
    "dkd": lambda t, m: objectives.DecoupledDistillation(t, warmup_epochs=1.0),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_each_objective_trains_a_student_in_fit(digits, cnn_teacher, name):
    student = _cnn(digits, (8, 16), 32, 1)
    before = [p.detach().clone() for p in student.parameters()]
    objective = MAKERS[name](cnn_teacher, student)
    history = kdlab.train.fit(student, digits, objective=objective, epochs=3, lr=1e-2, progress=False, device="cpu")
    record = history.last
    assert math.isfinite(record["train_loss"]) and record["val_acc"] > 0.35  # chance: 0.1
    assert {"ce", {"hint": "hint", "at": "at", "rkd": "rkd", "dkd": "tckd"}[name]} <= set(record)
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, student.parameters()))
    assert history.config["objective"] == type(objective).__name__
    assert not any(m.training for m in cnn_teacher.modules()), "the teacher stays in eval mode"


def test_the_feature_term_shrinks_when_it_is_trained(digits, cnn_teacher):
    # The same student and batches, with and without the AT term: training on it lowers it.
    def at_after(weight):
        student = _cnn(digits, (4, 8), 16, 2)
        objective = objectives.AttentionTransfer(cnn_teacher, student, weight=weight)
        return kdlab.train.fit(student, digits, objective=objective, epochs=3, progress=False, device="cpu").last["at"]
    assert at_after(1000.0) < 0.5 * at_after(0.0)


def test_the_regressor_is_optimised_with_the_student(digits, cnn_teacher):
    student = _cnn(digits, (4, 8), 16, 3)
    objective = objectives.HintDistillation(cnn_teacher, student, seed=0)
    assert objective.regressor[0].weight.shape == (8, 4, 3, 3)  # student stage 0: 4 channels -> teacher's 8
    assert [p.shape for p in objective.learnable_parameters()] == [p.shape for p in objective.regressor.parameters()]
    before = objective.regressor[0].weight.detach().clone()
    first = kdlab.train.fit(student, digits, objective=objective, epochs=3, progress=False, device="cpu")
    assert not torch.equal(before, objective.regressor[0].weight.detach())
    assert first.records[-1]["hint"] < first.records[0]["hint"]
    opt = kdlab.train.make_optimizer("adamw", student, lr=1e-3, weight_decay=0.0,
                                     extra=[*objective.learnable_parameters(), *student.parameters()])
    n_student = len(list(student.parameters()))
    assert len(opt.param_groups[0]["params"]) == n_student + len(objective.learnable_parameters())  # no duplicates
    other = objectives.HintDistillation(cnn_teacher, _cnn(digits, (4, 8), 16, 3), seed=0)
    torch.testing.assert_close(other.regressor[0].weight, before)  # the regressor's start depends on seed only


def test_cached_and_online_teacher_features_agree(digits, cnn_teacher):
    def train(cache):
        student = _cnn(digits, (4, 8), 16, 4)
        objective = objectives.AttentionTransfer(cnn_teacher, student, cache=cache)
        kdlab.train.fit(student, digits, objective=objective, epochs=1, progress=False, device="cpu")
        return objective.teacher.mode, [p.detach() for p in student.parameters()]

    (mode_c, cached), (mode_o, online) = train(None), train(False)
    assert (mode_c, mode_o) == ("cached", "online")
    for a, b in zip(cached, online):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_student_features_are_recorded_in_training_steps_only(digits, cnn_teacher):
    student = _cnn(digits, (4, 8), 16, 5)
    objective = objectives.AttentionTransfer(cnn_teacher, student)
    x = digits.train.inputs()[:4]
    student.eval()
    with torch.no_grad():
        student(x)  # a validation pass: nothing recorded
    with pytest.raises(ParameterError, match="not recorded"):
        objective.student_features.take()
    student.train()
    student(x)
    assert [tuple(f.shape) for f in objective.student_features.take()] == [(4, 4, 4, 4), (4, 8, 2, 2)]
    hooks = len(student.stages[0]._forward_hooks)
    del objective
    assert len(student.stages[0]._forward_hooks) == hooks - 1, "the hooks go with the objective"


def test_an_objective_built_for_another_model_says_so(digits, cnn_teacher):
    objective = objectives.RelationalDistillation(cnn_teacher, _cnn(digits, (4, 8), 16, 6))
    with pytest.raises(ParameterError, match="built with the model being trained"):
        kdlab.train.fit(_cnn(digits, (4, 8), 16, 7), digits, objective=objective, epochs=1, progress=False,
                        device="cpu")


def test_feature_objectives_check_their_arguments(digits, cnn_teacher):
    student = _cnn(digits, (4, 8), 16, 8)
    with pytest.raises(ParameterError, match="same object"):
        objectives.AttentionTransfer(student, student)
    with pytest.raises(ParameterError, match="stages=\\[5\\]"):
        objectives.AttentionTransfer(cnn_teacher, student, stages=[5])
    with pytest.raises(ParameterError, match="weight=-1"):
        objectives.RelationalDistillation(cnn_teacher, student, weight=-1)
    deeper = _cnn(digits, (4, 8, 8), 16, 9) if min(digits.input_shape[1:]) >= 8 else None
    if deeper is not None:
        with pytest.raises(ParameterError, match="3 feature stages and the teacher 2"):
            objectives.AttentionTransfer(cnn_teacher, deeper)
    with pytest.raises(ParameterError, match="augment=False"):
        objective = objectives.AttentionTransfer(cnn_teacher, student, cache=True)
        kdlab.train.fit(student, digits, objective=objective, epochs=1, augment=True, progress=False, device="cpu")


def test_feature_objectives_work_on_resnets():
    # CIFAR-shaped random images: a ResNet-14 teacher and a thinner ResNet-8 student.
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.arange(64) % 10
    split = kdlab.data.Split(x, y, torch.full((3,), 0.5), torch.full((3,), 0.25))
    teacher = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), depth=14, width=8, seed=0).eval()
    for make in (lambda m: objectives.AttentionTransfer(teacher, m), lambda m: objectives.HintDistillation(teacher, m),
                 lambda m: objectives.RelationalDistillation(teacher, m)):
        student = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), depth=8, width=4, seed=1)
        history = kdlab.train.fit(student, split, objective=make(student), epochs=1, batch_size=32, progress=False,
                                  device="cpu")
        assert math.isfinite(history.last["train_loss"])


def test_the_dkd_objective_does_not_check_the_labels_every_step(monkeypatch):
    # The label check reads the labels back from the device (two syncs on CUDA); fit checked them once.
    x = torch.randint(0, 256, (8, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    split = kdlab.data.Split(x, torch.arange(8) % 3, torch.full((1,), 0.5), torch.full((1,), 0.25))
    teacher = kdlab.models.create("mlp", num_classes=3, input_shape=(1, 4, 4), hidden=(8,), seed=0).eval()
    objective = objectives.DecoupledDistillation(teacher)
    objective.prepare(split, augment=False, epochs=1, device=torch.device("cpu"), amp=False, num_classes=3)
    batch = next(split.batches(8))
    checked = []
    real = losses._validate_targets
    monkeypatch.setattr(losses, "_validate_targets", lambda *a: checked.append(1) or real(*a))
    loss, logs = objective(torch.randn(8, 3), batch)
    assert math.isfinite(float(loss)) and {"tckd", "nckd"} <= set(logs) and not checked
    losses.decoupled_kd_terms(torch.randn(8, 3), torch.randn(8, 3), batch.y)  # the function alone still checks
    assert checked == [1]
    with pytest.raises(ParameterError, match="outside the 3 classes"):
        losses.decoupled_kd_terms(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]))


def test_stage_indices_are_integers_from_0_to_n_minus_1(digits, cnn_teacher):
    student = _cnn(digits, (4, 8), 16, 10)
    for stages, match in (([True], r"stages=\[True\] must contain integers >= 0; True is not"),
                          ([-1], r"stages=\[-1\] must contain integers >= 0; -1 is not"),
                          ([0, 2], r"stages=\[0, 2\] must be a non-empty list of stage indices from 0 to 1"),
                          ([], r"stages=\[\] must be a non-empty list")):
        with pytest.raises(ParameterError, match=match):
            objectives.AttentionTransfer(cnn_teacher, student, stages=stages)
    with pytest.raises(ParameterError, match="stage=-1 is too small; accepted: an integer >= 0"):
        objectives.HintDistillation(cnn_teacher, student, stage=-1)
    assert objectives.AttentionTransfer(cnn_teacher, student, stages=[1]).describe()["stages"] == [1]


# --- notebook 11's helpers -----------------------------------------------------------------------

def test_architectures_accept_every_image_dataset_of_kdlab_data(monkeypatch):
    from kdlab import beyond

    for name in kdlab.data.NAMES:
        roles = beyond.architectures(name)
        assert roles["student"]["name"] == ("resnet" if name.startswith("cifar") else "cnn")
    monkeypatch.setattr(kdlab.data, "NAMES", (*kdlab.data.NAMES, "svhn"))  # one list of datasets, read here too
    assert beyond.architectures("svhn")["tiny"] == {"name": "cnn", "channels": (4, 8), "fc": 32}
    with pytest.raises(ParameterError, match="dataset='pydoc' is not one of the accepted values: 'digits'"):
        beyond.architectures("pydoc")


def _rows(values, metric):
    return [{"seed": s, "accuracy": 0.9, metric: v} for s, v in enumerate(values)]


def test_versus_judges_each_metric_by_its_direction_and_refuses_one_without():
    from kdlab import beyond

    a, b = _rows([0.95, 0.96, 0.97], "agreement"), _rows([0.90, 0.915, 0.92], "agreement")
    assert beyond.versus(a, b, ("KD", "scratch"), metric="agreement").outcome == "better"  # higher agreement
    a, b = _rows([0.30, 0.32, 0.31], "nll"), _rows([0.40, 0.41, 0.43], "nll")
    assert beyond.versus(a, b, ("KD", "scratch"), metric="nll").outcome == "better"  # lower NLL
    with pytest.raises(ParameterError, match="metric='entropy' has no better side to judge; accepted: accuracy"):
        beyond.versus(_rows([1, 2], "entropy"), _rows([1, 2], "entropy"), ("a", "b"), metric="entropy")
    with pytest.raises(ParameterError, match="metric='f1_macro' is not in every row; accepted: accuracy, nll"):
        beyond.versus(a, b, ("a", "b"), metric="f1_macro")
    with pytest.raises(ParameterTypeError, match="metric must be"):
        beyond.versus(a, b, ("a", "b"), metric=None)
