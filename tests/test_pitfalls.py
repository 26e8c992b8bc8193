"""kdlab.pitfalls: each deliberate mistake is wrong in the way its docstring says, and the
measurements notebook 10 makes with them (memory, gradient share, paired effects) are right."""

import copy

import pytest
import torch
import torch.nn.functional as F

import kdlab
from kdlab import pitfalls
from kdlab.checks import audit_kd_loss
from kdlab.checks.audit import BLOG_PROBLEMS
from kdlab.classroom import exercise
from kdlab.errors import ParameterTypeError
from kdlab.objectives import Distillation


@pytest.fixture(scope="module")
def bn_teacher(digits):
    """A small CNN with BatchNorm and dropout (like the kit's teacher), trained one epoch on digits."""
    model = kdlab.models.create("cnn", num_classes=10, input_shape=digits.input_shape, channels=(4, 8), fc=16, seed=2)
    kdlab.train.fit(model, digits, epochs=1, lr=3e-3, progress=False, device="cpu")
    return model.eval()


def _student(digits, seed=0):
    return kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=[16], seed=seed)


def _fit(digits, objective, model=None, epochs=1):
    model = model if model is not None else _student(digits)
    kdlab.train.fit(model, digits, objective=objective, epochs=epochs, seed=0, progress=False, device="cpu")
    return model


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("loss, codes", [
    (pitfalls.kl_wrong_direction, {"kl_direction", "not_finite"}),
    (pitfalls.kl_reduction_mean, {"reduction_mean"}),
    (pitfalls.kl_without_t_squared, {"missing_t_squared"}),
    (pitfalls.kl_student_softened_only, {"one_sided_temperature"}),
    (pitfalls.kl_teacher_softened_only, {"one_sided_temperature"}),
    (pitfalls.blog_kd_loss, set(BLOG_PROBLEMS)),
])
def test_each_wrong_soft_loss_is_named_by_the_auditor(loss, codes):
    assert set(audit_kd_loss(loss, show=False).problems) == codes


def test_the_wrong_losses_differ_from_kd_loss_as_documented():
    gen = torch.Generator().manual_seed(0)
    s, t, T = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen) * 3, 4.0
    right = kdlab.losses.kd_loss(s, t, T)
    torch.testing.assert_close(pitfalls.kl_without_t_squared(s, t, T), right / T**2)
    with pytest.warns(UserWarning, match="reduction: 'mean'"):  # PyTorch warns about this one
        torch.testing.assert_close(pitfalls.kl_reduction_mean(s, t, T), right / 10)
    torch.testing.assert_close(pitfalls.kl_wrong_direction(s, t, T), kdlab.losses.kd_loss(t, s, T))


def test_with_softmax_outputs_probabilities_with_the_same_argmax(digits, mlp_teacher):
    x = digits.test.inputs()[:20]
    wrapped = pitfalls.with_softmax(mlp_teacher)
    probs, logits = wrapped(x), mlp_teacher(x)
    assert torch.all(probs >= 0) and torch.allclose(probs.sum(1), torch.ones(20))
    assert torch.equal(probs.argmax(1), logits.argmax(1))
    with pytest.raises(ParameterTypeError, match="model must be a torch.nn.Module, got str"):
        pitfalls.with_softmax("teacher")


def test_a_softmaxed_teacher_gives_nearly_uniform_soft_targets(digits, mlp_teacher):
    x = digits.train.inputs()[:64]
    with torch.no_grad():
        right = kdlab.losses.entropy(kdlab.losses.soft_targets(mlp_teacher(x), 4.0)).mean()
        wrong = kdlab.losses.entropy(kdlab.losses.soft_targets(pitfalls.with_softmax(mlp_teacher)(x), 4.0)).mean()
    assert wrong > right and wrong > 0.99 * torch.log2(torch.tensor(10.0))


def test_the_online_objective_with_no_slip_equals_distillation_without_a_cache(digits, bn_teacher):
    ours = _fit(digits, pitfalls.OnlineTeacherDistillation(bn_teacher, 4.0, 0.9))
    kits = _fit(digits, Distillation(kdlab.teacher.Teacher(bn_teacher, cache=False), 4.0, 0.9))
    assert _same_weights(ours, kits)


