"""Tests for kdlab.transfer (subsets, class filters, bias shifts) and the notebook 05 exercise checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import kdlab
from kdlab import transfer
from kdlab.checks import transfer as checks
from kdlab.errors import ParameterError, ParameterTypeError


def _labels():
    # 60 / 30 / 10 examples of classes 0 / 1 / 2, shuffled.
    y = torch.cat([torch.zeros(60), torch.ones(30), torch.full((10,), 2)]).long()
    return y[torch.randperm(100, generator=torch.Generator().manual_seed(0))]


def _split(y):
    n = len(y)
    return kdlab.data.Split(torch.zeros(n, 1, 4, 4, dtype=torch.uint8), y, torch.zeros(1), torch.ones(1))


def _mlp(seed=0):
    return kdlab.models.create("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=(16,), seed=seed)


# --- subsets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction, expected", [(0.1, {0: 6, 1: 3, 2: 1}), (0.5, {0: 30, 1: 15, 2: 5}),
                                                (0.01, {0: 1, 1: 1, 2: 1}), (1.0, {0: 60, 1: 30, 2: 10})])
def test_stratified_indices_keeps_the_share_of_every_class(fraction, expected):
    y = _labels()
    idx = transfer.stratified_indices(y, fraction, seed=3)
    assert idx.dtype == torch.long and len(set(idx.tolist())) == len(idx)
    assert torch.equal(idx, idx.sort().values)
    assert {c: int((y[idx] == c).sum()) for c in expected} == expected


def test_stratified_indices_depends_on_the_seed_only():
    y = _labels()
    a, b = transfer.stratified_indices(y, 0.3, seed=1), transfer.stratified_indices(y, 0.3, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, transfer.stratified_indices(y, 0.3, seed=2))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_stratified_indices_rejects_a_bad_fraction_by_name(fraction):
    with pytest.raises(ParameterError, match="fraction"):
        transfer.stratified_indices(_labels(), fraction)


def test_stratified_indices_rejects_bad_types():
    with pytest.raises(ParameterTypeError, match="fraction"):
        transfer.stratified_indices(_labels(), "10%")
    with pytest.raises(ParameterTypeError, match="labels"):
        transfer.stratified_indices(torch.rand(10), 0.5)
    with pytest.raises(ParameterError, match="seed"):
        transfer.stratified_indices(_labels(), 0.5, seed=-1)


def test_stratified_fraction_returns_a_split():
    split = _split(_labels())
    sub = transfer.stratified_fraction(split, 0.1, seed=0)
    assert isinstance(sub, kdlab.data.Split) and len(sub) == 10
    with pytest.raises(ParameterTypeError, match="split"):
        transfer.stratified_fraction(_labels(), 0.1)


def test_class_filters():
    y = _labels()
    split = _split(y)
    assert set(transfer.without_classes(split, [2]).y.tolist()) == {0, 1}
    assert len(transfer.without_classes(split, 0)) == 40
    assert set(transfer.only_classes(split, [1, 2]).y.tolist()) == {1, 2}
    assert len(transfer.only_classes(split, [1, 2])) == 40
    kept = transfer.class_indices(y, [1], keep=True)
    assert torch.all(y[kept] == 1) and len(kept) == 30


def test_class_filters_name_the_bad_class():
    split = _split(_labels())
    with pytest.raises(ParameterError, match=r"classes=\[33\].*do not occur"):
        transfer.without_classes(split, [33])
    with pytest.raises(ParameterError, match="leaves no examples"):
        transfer.without_classes(split, [0, 1, 2])
    with pytest.raises(ParameterError, match="empty"):
        transfer.only_classes(split, [])
    with pytest.raises(ParameterError, match="class indices"):
        transfer.only_classes(split, [1.5])
    with pytest.raises(ParameterTypeError, match="classes"):
        transfer.only_classes(split, "7")


@pytest.mark.parametrize("n, batch, steps, epochs", [(3600, 128, 1015, 35), (36, 128, 1015, 1015),
                                                     (360, 128, 1015, 339), (128, 128, 1, 1)])
def test_epochs_for_steps_gives_at_least_the_steps(n, batch, steps, epochs):
    got = transfer.epochs_for_steps(n, batch, steps)
    assert got == epochs
    per_epoch = -(-n // batch)
    assert got * per_epoch >= steps > (got - 1) * per_epoch


def test_epochs_for_steps_validates():
    with pytest.raises(ParameterError, match="steps"):
        transfer.epochs_for_steps(10, 2, 0)
    with pytest.raises(ParameterTypeError, match="batch_size"):
        transfer.epochs_for_steps(10, 2.0, 5)


# --- targets and per-class scores -----------------------------------------------------------------

def test_hard_pseudo_labels_and_per_class_accuracy():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    assert transfer.hard_pseudo_labels(logits).tolist() == [0, 1, 1, 2]
    acc = transfer.per_class_accuracy(logits, torch.tensor([0, 1, 2, 2]), num_classes=4)
    assert acc[:3].tolist() == [1.0, 1.0, 0.5] and torch.isnan(acc[3])
    with pytest.raises(ParameterError, match="teacher_logits"):
        transfer.hard_pseudo_labels(torch.zeros(3))
    with pytest.raises(ParameterError, match="logits"):
        transfer.per_class_accuracy(logits, torch.tensor([0, 1]))


# --- bias shifts -----------------------------------------------------------------------------------

def test_shift_bias_returns_a_shifted_copy_and_leaves_the_original():
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    shifted = transfer.shift_bias(model, 3, 2.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    delta = shifted.output_layer.bias.detach() - model.output_layer.bias.detach()
    assert torch.allclose(delta, torch.eye(10)[3] * 2.5)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(shifted(x), transfer.shift_logits(model(x), [3], 2.5))


def test_shift_bias_several_classes_and_errors():
    model = _mlp()
    shifted = transfer.shift_bias(model, [7, 8], -4.0)
    delta = shifted.output_layer.bias.detach() - model.output_layer.bias.detach()
    assert delta[7:9].tolist() == pytest.approx([-4.0, -4.0], abs=1e-6) and delta[:7].abs().sum() == 0
    with pytest.raises(ParameterError, match="< 10"):
        transfer.shift_bias(model, 10, 1.0)
    with pytest.raises(ParameterError, match="offset"):
        transfer.shift_bias(model, 3, float("inf"))
    with pytest.raises(ParameterTypeError, match="model"):
        transfer.shift_bias("model", 3, 1.0)


def test_shift_bias_works_on_the_cnn_teacher_too():
    cnn = kdlab.models.create("cnn", num_classes=10, input_shape=(1, 8, 8), channels=(4, 8), fc=8, seed=0)
    shifted = transfer.shift_bias(cnn, 1, 1.0)
    assert not torch.equal(transfer.output_layer(shifted).bias, transfer.output_layer(cnn).bias)


def test_bias_sweep_and_best_offset():
    # Class 2 is never predicted until its logit is raised by more than 1.
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [2.0, 0.0, 0.5], [0.0, 0.0, -5.0]])
    y = torch.tensor([2, 2, 0, 0])
    sweep = transfer.bias_sweep(logits, y, [2], [0.0, 1.5, 3.0])
    assert sweep["class_accuracy"].tolist() == [0.0, 1.0, 1.0]
    assert sweep["accuracy"].tolist() == [0.5, 1.0, 0.75]
    assert sweep["errors"].tolist() == [2, 0, 1]
    assert transfer.best_offset(sweep) == 1.5
    tie = {"offset": np.array([-1.0, 0.5, 2.0]), "accuracy": np.array([0.9, 0.9, 0.8])}
    assert transfer.best_offset(tie) == 0.5  # among ties, the smallest change
    with pytest.raises(ParameterError, match="offsets"):
        transfer.bias_sweep(logits, y, [2], [])
    with pytest.raises(ParameterError, match="key"):
        transfer.best_offset(sweep, key="loss")


# --- the exercise checks: right answers pass, typical mistakes get their specific message -----------

def _right_stratified(labels, fraction, seed):
    return transfer.stratified_indices(labels, fraction, seed)


def _not_stratified(labels, fraction, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(len(labels), generator=gen)[: round(fraction * len(labels))]


def _with_replacement(labels, fraction, seed):
    idx = transfer.stratified_indices(labels, fraction, seed)
    idx[1] = idx[0]
    return idx


def _ignores_seed(labels, fraction, seed):
    return transfer.stratified_indices(labels, fraction, 0)


def _no_minimum(labels, fraction, seed):
    out = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        out.append(members[torch.randperm(len(members), generator=torch.Generator().manual_seed(seed))
                           [: int(round(fraction * len(members)))]])
    return torch.cat(out)


def _mask(labels, fraction, seed):
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[transfer.stratified_indices(labels, fraction, seed)] = True
    return mask


def _not_done(*args):
    raise NotImplementedError


@pytest.mark.parametrize("answer, ok, phrase", [
    (_right_stratified, True, "Correct"),
    (_not_stratified, False, "stratify"),
    (_with_replacement, False, "without replacement"),
    (_ignores_seed, False, "same subset"),
    (_no_minimum, False, "at least one per class"),
    (_mask, False, "boolean mask"),
    (lambda y, f, s: torch.arange(len(y)), False, "every index"),
])
def test_check_stratified_fraction(answer, ok, phrase, capsys):
    fb = checks.check_stratified_fraction(answer)
    assert bool(fb) is ok and phrase in fb.message, fb.message


def test_checks_report_unanswered_exercises_without_raising():
    for check in (checks.check_stratified_fraction, checks.check_shift_bias, checks.check_pseudo_labels):
        fb = check(_not_done)
        assert not fb and not fb.done and "Not done yet" in fb.message
        assert not check(None).done


def _in_place(model, cls, offset):
    with torch.no_grad():
        model.output_layer.bias[cls] += offset
    return model


def _copy_then(change):
    def answer(model, cls, offset):
        new = copy.deepcopy(model)
        with torch.no_grad():
            change(new.output_layer, cls, offset)
        return new
    return answer


@pytest.mark.parametrize("answer, ok, phrase", [
    (transfer.shift_bias, True, "Correct"),
    (_in_place, False, "changed the original model"),
    (_copy_then(lambda layer, c, o: layer.bias.__setitem__(c, layer.bias[c] - o)), False, "lowered"),
    (_copy_then(lambda layer, c, o: layer.bias.add_(o)), False, "every class"),
    (_copy_then(lambda layer, c, o: layer.bias.__setitem__(c + 1, layer.bias[c + 1] + o)), False, "class 4"),
    (_copy_then(lambda layer, c, o: layer.weight[c].add_(o)), False, "weights"),
    (_copy_then(lambda layer, c, o: None), False, "did not change"),
])
def test_check_shift_bias(answer, ok, phrase, capsys):
    fb = checks.check_shift_bias(answer)
    assert bool(fb) is ok and phrase in fb.message, fb.message


@pytest.mark.parametrize("answer, ok, phrase", [
    (lambda z: z.argmax(dim=1), True, "Correct"),
    (lambda z: z.argmax(dim=0), False, "dim=0"),
    (lambda z: torch.nn.functional.one_hot(z.argmax(1), z.shape[1]), False, "one-hot"),
    (lambda z: z.softmax(1), False, "probabilities"),
    (lambda z: z.max(dim=1).values, False, "largest logits"),
    (lambda z: z.argmin(dim=1), False, "argmin"),
])
def test_check_pseudo_labels(answer, ok, phrase, capsys):
    fb = checks.check_pseudo_labels(answer)
    assert bool(fb) is ok and phrase in fb.message, fb.message


def test_checks_are_exported_at_package_level():
    assert kdlab.checks.check_shift_bias is checks.check_shift_bias
    assert kdlab.checks.check_stratified_fraction is checks.check_stratified_fraction
    assert kdlab.checks.check_pseudo_labels is checks.check_pseudo_labels
