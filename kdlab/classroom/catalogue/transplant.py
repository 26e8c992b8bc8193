"""The exercises of notebook 07 (students cut from the teacher)."""

from __future__ import annotations

import torch

from ... import models, transplant
from ...checks import transplant as checks
from ..exercises import Exercise
from ..grading import unchanged

NOTEBOOK = "07_teacher_initialised_students"


def _weight(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _filter_l1_tests(t):
    t.formative(checks.check_filter_l1)
    for shape, seed in (((3, 2, 5, 5), 70), ((5, 1, 1, 1), 71), ((4, 3, 3, 1), 72)):
        w = _weight(*shape, seed=seed)
        same = unchanged(w)
        t.expect(t.close(t.call(w), transplant.l1_scores(w)),
                 f"Wrong for a weight of shape {shape}: sum |w| over dims 1, 2, 3, one score per output channel.")
        t.expect(same(), f"{t.name} changed the weight (an in-place abs_()?); the teacher's weights must stay as "
                         "they are.")


def _slice_conv_tests(t):
    t.formative(checks.check_slice_conv)
    w = _weight(5, 4, 3, 5, seed=73)  # kh != kw
    for out_idx, in_idx in (([4, 0], [3, 1]), ([2], [0]), ([0, 1, 2, 3, 4], [2])):
        out_idx, in_idx = torch.tensor(out_idx), torch.tensor(in_idx)
        same = unchanged(w)
        t.expect(t.close(t.call(w, out_idx, in_idx), transplant.slice_weight(w, out_idx, in_idx)),
                 f"Wrong for out_idx={out_idx.tolist()}, in_idx={in_idx.tolist()}: keep them in the order given, "
                 "weight[out_idx][:, in_idx].")
        t.expect(same(), f"{t.name} changed the weight it was given.")


def _kept_fraction_tests(t):
    t.formative(checks.check_kept_fraction)
    teacher = models.create("cnn", num_classes=5, input_shape=(1, 8, 8), channels=(4, 8), fc=16, seed=1)
    t.expect(t.close(t.number(t.call(teacher, teacher)), 1.0, atol=1e-9), "A model compared with itself keeps 1.0.")
    for student in (transplant.narrow_copy(teacher, keep=0.25),
                    models.create("mlp", num_classes=5, input_shape=(1, 8, 8), hidden=(7,), seed=0)):
        expected = transplant.kept_fraction(student, teacher)
        value = t.number(t.call(student, teacher))
        t.expect(value is not None and abs(value - expected) < 1e-9,
                 f"Expected {expected:.4f} (student parameters / teacher parameters), got {value}.")


FILTER_L1 = Exercise(
    id="filter_l1", notebook=NOTEBOOK, answer="my_filter_l1", points=2,
    hints=("A conv weight is (out, in, kh, kw): output channel i's filter is weight[i].",
           "weight.abs().sum(dim=(1, 2, 3)): absolute values first, then a sum over every dimension but the first."),
    stub='''def my_filter_l1(weight):
    """One score per output channel: the sum of |w| over the channel's whole filter (in, kh, kw)."""
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''return weight.abs().sum(dim=(1, 2, 3))  # (out, in, kh, kw) -> (out,)''',
    check="kdlab.checks.check_filter_l1(my_filter_l1)",
    references=("kdlab.transplant.l1_scores",),
    tests=_filter_l1_tests,
)

SLICE_CONV = Exercise(
    id="slice_conv", notebook=NOTEBOOK, answer="my_slice_conv", points=3,
    hints=("Dim 0 of a conv weight is the output channels, dim 1 the input channels.",
           "Index one dimension at a time: weight[out_idx] keeps the output channels, then [:, in_idx] the inputs."),
    stub='''def my_slice_conv(weight, out_idx, in_idx):
    """weight: (out, in, kh, kw); out_idx, in_idx: 1-D index tensors. Returns (len(out_idx), len(in_idx), kh, kw)."""
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''return weight[out_idx][:, in_idx]  # rows: output channels (dim 0); columns: input channels (dim 1)''',
    check="kdlab.checks.check_slice_conv(my_slice_conv)",
    references=("kdlab.transplant.slice_weight",),
    tests=_slice_conv_tests,
)

KEPT_FRACTION = Exercise(
    id="kept_fraction", notebook=NOTEBOOK, answer="my_kept_fraction", points=2,
    hints=("Count every parameter of a model: sum(p.numel() for p in model.parameters()).",
           "Divide the student's count by the teacher's; at keep=0.5 expect about 0.25, not 0.5."),
    stub='''def my_kept_fraction(student, teacher):
    """Parameters of student / parameters of teacher (every parameter tensor of each model)."""
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''student_count = sum(p.numel() for p in student.parameters())
teacher_count = sum(p.numel() for p in teacher.parameters())
return student_count / teacher_count  # about keep², not keep: a weight shrinks on both sides''',
    check="kdlab.checks.check_kept_fraction(my_kept_fraction)",
    references=("kdlab.transplant.kept_fraction",),
    tests=_kept_fraction_tests,
)

EXERCISES = (FILTER_L1, SLICE_CONV, KEPT_FRACTION)
