"""Adversarial distillation (notebook 06): discriminator, objective inside fit(), diagnose(), checks."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kdlab
from kdlab import adversarial
from kdlab.adversarial import AdversarialDistillation, Discriminator, diagnose
from kdlab.errors import ParameterError, ParameterTypeError

from .fixtures import prepared

STAND_IN = nn.Linear(4, 10)  # a teacher for objectives whose teacher never runs


@pytest.fixture(scope="module")
def teacher(digits):
    model = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(64,), seed=1)
    kdlab.train.fit(model, digits, epochs=3, lr=3e-3, device="cpu", progress=False)
    return model


def _student(ds, seed=0):
    return kdlab.models.create("mlp", num_classes=ds.num_classes, input_shape=ds.input_shape, hidden=(16,), seed=seed)


# --- the discriminator ---------------------------------------------------------------------

@pytest.mark.parametrize("condition, extra", [("none", 0), ("label", 10), ("input", 3 * 16), ("label+input", 10 + 48)])
def test_discriminator_shapes_for_every_condition(condition, extra):
    d = Discriminator(10, hidden=(32, 16), condition=condition, input_shape=(3, 32, 32), input_pool=4)
    assert d.in_features == 10 + extra
    probs = torch.randn(5, 10).softmax(1)
    scores = d(probs, torch.arange(5), torch.randn(5, 3, 32, 32))
    assert scores.shape == (5,)
    assert torch.isfinite(scores).all()


def test_conditioned_input_concatenates_distribution_label_and_features():
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    x = adversarial.conditioned_input(probs, torch.tensor([2]), 3, torch.tensor([[5.0, 6.0]]))
    assert torch.equal(x, torch.tensor([[0.7, 0.2, 0.1, 0.0, 0.0, 1.0, 5.0, 6.0]]))
    assert adversarial.conditioned_input(probs, None, 3).shape == (1, 3)


def test_discriminator_init_is_seeded_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a, b, c = Discriminator(10, seed=3), Discriminator(10, seed=3), Discriminator(10, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


@pytest.mark.parametrize("loss", adversarial.LOSSES)
def test_discriminator_learns_to_separate_clearly_different_distributions(loss):
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (64,), generator=gen)
    teacher_logits = 8.0 * F.one_hot(y, 10).float()  # confident and right
    student_logits = torch.randn(64, 10, generator=gen) * 0.1  # nearly uniform
    obj, batch = prepared(lambda t: AdversarialDistillation(t, 10, loss=loss, d_lr=1e-2, temperature=1.0, seed=0),
                          teacher_logits, y)
    first = obj.after_step(student_logits, batch)
    for _ in range(40):
        logs = obj.after_step(student_logits, batch)
    assert float(logs["d_acc_real"]) == 1.0 and float(logs["d_acc_fake"]) == 1.0, (loss, logs)
    assert float(logs["d_loss"]) < float(first["d_loss"])


def test_score_functions_by_hand():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([-3.0, 0.0])
    expected = -(F.logsigmoid(real).mean() + F.logsigmoid(-fake).mean())
    torch.testing.assert_close(adversarial.discriminator_loss(real, fake, "bce"), expected)
    torch.testing.assert_close(adversarial.generator_loss(fake, "bce"), -F.logsigmoid(fake).mean())
    torch.testing.assert_close(adversarial.discriminator_loss(real, fake, "lsgan"),
                               0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean())
    torch.testing.assert_close(adversarial.discriminator_loss(real, fake, "hinge"), torch.tensor((0 + 2) / 2 + (0 + 1) / 2.0))  # relu(1 - real) + relu(1 + fake)
    acc_real, acc_fake = adversarial.discriminator_accuracy(real, fake, "bce")
    assert (float(acc_real), float(acc_fake)) == (0.5, 1.0)  # a score of exactly 0 counts as fake
    acc_real, _ = adversarial.discriminator_accuracy(torch.tensor([0.6, 0.4]), fake, "lsgan")
    assert float(acc_real) == 0.5  # lsgan decides at 0.5


# --- the objective ---------------------------------------------------------------------------

def test_student_loss_leaves_the_discriminator_gradients_alone_and_combines_terms():
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(8, 10, generator=gen, requires_grad=True)
    t, y = torch.randn(8, 10, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    obj, batch = prepared(lambda teacher: AdversarialDistillation(teacher, 10, adv_weight=0.5, kd_weight=0.9,
                                                                  ce_weight=0.1), t, y)
    loss, logs = obj(s, batch)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert all(p.grad is None for p in obj.discriminator.parameters())
    assert all(p.requires_grad for p in obj.discriminator.parameters())  # restored after forward
    expected = 0.5 * logs["g_loss"] + 0.9 * kdlab.losses.kd_loss(s, t, 4.0) + 0.1 * F.cross_entropy(s, y)
    torch.testing.assert_close(loss.detach(), expected.detach())
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())

    alone, batch = prepared(lambda teacher: AdversarialDistillation(teacher, 10, kd_weight=0.0), t, y)
    loss, logs = alone(s, batch)  # adversarial alone: nothing but L_G
    torch.testing.assert_close(loss.detach(), logs["g_loss"])


def test_objective_trains_inside_fit_and_the_student_keeps_its_size(digits, teacher):
    small = dataclasses.replace(digits, train=digits.train.subset(range(200)))  # a tiny split
    student = _student(small)
    n_before = kdlab.models.count_params(student)
    obj = AdversarialDistillation(teacher, 10, kd_weight=0.5, condition="label+input",
                                  input_shape=small.input_shape, input_pool=4, d_hidden=(16,))
    d_before = [p.detach().clone() for p in obj.discriminator.parameters()]
    history = kdlab.train.fit(student, small, objective=obj, epochs=1, batch_size=64, device="cpu", progress=False)
    rec = history.records[0]
    for key in ("d_loss", "g_loss", "d_acc_real", "d_acc_fake", "d_acc", "kd", "ce"):
        assert key in rec and math.isfinite(rec[key]), key
    assert 0.0 <= rec["d_acc_real"] <= 1.0 and 0.0 <= rec["d_acc_fake"] <= 1.0
    assert history.config["objective"] == "AdversarialDistillation" and history.config["loss"] == "bce"
    assert history.config["teacher_logits"] == "cached"
    assert kdlab.models.count_params(student) == n_before  # the discriminator is not part of the student
    assert not any("discriminator" in name for name, _ in student.named_parameters())
    assert obj._optimizer is not None  # created lazily, after fit moved the objective
    assert any(not torch.equal(a, b) for a, b in zip(d_before, obj.discriminator.parameters()))


def test_the_objective_needs_its_own_teacher(digits, teacher):
    with pytest.raises(ParameterTypeError, match="teacher must be a torch.nn.Module"):
        AdversarialDistillation(None, 10)
    with pytest.raises(TypeError):
        AdversarialDistillation(10)  # the old signature: num_classes first, the teacher given to fit
    with pytest.raises(ParameterError, match="either teacher=.*or objective="):
        kdlab.train.fit(_student(digits), digits, teacher=teacher, objective=AdversarialDistillation(teacher, 10),
                        epochs=1, device="cpu", progress=False)


def test_forward_and_after_step_look_the_teacher_up_once_per_batch(digits, teacher):
    obj = AdversarialDistillation(kdlab.teacher.Teacher(teacher, cache=False), 10)
    runs = []
    hook = teacher.register_forward_hook(lambda module, inputs, output: runs.append(len(inputs[0])))
    try:
        kdlab.train.fit(_student(digits), digits, objective=obj, epochs=1, batch_size=256, augment=True,
                        device="cpu", progress=False)
    finally:
        hook.remove()
    assert obj.teacher.mode == "online"
    steps = math.ceil(len(digits.train) / 256)
    assert len([n for n in runs if n > 2]) == steps  # one teacher pass per batch (the 2-image shape probe aside)


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "wgan-gp"}, "loss"),
    ({"d_lr": -1.0}, "d_lr"),
    ({"d_lr": 5.0}, "d_lr"),
    ({"d_hidden": (0,)}, "hidden"),
    ({"condition": "image"}, "condition"),
    ({"condition": "input"}, "input_shape"),
    ({"adv_weight": 0.0}, "all 0"),
    ({"kd_weight": -0.1}, "kd_weight"),
    ({"d_steps": 0}, "d_steps"),
    ({"temperature": 0.0}, "temperature"),
])
def test_bad_parameters_raise_clear_errors(kwargs, match):
    with pytest.raises((ParameterError, ParameterTypeError), match=match):
        AdversarialDistillation(STAND_IN, 10, **kwargs)


# --- diagnose ------------------------------------------------------------------------------------

def _history(d_acc, g, train_acc=0.9):
    return [{"epoch": i + 1, "train_loss": 1.0, "train_acc": train_acc, "g_loss": gi, "d_loss": 1.0,
             "d_acc_real": a, "d_acc_fake": a} for i, (a, gi) in enumerate(zip(d_acc, g))]


def test_diagnose_flags_synthetic_failures_and_passes_a_calm_run():
    calm = _history([0.55, 0.6, 0.58, 0.6, 0.57, 0.59], [0.7, 0.69, 0.7, 0.7, 0.69, 0.7])
    assert diagnose(calm).verdict == "balanced" and diagnose(calm).healthy
    won = _history([0.6, 0.8, 0.95, 0.98, 0.99, 1.0], [0.7, 0.9, 1.5, 2.5, 3.5, 4.5])
    result = diagnose(won)
    assert result.verdict == "discriminator won" and "rising" in result.reason and not result.healthy
    diverged = _history([0.6] * 4, [0.7, 0.8, float("nan"), 0.9])
    assert diagnose(diverged).verdict == "diverged"
    collapsed = _history([0.6] * 4, [0.7] * 4, train_acc=0.1)
    assert diagnose(collapsed).verdict == "collapsed"
    swung = _history([0.6, 0.97, 0.6, 0.6, 0.6, 0.6], [0.7, 300.0, 0.7, 0.7, 0.7, 0.7])
    assert diagnose(swung).verdict == "unstable"
    # thresholds are parameters: the same calm run "won" if the bar is low enough
    assert diagnose(calm, won_acc=0.5).verdict == "discriminator won"


def test_diagnose_reads_a_real_history_and_rejects_others(digits, teacher):
    obj = AdversarialDistillation(teacher, 10)
    history = kdlab.train.fit(_student(digits), digits, objective=obj, epochs=1, device="cpu", progress=False)
    assert diagnose(history).verdict in adversarial.VERDICTS
    assert diagnose(history.to_dict()).verdict == diagnose(history).verdict
    plain = kdlab.train.fit(_student(digits), digits, epochs=1, device="cpu", progress=False)
    with pytest.raises(ParameterError, match="AdversarialDistillation"):
        diagnose(plain)
    with pytest.raises(ParameterError, match="no epochs"):
        diagnose([])
    with pytest.raises(ParameterTypeError):
        diagnose(3)


# --- exercise checks ---------------------------------------------------------------------------------

def _bce(r, f):
    return F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + F.binary_cross_entropy_with_logits(
        f, torch.zeros_like(f))


def _not_done(*args):
    raise NotImplementedError


def test_check_discriminator_loss_feedback():
    assert kdlab.checks.check_discriminator_loss(_bce)
    fb = kdlab.checks.check_discriminator_loss(lambda r, f: _bce(f, r))
    assert not fb and "swapped" in fb.message
    fb = kdlab.checks.check_discriminator_loss(lambda r, f: _bce(r, f) / 2)
    assert not fb and "averaged" in fb.message
    fb = kdlab.checks.check_discriminator_loss(
        lambda r, f: -(torch.log(torch.sigmoid(r)).mean() + torch.log(1 - torch.sigmoid(f)).mean()))
    assert not fb and "±40" in fb.message
    fb = kdlab.checks.check_discriminator_loss(_not_done)
    assert not fb and not fb.done
    assert not kdlab.checks.check_discriminator_loss(None).done


def test_check_discriminator_accuracy_feedback():
    assert kdlab.checks.check_discriminator_accuracy(lambda r, f: ((r > 0).float().mean(), (f <= 0).float().mean()))
    fb = kdlab.checks.check_discriminator_accuracy(lambda r, f: ((f <= 0).float().mean(), (r > 0).float().mean()))
    assert not fb and "order" in fb.message
    fb = kdlab.checks.check_discriminator_accuracy(lambda r, f: ((r > 0).float().sum(), (f <= 0).float().sum()))
    assert not fb and "counts" in fb.message
    fb = kdlab.checks.check_discriminator_accuracy(lambda r, f: ((r > 0.5).float().mean(), (f <= 0.5).float().mean()))
    assert not fb and "threshold" in fb.message
    assert not kdlab.checks.check_discriminator_accuracy(_not_done).done


def test_check_conditioned_input_feedback():
    assert kdlab.checks.check_conditioned_input(lambda p, t, k: torch.cat([p, F.one_hot(t, k).float()], 1))
    fb = kdlab.checks.check_conditioned_input(lambda p, t, k: torch.cat([p, t[:, None].float()], 1))
    assert not fb and "one-hot" in fb.message
    fb = kdlab.checks.check_conditioned_input(lambda p, t, k: torch.cat([F.one_hot(t, k).float(), p], 1))
    assert not fb and "order" in fb.message
    fb = kdlab.checks.check_conditioned_input(lambda p, t, k: torch.cat([p, F.one_hot(t, k).float()], 0))
    assert not fb and "dim 0" in fb.message