def test_a_teacher_in_train_mode_changes_its_batchnorm_statistics_and_the_student(digits, bn_teacher):
    careless = copy.deepcopy(bn_teacher)
    before = copy.deepcopy(careless.state_dict())
    noisy = _fit(digits, pitfalls.OnlineTeacherDistillation(careless, 4.0, 0.9, teacher_train_mode=True))
    clean = _fit(digits, pitfalls.OnlineTeacherDistillation(bn_teacher, 4.0, 0.9))
    stats = [k for k in before if "running_mean" in k]
    assert stats and any(not torch.equal(before[k], careless.state_dict()[k]) for k in stats)
    assert careless.training and not bn_teacher.training
    assert not _same_weights(noisy, clean)


def test_a_teacher_without_no_grad_costs_but_changes_nothing_for_the_student(digits, bn_teacher):
    careful, careless = copy.deepcopy(bn_teacher), copy.deepcopy(bn_teacher)
    for p in [*careful.parameters(), *careless.parameters()]:
        p.grad = None  # forget the teacher's own training
    slow = _fit(digits, pitfalls.OnlineTeacherDistillation(careless, 4.0, 0.9, no_grad=False))
    fast = _fit(digits, pitfalls.OnlineTeacherDistillation(careful, 4.0, 0.9))
    assert _same_weights(slow, fast)
    assert all(p.grad is not None for p in careless.parameters())  # backward ran through the teacher
    assert all(p.grad is None for p in careful.parameters())


def test_the_online_objective_refuses_bad_arguments(bn_teacher):
    with pytest.raises(ParameterTypeError, match="teacher must be a torch.nn.Module"):
        pitfalls.OnlineTeacherDistillation("teacher")
    with pytest.raises(ParameterTypeError, match="no_grad must be True or False, got 0"):
        pitfalls.OnlineTeacherDistillation(bn_teacher, no_grad=0)
    with pytest.raises(ValueError, match="temperature"):
        pitfalls.OnlineTeacherDistillation(bn_teacher, temperature=-1.0)


def test_autograd_bytes_counts_activations_only_without_no_grad(digits, bn_teacher):
    x = digits.train.inputs()[:32]
    assert pitfalls.autograd_bytes(bn_teacher, x, no_grad=True) == 0
    small, large = (pitfalls.autograd_bytes(bn_teacher, x[:n], no_grad=False) for n in (8, 32))
    assert 0 < small < large
    first_conv = 8 * 4 * 8 * 8 * 4  # the first conv's output alone, in bytes, for 8 images: (8, 4, 8, 8) float32
    assert small > first_conv


def test_time_teacher_pass_times_both_ways_alternately_and_leaves_the_teacher_alone(digits, bn_teacher):
    x = digits.train.inputs()[:16]
    was_training = bn_teacher.training
    grads_before = [p.grad for p in bn_teacher.parameters()]
    times = pitfalls.time_teacher_pass(bn_teacher, x, repeats=3)  # what is timed, not how long: no timed assertion
    assert set(times) == {"no_grad", "without"} and all(len(v) == 3 and min(v) > 0 for v in times.values())
    assert bn_teacher.training == was_training
    assert all(p.grad is g for p, g in zip(bn_teacher.parameters(), grads_before))  # the backward ran on a copy
    with pytest.raises(ValueError, match="repeats"):
        pitfalls.time_teacher_pass(bn_teacher, x, repeats=0)


def test_without_t_squared_the_soft_share_falls_with_t(digits, mlp_teacher):
    x, y = digits.train.inputs()[:64], digits.train.y[:64]
    with torch.no_grad():
        z_t = mlp_teacher(x)
    z_s = _student(digits)(x).detach()
    share = {(T, name): pitfalls.soft_gradient_share(z_s, z_t, y, T, 0.9, loss) for T in (1.0, 20.0)
             for name, loss in (("right", kdlab.losses.kd_loss), ("no T²", pitfalls.kl_without_t_squared))}
    assert share[1.0, "right"] == pytest.approx(share[1.0, "no T²"])  # T² = 1 at T = 1
    assert share[20.0, "no T²"] < share[20.0, "right"] / 10
    assert 0.0 < share[20.0, "no T²"] < share[1.0, "no T²"] < 1.0
    assert pitfalls.soft_gradient_share(z_s, z_t, y, 4.0, 0.0) == 0.0  # alpha = 0: no soft term at all


