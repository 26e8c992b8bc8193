"""Tests for kdlab.transplant (a narrower student copied from the teacher's most important units)
and the notebook 07 exercise checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import kdlab
from kdlab import transplant
from kdlab.errors import ParameterError, ParameterTypeError


def _cnn(seed=0, channels=(8, 16), fc=32, shape=(1, 8, 8)):
    model = kdlab.models.create("cnn", num_classes=10, input_shape=shape, channels=channels, fc=fc, seed=seed)
    # Non-trivial BatchNorm parameters and statistics, so a copy that forgets them shows.
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 2 - 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def _x(n=16, shape=(1, 8, 8), seed=1):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


# --- exact reproduction and shapes ---------------------------------------------------------

@pytest.mark.parametrize("method", ["bn", "l1", "random"])
def test_keep_one_reproduces_the_teachers_logits_exactly(method):
    teacher = _cnn()
    student = transplant.narrow_copy(teacher, 1.0, method=method)
    assert student is not teacher
    assert torch.equal(student(_x()), teacher(_x()))
    assert student.kdlab_spec == teacher.kdlab_spec


def test_keep_one_reproduces_an_mlp_teacher_exactly():
    teacher = kdlab.models.create("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=(20, 12), seed=3).eval()
    student = transplant.narrow_copy(teacher, 1.0)
    assert torch.equal(student(_x()), teacher(_x()))


def test_keep_half_has_half_the_widths_and_is_a_normal_kit_model(tmp_path):
    teacher = _cnn()
    student = transplant.narrow_copy(teacher, 0.5)
    assert isinstance(student, kdlab.models.CNN) and not student.training
    assert student.kdlab_spec["kwargs"]["channels"] == [4, 8] and student.kdlab_spec["kwargs"]["fc"] == 16
    convs = [m for m in student.modules() if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(4, 1, 3, 3), (4, 4, 3, 3), (8, 4, 3, 3), (8, 8, 3, 3)]
    assert tuple(student.head[1].weight.shape) == (16, 8 * 2 * 2)
    assert tuple(student.head[-1].weight.shape) == (10, 16)
    assert student(_x()).shape == (16, 10)
    # It round-trips through the kit's checkpoints like any model built with models.create.
    kdlab.checkpoint.save(student, tmp_path / "s.pt")
    loaded, _ = kdlab.checkpoint.load(tmp_path / "s.pt")
    assert torch.equal(loaded.eval()(_x()), student(_x()))


def test_narrow_copy_keeps_the_most_important_units_with_their_weights_and_bn_statistics():
    teacher = _cnn()
    student = transplant.narrow_copy(teacher, 0.5, method="bn")
    scores = transplant.importance(teacher, "bn")
    t_convs = [m for m in teacher.features if isinstance(m, nn.Conv2d)]
    t_bns = [m for m in teacher.features if isinstance(m, nn.BatchNorm2d)]
    s_convs = [m for m in student.features if isinstance(m, nn.Conv2d)]
    s_bns = [m for m in student.features if isinstance(m, nn.BatchNorm2d)]
    prev = torch.arange(1)
    for i in range(4):
        s = scores[f"conv{i}"]
        kept = torch.topk(s, len(s) // 2).indices.sort().values
        assert torch.equal(kept, transplant.top_units(s, len(s) // 2))
        assert s[kept].min() >= s[[j for j in range(len(s)) if j not in kept.tolist()]].max()
        assert torch.equal(s_convs[i].weight, t_convs[i].weight[kept][:, prev])
        for attr in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(s_bns[i], attr), getattr(t_bns[i], attr)[kept]), attr
        prev = kept
    # The dense layer keeps the flattened features of the kept channels (channel-major, 2x2 each).
    fc_kept = transplant.top_units(scores["fc"], 16)
    cols = (prev[:, None] * 4 + torch.arange(4)).flatten()
    assert torch.equal(student.head[1].weight, teacher.head[1].weight[fc_kept][:, cols])
    assert torch.equal(student.head[1].bias, teacher.head[1].bias[fc_kept])
    assert torch.equal(student.head[-1].weight, teacher.head[-1].weight[:, fc_kept])
    assert torch.equal(student.head[-1].bias, teacher.head[-1].bias)


def test_the_teacher_is_not_modified():
    teacher = _cnn()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    transplant.narrow_copy(teacher, 0.25)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_importance_methods_rank_as_documented():
    teacher = _cnn()
    bn = transplant.importance(teacher, "bn")
    l1 = transplant.importance(teacher, "l1")
    assert list(bn) == ["conv0", "conv1", "conv2", "conv3", "fc"]
    assert torch.equal(bn["conv0"], teacher.features[1].weight.detach().abs())
    assert torch.allclose(l1["conv0"], teacher.features[0].weight.detach().abs().sum((1, 2, 3)))
    assert torch.equal(bn["fc"], l1["fc"])  # no BatchNorm after the dense layer: L1 there
    r0, r1 = transplant.importance(teacher, "random", seed=0), transplant.importance(teacher, "random", seed=1)
    assert not torch.equal(r0["conv0"], r1["conv0"])
    assert torch.equal(r0["conv0"], transplant.importance(teacher, "random", seed=0)["conv0"])


def test_kept_fraction_counts_parameters():
    teacher = _cnn()
    student = transplant.narrow_copy(teacher, 0.5)
    frac = transplant.kept_fraction(student, teacher)
    assert frac == kdlab.models.count_params(student) / kdlab.models.count_params(teacher)
    assert 0.2 < frac < 0.35  # about keep² for the weight matrices
    assert transplant.kept_fraction(transplant.narrow_copy(teacher, 1.0), teacher) == 1.0


def test_tiny_keep_still_keeps_one_unit_per_layer():
    student = transplant.narrow_copy(_cnn(), 0.01)
    assert student.kdlab_spec["kwargs"]["channels"] == [1, 1] and student.kdlab_spec["kwargs"]["fc"] == 1
    assert student(_x()).shape == (16, 10)


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0, 0.0, -0.5, 1.01, 2, float("nan"), float("inf")])
def test_bad_keep_values_are_refused_with_the_accepted_range(keep):
    with pytest.raises(ParameterError, match=r"keep.*\(0\.0, 1\.0\]"):
        transplant.narrow_copy(_cnn(), keep)


@pytest.mark.parametrize("keep", ["0.5", None, True, [0.5]])
def test_keep_of_the_wrong_type_is_refused(keep):
    with pytest.raises(ParameterTypeError, match="keep must be a number"):
        transplant.narrow_copy(_cnn(), keep)


def test_bad_teacher_and_method_are_refused():
    with pytest.raises(ParameterTypeError, match="kit CNN or MLP"):
        transplant.narrow_copy(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), 0.5)
    with pytest.raises(ParameterTypeError, match="torch.nn.Module"):
        transplant.importance("teacher")
    resnet = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 8, 8), depth=8)
    with pytest.raises(ParameterTypeError, match="ResNet"):
        transplant.narrow_copy(resnet, 0.5)
    with pytest.raises(ParameterError, match="method='gamma'.*'bn'"):
        transplant.importance(_cnn(), "gamma")
    with pytest.raises(ParameterError, match="more than the 3 units"):
        transplant.top_units(torch.ones(3), 4)


# --- BatchNorm recalibration -------------------------------------------------------------

def test_recalibrate_bn_sets_the_statistics_of_the_data_and_keeps_the_weights():
    ds = kdlab.data.load("digits", seed=0)
    model = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, channels=(4, 8), fc=16, seed=0)
    weights = {n: p.clone() for n, p in model.named_parameters()}
    transplant.recalibrate_bn(model, ds.train, batch_size=len(ds.train))
    assert not model.training
    assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())
    bn0 = model.features[1]
    with torch.no_grad():
        pre = model.features[0](ds.train.inputs(torch.arange(len(ds.train))))
    torch.testing.assert_close(bn0.running_mean, pre.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bn0.running_var, pre.var((0, 2, 3), unbiased=True), atol=1e-5, rtol=1e-4)
    assert bn0.momentum == 0.1  # restored
    with pytest.raises(ParameterTypeError, match="Split"):
        transplant.recalibrate_bn(model, ds)


TEACHER = Path(__file__).resolve().parents[1] / "checkpoints" / "teacher_mnist-5k.pt"


@pytest.mark.skipif(not TEACHER.exists(), reason="needs the kit's mnist-5k teacher checkpoint (notebook 01)")
def test_narrow_student_of_the_kit_teacher_beats_chance_by_far_at_init():
    ds = kdlab.data.load("mnist-5k", seed=0)
    teacher, _ = kdlab.checkpoint.load(TEACHER)
    teacher.to("cpu").eval()
    student = transplant.narrow_copy(teacher, 0.5)
    acc = kdlab.metrics.evaluate(student, ds.test, device="cpu")["accuracy"]
    recalibrated = kdlab.metrics.evaluate(transplant.recalibrate_bn(student, ds.train.subset(torch.arange(1024))),
                                          ds.test, device="cpu")["accuracy"]
    assert acc > 0.4 and recalibrated > 0.4, (acc, recalibrated)  # chance is 0.1; no training at all


# --- the exercise checks -----------------------------------------------------------------

def _not_implemented(*args):
    raise NotImplementedError


def test_check_filter_l1_feedback(capsys):
    assert kdlab.checks.check_filter_l1(lambda w: w.abs().sum((1, 2, 3)))
    assert not kdlab.checks.check_filter_l1(None).done
    assert not kdlab.checks.check_filter_l1(_not_implemented).done
    cases = {"INPUT channels": lambda w: w.abs().sum((0, 2, 3)), "take abs()": lambda w: w.sum((1, 2, 3)),
             "L2 norm": lambda w: w.flatten(1).norm(dim=1), "averaged": lambda w: w.abs().mean((1, 2, 3)),
             "one number": lambda w: w.abs().sum()}
    for hint, answer in cases.items():
        fb = kdlab.checks.check_filter_l1(answer)
        assert not fb and fb.done and hint in fb.message, (hint, fb.message)


def test_check_slice_conv_feedback():
    assert kdlab.checks.check_slice_conv(lambda w, o, i: w[o][:, i])
    assert kdlab.checks.check_slice_conv(lambda w, o, i: w.index_select(0, o).index_select(1, i))
    assert not kdlab.checks.check_slice_conv(_not_implemented).done
    cases = {"not the input channels": lambda w, o, i: w[o], "not the output channels": lambda w, o, i: w[:, i],
             "full shape": lambda w, o, i: w}
    for hint, answer in cases.items():
        fb = kdlab.checks.check_slice_conv(answer)
        assert not fb and hint in fb.message, (hint, fb.message)
    # Right on the first case only (hard-coded shape): caught by the second case.
    first = {}

    def memo(w, o, i):
        first.setdefault("answer", w[o][:, i])
        return first["answer"]
    fb = kdlab.checks.check_slice_conv(memo)
    assert not fb and "second one" in fb.message


def test_check_kept_fraction_feedback():
    count = kdlab.models.count_params
    assert kdlab.checks.check_kept_fraction(lambda s, t: count(s) / count(t))
    assert not kdlab.checks.check_kept_fraction(None).done
    cases = {"divided the teacher": lambda s, t: count(t) / count(s), "percentage": lambda s, t: 100 * count(s) / count(t),
             "both its input": lambda s, t: 0.5,
             "left some parameters out": lambda s, t: (sum(m.weight.numel() for m in s.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
                                                       / sum(m.weight.numel() for m in t.modules() if isinstance(m, (nn.Conv2d, nn.Linear))))}
    for hint, answer in cases.items():
        fb = kdlab.checks.check_kept_fraction(answer)
        assert not fb and hint in fb.message, (hint, fb.message)
