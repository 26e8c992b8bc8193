"""kdlab.teacher: the four ways a teacher's logits reach the objective, and its cache.

"given", "cached", "cached per augmentation" and "online" must train the student to the
same numbers; a cache must be computed once, reused by later ``fit`` calls, and computed
again when the teacher's weights or the training data change, never served stale.
"""

import copy
import math

import pytest
import torch

import kdlab
from kdlab.errors import ParameterError, ParameterTypeError
from kdlab.inference import predict_augmented_logits, predict_logits
from kdlab.objectives import Distillation
from kdlab.teacher import Teacher

CPU = torch.device("cpu")


def student(ds, seed=0):
    return kdlab.models.create("mlp", num_classes=ds.num_classes, input_shape=ds.input_shape, hidden=(16,), seed=seed)


def distil(ds, teacher, *, augment, epochs=2, seed=0):
    objective = Distillation(teacher, temperature=4.0, alpha=0.9)
    history = kdlab.train.fit(student(ds), ds, objective=objective, epochs=epochs, batch_size=128, augment=augment,
                              seed=seed, progress=False)
    return history


# --- the four modes train alike --------------------------------------------------------------------------

MODES = {
    # augment=False: one view of each image, cached unless cache=False asks for the teacher on every batch.
    False: {"given": lambda t, ds: Teacher(t, logits=predict_logits(t, ds.train)),
            "cached": lambda t, ds: Teacher(t),
            "cached (cache=True)": lambda t, ds: Teacher(t, cache=True),
            "online": lambda t, ds: Teacher(t, cache=False)},
    True: {"given": lambda t, ds: Teacher(t, logits=predict_augmented_logits(t, ds.train)),
           "cached per augmentation": lambda t, ds: Teacher(t, cache=True),
           "online": lambda t, ds: Teacher(t, cache=False),
           "online (auto: 2 epochs < 9 augmentations)": lambda t, ds: Teacher(t)},
}


@pytest.mark.parametrize("augment", [False, True])
def test_every_mode_gives_the_same_training_result(digits, mlp_teacher, augment):
    runs = {}
    for name, make in MODES[augment].items():
        runs[name] = distil(digits, make(mlp_teacher, digits), augment=augment)
        assert runs[name].config["teacher_logits"] == name.split(" (")[0], name
    reference = runs["given"]
    for name, history in runs.items():
        for key in ("train_loss", "kd", "ce", "val_acc"):
            assert history[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-6), (name, key)
    # and distilling is not a no-op: plain cross-entropy from the same start trains differently
    plain = kdlab.train.fit(student(digits), digits, epochs=2, batch_size=128, augment=augment, progress=False)
    assert plain["train_loss"] != pytest.approx(reference["train_loss"], rel=1e-3)


def test_the_default_caches_per_augmentation_when_that_costs_no_more_teacher_passes(digits, mlp_teacher, monkeypatch):
    a = digits.train.num_augmentations  # 9 shifts
    modes = {}
    for epochs in (a - 1, a):
        teacher = Teacher(mlp_teacher)
        teacher.prepare(digits.train, augment=True, epochs=epochs, device=CPU, num_classes=10)
        modes[epochs] = teacher.mode
    assert modes == {a - 1: "online", a: "cached per augmentation"}
    # ... and when the (N, A, K) table fits the memory limit.
    monkeypatch.setattr(kdlab.teacher, "CACHE_LIMIT_BYTES", len(digits.train) * a * 10 * 4 - 1)
    teacher = Teacher(mlp_teacher)
    teacher.prepare(digits.train, augment=True, epochs=100, device=CPU, num_classes=10)
    assert teacher.mode == "online"


def test_given_logits_of_a_subset_train_like_the_teacher_run_on_that_subset(digits, mlp_teacher):
    idx = kdlab.data.stratified_indices(digits.train.y, 0.3, seed=0)
    subset = digits.with_train(digits.train.subset(idx))
    full = predict_logits(mlp_teacher, digits.train)  # (N, K) once, for the whole split
    given = distil(subset, Teacher(mlp_teacher, logits=full[idx]), augment=False)
    recomputed = distil(subset, mlp_teacher, augment=False)
    assert given.config["teacher_logits"] == "given" and recomputed.config["teacher_logits"] == "cached"
    assert given["train_loss"] == pytest.approx(recomputed["train_loss"], rel=1e-5)


# --- the cache: once, reused, recomputed when it would be stale ----------------------------------------

def spy_on(monkeypatch, name, teacher):
    """Count the calls of kdlab.inference.<name> that run ``teacher``."""
    real = getattr(kdlab.inference, name)
    calls = []

    def spy(model, split, **kwargs):
        if model is teacher:
            calls.append(split)
        return real(model, split, **kwargs)

    monkeypatch.setattr(kdlab.inference, name, spy)
    return calls