def test_logits_in_train_mode_leave_the_teacher_alone(digits, bn_teacher):
    before = copy.deepcopy(bn_teacher.state_dict())
    noisy = pitfalls.logits_in_train_mode(bn_teacher, digits.test, batch_size=64, seed=1)
    again = pitfalls.logits_in_train_mode(bn_teacher, digits.test, batch_size=64, seed=1)
    clean = kdlab.inference.predict_logits(bn_teacher, digits.test)
    assert noisy.shape == clean.shape and torch.equal(noisy, again)
    assert not torch.allclose(noisy, clean, atol=1e-3)
    assert all(torch.equal(v, bn_teacher.state_dict()[k]) for k, v in before.items()) and not bn_teacher.training


def test_paired_effects_pair_by_seed_and_mark_what_is_measurable():
    reference = [{"seed": s, "accuracy": a, "nll": 0.3} for s, a in ((0, 0.90), (1, 0.92), (2, 0.91))]
    rows = [{"seed": s, "accuracy": a, "nll": n} for s, a, n in ((2, 0.88, 0.5), (0, 0.87, 0.2), (1, 0.89, 0.35))]
    effects = pitfalls.paired_effects(rows, reference, names=("broken", "correct"))
    mean, half = kdlab.metrics.paired_ci([87, 89, 88], [90, 92, 91])
    assert effects["accuracy_pp"]["mean"] == pytest.approx(mean) and mean == pytest.approx(-3.0)
    assert effects["accuracy_pp"]["ci95"] == pytest.approx(half)
    assert set(effects) == {"accuracy_pp", "nll"}  # ece and kl_to_teacher are not in the rows
    assert pitfalls.measurable(effects["accuracy_pp"]) and effects["accuracy_pp"]["outcome"] == "worse"
    assert not pitfalls.measurable(effects["nll"])  # +0.2, -0.1, +0.05: the interval includes 0
    assert pitfalls.costly(effects) and not pitfalls.costly(effects, keys=("nll",))
    text = pitfalls.format_effects(effects)
    assert "accuracy -3.00 ± 0.00 pp (broken is lower than correct (worse))" in text
    assert "(broken and correct tie)" in text
    with pytest.raises(ValueError, match="share no seed"):
        pitfalls.paired_effects(rows, [{"seed": 9, "accuracy": 0.9}])


def test_paired_effects_judge_each_metric_by_the_kits_one_rule():
    reference = [{"seed": s, "error_count": 40 + s, "train_seconds": 2.0 + s, "entropy": 1.0} for s in range(3)]
    rows = [{"seed": s, "error_count": 30 + s, "train_seconds": 3.0 + s, "entropy": 1.5} for s in range(3)]
    effects = pitfalls.paired_effects(rows, reference, keys=("error_count", "train_seconds", "entropy"))
    assert effects["error_count"]["outcome"] == "better"  # fewer errors
    assert effects["train_seconds"]["outcome"] == "worse"  # slower
    assert effects["entropy"]["outcome"] == "higher" and "(better)" not in effects["entropy"]["phrase"]  # no side


# --- notebook 10's exercise --------------------------------------------------------------------

def _graded(source: str):
    namespace = {"torch": torch, "F": F, "kdlab": kdlab}
    exec(compile(source, "<answer cell>", "exec"), namespace)  # noqa: S102 - the test's own code
    return exercise("fix_kd_loss").grade(namespace, source=source)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
def test_the_exercise_accepts_the_fix_and_names_what_is_left(capsys):
    ex = exercise("fix_kd_loss")
    assert ex.notebook == "10_pitfalls" and _graded(ex.solved_source()).points == ex.points
    blog = ("def my_fixed_kd_loss(student_logits, teacher_logits, T):\n"
            "    return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits, dim=1), "
            "reduction='mean')")
    grade = _graded(blog)
    assert grade.points == 0 and "0 of the 3 problems of blog_kd_loss fixed" in grade.feedback
    partly = blog.replace("reduction='mean')", "reduction='batchmean') * T * T")
    grade = _graded(partly)
    assert grade.points == 0 and "2 of the 3" in grade.feedback and "one_sided_temperature" in grade.feedback
    kdlab.checks.check_fixed_kd_loss(None)
    assert "Not done yet" in capsys.readouterr().out
