"""The exercises of notebook 05 (hard vs soft targets, transfer sets)."""

from __future__ import annotations

import copy

import torch

from ... import models, transfer
from ...checks import transfer as checks
from ..exercises import Exercise
from ..grading import unchanged

NOTEBOOK = "05_hard_vs_soft_targets"


def _stratified_tests(t):
    t.formative(checks.check_stratified_fraction)
    # Classes 2, 5 and 9 (not 0..K-1) with 7, 3 and 12 members, shuffled.
    labels = torch.tensor([2] * 7 + [5] * 3 + [9] * 12)[torch.randperm(22, generator=torch.Generator().manual_seed(50))]
    same = unchanged(labels)
    picked = t.call(labels, 0.4, 3)
    try:
        idx = torch.as_tensor(picked).long()
    except (TypeError, ValueError, RuntimeError):
        idx = None
    t.expect(idx is not None and idx.dim() == 1, f"Return a 1-D tensor of indices, got {type(picked).__name__}.")
    counts = {c: int((labels[idx] == c).sum()) for c in (2, 5, 9)}
    t.expect(counts == {2: 3, 5: 1, 9: 5},
             f"For classes 2, 5, 9 with 7, 3, 12 members and fraction 0.4 draw 3, 1, 5 (round(0.4 · n_c)); got "
             f"{counts}. Loop over labels.unique(), not range(number of classes).")
    t.expect(len(set(idx.tolist())) == len(idx), "Some indices appear twice: draw without replacement.")
    t.expect(same(), f"{t.name} changed the labels it was given; shuffle a copy or the members' positions.")
    again = torch.as_tensor(t.call(labels, 0.4, 3)).long()
    t.expect(sorted(again.tolist()) == sorted(idx.tolist()),
             "The same seed must give the same subset: draw with torch.Generator().manual_seed(seed).")
    everything = torch.as_tensor(t.call(labels, 1.0, 0)).long()
    t.expect(sorted(everything.tolist()) == list(range(len(labels))), "fraction=1.0 keeps every index once.")


def _model(hidden, classes, seed):
    return models.create("mlp", num_classes=classes, input_shape=(1, 4, 4), hidden=hidden, seed=seed)


def _shift_bias_tests(t):
    t.formative(checks.check_shift_bias)
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(51))
    for hidden, classes, cls, offset in (((8,), 5, 0, -1.5), ((8, 8), 3, 2, 0.25), ((4,), 4, 1, 0.0)):
        model = _model(hidden, classes, seed=52)
        before = copy.deepcopy(model.state_dict())
        shifted = t.call(model, cls, offset)
        t.expect(isinstance(shifted, torch.nn.Module) and shifted is not model,
                 f"Return a new, shifted model (a copy), got {type(shifted).__name__}.")
        t.expect(all(torch.equal(before[k], v) for k, v in model.state_dict().items()),
                 f"The original model changed (class {cls}, offset {offset}); shift a copy.")
        with torch.no_grad():
            want = transfer.shift_logits(model(x), cls, offset)
            got = shifted(x)
        t.expect(t.close(got, want, atol=1e-5),
                 f"With offset {offset} on class {cls} of a {classes}-class model, logit {cls} must move by {offset} "
                 "and nothing else.")


def _pseudo_labels_tests(t):
    t.formative(checks.check_pseudo_labels)
    for n, k, seed in ((1, 3, 53), (100, 7, 54)):
        logits = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
        same = unchanged(logits)
        value = t.call(logits)
        t.expect(isinstance(value, torch.Tensor) and value.dtype == torch.long and
                 torch.equal(value, logits.argmax(dim=1)),
                 f"For {n} examples of {k} classes return the int64 class indices logits.argmax(dim=1), shape ({n},).")
        t.expect(same(), f"{t.name} changed the logits it was given.")


STRATIFIED_FRACTION = Exercise(
    id="stratified_fraction", notebook=NOTEBOOK, answer="my_stratified_indices", points=4,
    hints=("For each class c in labels.unique(): its members are (labels == c).nonzero().flatten(); keep "
           "k = max(1, round(fraction * len(members))) of them.",
           "Shuffle the members with torch.randperm(len(members), generator=gen), gen = "
           "torch.Generator().manual_seed(seed) made once, keep the first k, and torch.cat the classes' picks."),
    stub='''def my_stratified_indices(labels, fraction, seed):
    # labels is a 1-D int64 tensor; return a 1-D tensor of indices into it.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''gen = torch.Generator().manual_seed(seed)
picked = []
for c in labels.unique():
    members = (labels == c).nonzero().flatten()
    k = max(1, round(fraction * len(members)))  # at least one example of every class
    picked.append(members[torch.randperm(len(members), generator=gen)[:k]])
return torch.cat(picked).sort().values''',
    check="kdlab.checks.check_stratified_fraction(my_stratified_indices)",
    references=("kdlab.data.stratified_indices", "kdlab.transfer.stratified_fraction"),
    tests=_stratified_tests,
)

SHIFT_BIAS = Exercise(
    id="shift_bias", notebook=NOTEBOOK, answer="my_shift_bias", points=3,
    hints=("Copy first, copy.deepcopy(model), so that the original stays as it was.",
           "Inside torch.no_grad(), add offset to the copy's output_layer.bias[cls], then return the copy."),
    stub='''import copy


def my_shift_bias(model, cls, offset):
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''shifted = copy.deepcopy(model)  # never change the original
with torch.no_grad():
    shifted.output_layer.bias[cls] += offset
return shifted''',
    check="kdlab.checks.check_shift_bias(my_shift_bias)",
    references=("kdlab.transfer.shift_bias",),
    tests=_shift_bias_tests,
)

PSEUDO_LABELS = Exercise(
    id="pseudo_labels", notebook=NOTEBOOK, answer="my_pseudo_labels", points=2,
    hints=("A hard label is one class index per example: the teacher's top-1 prediction.",
           "teacher_logits.argmax(dim=1): over the classes, not the batch."),
    stub='''def my_pseudo_labels(teacher_logits):
    # teacher_logits is (N, K).
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''return teacher_logits.argmax(dim=1)  # one class index per example, shape (N,)''',
    check="kdlab.checks.check_pseudo_labels(my_pseudo_labels)",
    references=("kdlab.transfer.hard_pseudo_labels",),
    tests=_pseudo_labels_tests,
)

EXERCISES = (STRATIFIED_FRACTION, SHIFT_BIAS, PSEUDO_LABELS)