def test_the_per_augmentation_cache_is_reused_and_recomputed_when_the_teacher_changes(digits, mlp_teacher, monkeypatch):
    teacher = copy.deepcopy(mlp_teacher)
    calls = spy_on(monkeypatch, "predict_augmented_logits", teacher)
    objective = Distillation(Teacher(teacher, cache=True), temperature=4.0, alpha=0.9)

    def fit(seed=0):
        return kdlab.train.fit(student(digits), digits, objective=objective, epochs=1, augment=True, seed=seed,
                               progress=False)

    first = fit()
    second = fit(seed=1)  # another run (a seed loop) with the same objective
    assert len(calls) == 1
    assert first.config["teacher_logits"] == second.config["teacher_logits"] == "cached per augmentation"
    # The teacher is mlp_teacher further: the next fit must not serve its old logits.
    with torch.no_grad():
        teacher.output_layer.bias.add_(torch.linspace(-2.0, 2.0, 10))
    changed = fit()
    assert len(calls) == 2
    fresh = kdlab.train.fit(student(digits), digits, objective=Distillation(Teacher(copy.deepcopy(teacher),
                                                                                    cache=True), 4.0, 0.9),
                            epochs=1, augment=True, progress=False)
    assert changed["train_loss"] == pytest.approx(fresh["train_loss"], rel=1e-6)
    assert changed["train_loss"] != pytest.approx(first["train_loss"], rel=1e-4)  # a stale cache would show


def test_the_cache_is_reused_without_augmentation_and_recomputed_for_other_data(digits, mlp_teacher, monkeypatch):
    teacher = copy.deepcopy(mlp_teacher)
    calls = spy_on(monkeypatch, "predict_logits", teacher)
    objective = Distillation(teacher, temperature=4.0, alpha=0.9)
    for seed in (0, 1, 2):
        history = kdlab.train.fit(student(digits), digits, objective=objective, epochs=1, seed=seed, progress=False)
        assert history.config["teacher_logits"] == "cached"
    assert len(calls) == 1 and len(calls[0]) == len(digits.train)
    # Another training split: its own cache, with its own rows.
    half = digits.with_train(digits.train.subset(torch.arange(0, len(digits.train), 2)))
    history = kdlab.train.fit(student(half), half, objective=objective, epochs=1, progress=False)
    assert len(calls) == 2 and len(calls[1]) == len(half.train)
    assert history["train_loss"] == pytest.approx(distil(half, mlp_teacher, augment=False, epochs=1)["train_loss"],
                                                  rel=1e-6)
    # Switching augmentation on needs other logits (one row per augmentation): not the (N, K) cache.
    history = kdlab.train.fit(student(digits), digits, objective=objective, epochs=9, augment=True, progress=False)
    assert history.config["teacher_logits"] == "cached per augmentation"


# --- bad input -------------------------------------------------------------------------------------------

def test_wrong_shaped_given_logits_name_the_expected_shape_and_how_to_compute_them(digits, mlp_teacher):
    n, a = len(digits.train), digits.train.num_augmentations
    flat = predict_logits(mlp_teacher, digits.train)  # (N, K)
    per_augmentation = predict_augmented_logits(mlp_teacher, digits.train)  # (N, A, K)
    assert per_augmentation.shape == (n, a, 10)
    cases = [
        (flat, True, rf"shape \({n}, 10\).*augment=True.*must be \({n}, {a}, 10\).*predict_augmented_logits"),
        (per_augmentation, False, rf"shape \({n}, {a}, 10\).*augment=False.*must be \({n}, 10\).*predict_logits"),
        (flat[:100], False, rf"shape \(100, 10\).*must be \({n}, 10\)"),  # a subset's logits for the full split
        (flat[:, :9], False, rf"must be \({n}, 10\)"),
    ]
    for logits, augment, match in cases:
        with pytest.raises(ParameterError, match=match):
            kdlab.train.fit(student(digits), digits, objective=Distillation(Teacher(mlp_teacher, logits=logits)),
                            epochs=1, augment=augment, progress=False)


def test_teacher_arguments_are_checked():
    model = torch.nn.Linear(4, 3)
    with pytest.raises(ParameterTypeError, match="teacher must be a torch.nn.Module"):
        Teacher("teacher.pt")
    with pytest.raises(ParameterTypeError, match="logits must be a tensor"):
        Teacher(model, logits=[[0.0, 1.0, 2.0]])
    with pytest.raises(ParameterTypeError, match="cache must be True, False or None"):
        Teacher(model, cache="auto")
    teacher = Teacher(model)
    assert teacher.mode == "not prepared"
    batch = kdlab.data.Batch(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), torch.arange(2),
                             torch.zeros(2, dtype=torch.long))
    with pytest.raises(ParameterError, match="not been prepared"):
        teacher.logits(batch)


def test_a_teacher_answers_twice_for_one_batch_at_the_cost_of_once(digits, mlp_teacher):
    teacher = Teacher(mlp_teacher, cache=False)
    teacher.prepare(digits.train, augment=True, epochs=1, device=CPU, num_classes=10)
    batch = next(digits.train.batches(32, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0)))
    first = teacher.logits(batch)
    assert teacher.logits(batch) is first  # an objective using them in forward and after_step pays once
    other = batch._replace(x=batch.x.flip(-1))
    assert not torch.equal(teacher.logits(other), first)
    assert not first.requires_grad and first.dtype == torch.float32 and first.shape == (32, 10)
    assert math.isfinite(float(first.sum()))
