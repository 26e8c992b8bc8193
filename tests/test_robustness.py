"""Bad input gets a clear error before training; faults lose nothing already computed."""

import copy
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import kdlab
from kdlab import errors, objectives

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return kdlab.data.load("digits", seed=0)


def mlp(ds, hidden=(32,), seed=0, **kw):
    return kdlab.models.create("mlp", num_classes=ds.num_classes, input_shape=ds.input_shape, hidden=hidden,
                               seed=seed, **kw)


class ExplodingFit:
    """Fails the test if training starts: bad input must be caught before the first step."""

    def __init__(self, monkeypatch):
        monkeypatch.setattr(torch.optim.AdamW, "step", self.fail)

    @staticmethod
    def fail(*args, **kwargs):
        raise AssertionError("training started before the bad input was caught")


# --- bad input ---------------------------------------------------------------------------

def test_unknown_dataset_and_model_list_the_choices():
    with pytest.raises(ValueError, match="'mnist-5k'.*'cifar10'"):
        kdlab.data.load("mnist5k")
    with pytest.raises(ValueError, match="'cnn'.*'mlp'.*'resnet'"):
        kdlab.models.create("vit", num_classes=10, input_shape=(1, 28, 28))
    with pytest.raises(TypeError, match="hidden"):
        kdlab.models.create("mlp", num_classes=10, input_shape=(1, 28, 28), hiden=(10,))


def test_model_built_for_the_wrong_dataset(digits, monkeypatch):
    ExplodingFit(monkeypatch)
    wrong_classes = kdlab.models.create("mlp", num_classes=7, input_shape=digits.input_shape, hidden=(8,))
    with pytest.raises(errors.IncompatibleModelError, match="7 logits.*10 classes"):
        kdlab.train.fit(wrong_classes, digits, epochs=1, progress=False)
    wrong_shape = kdlab.models.create("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=(8,))
    with pytest.raises(errors.IncompatibleModelError, match=r"\(1, 8, 8\)") as info:
        kdlab.train.fit(wrong_shape, digits, epochs=1, progress=False)
    assert isinstance(info.value, ValueError) and "input_shape" in str(info.value)


def test_teacher_and_student_class_counts_differ(digits, monkeypatch):
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    ExplodingFit(monkeypatch)
    with pytest.raises(errors.IncompatibleModelError, match="teacher Sequential outputs 5 logits.*10 classes"):
        kdlab.train.fit(mlp(digits), digits, teacher=teacher, epochs=1, progress=False)
    with pytest.raises(errors.IncompatibleModelError, match="teacher Sequential outputs 5 logits.*10 classes"):
        kdlab.train.fit(mlp(digits), digits, objective=objectives.TeacherHardLabels(teacher), epochs=1,
                        progress=False)


def test_a_model_with_too_few_outputs_is_refused_by_evaluate_and_predict_logits(digits):
    five = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))  # 5 outputs; digits has labels 0..9
    for call in (lambda: kdlab.metrics.evaluate(five, digits.test),
                 lambda: kdlab.inference.predict_logits(five, digits.test),
                 lambda: kdlab.metrics.evaluate(mlp(digits), digits.test, logits=torch.zeros(len(digits.test), 5))):
        with pytest.raises(errors.IncompatibleModelError, match=r"5 logits.*label 9") as info:
            call()
        assert isinstance(info.value, ValueError)
        assert "num_classes" in str(info.value)


def test_fit_takes_a_teacher_or_an_objective_not_both(digits, monkeypatch):
    teacher = mlp(digits, seed=1)
    ExplodingFit(monkeypatch)
    for objective in (objectives.CrossEntropy(), objectives.Distillation(teacher)):
        with pytest.raises(errors.ParameterError, match="either teacher=.*or objective="):
            kdlab.train.fit(mlp(digits), digits, teacher=teacher, objective=objective, epochs=1, progress=False)


def test_the_teacher_must_not_be_the_model_being_trained(digits, monkeypatch):
    model = mlp(digits)
    ExplodingFit(monkeypatch)
    with pytest.raises(errors.ParameterError, match="same object as model"):
        kdlab.train.fit(model, digits, teacher=model, epochs=1, progress=False)
    with pytest.raises(errors.ParameterError, match="teacher is the model being trained"):
        kdlab.train.fit(model, digits, objective=objectives.Distillation(model), epochs=1, progress=False)
    with pytest.raises(TypeError, match="teacher must be a torch.nn.Module"):
        objectives.Distillation(None)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"optimizer": "adam"}, ValueError, "optimizer.*'adamw'.*'sgd'"),
    ({"schedule": "linear"}, ValueError, "schedule.*'cosine'"),
    ({"evaluate_every": 0}, ValueError, "evaluate_every=0"),
    ({"evaluate_every": 1.5}, TypeError, "evaluate_every"),
    ({"amp": "yes"}, TypeError, "amp must be True, False or None"),
    ({"channels_last": "auto"}, TypeError, "channels_last must be True, False or None"),
    ({"compile": "no"}, TypeError, "compile must be True or False"),
    ({"momentum": 1.0}, ValueError, "momentum=1.0"),
    ({"warmup_epochs": -1}, ValueError, "warmup_epochs=-1"),
    ({"callback": "print"}, TypeError, "callback must be callable"),
])
def test_bad_train_config_names_the_parameter(kwargs, error, match):
    with pytest.raises(error, match=match):
        kdlab.train.TrainConfig(**kwargs)


def test_fit_rejects_a_config_that_is_not_a_train_config(digits, monkeypatch):
    ExplodingFit(monkeypatch)
    with pytest.raises(TypeError, match="config"):
        kdlab.train.fit(mlp(digits), digits, epochs=1, progress=False, config={"optimizer": "sgd"})
    with pytest.raises(TypeError, match="optimizer"):
        kdlab.train.fit(mlp(digits), digits, epochs=1, progress=False, optimizer="sgd")  # moved to TrainConfig


def test_amp_on_a_cpu_without_bf16_is_refused_before_training(digits, monkeypatch):
    ExplodingFit(monkeypatch)
    monkeypatch.setattr(kdlab.devices, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(errors.ParameterError, match="amp=True on the CPU"):
        kdlab.train.fit(mlp(digits), digits, epochs=1, device="cpu", progress=False,
                        config=kdlab.train.TrainConfig(amp=True))


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": 0.0}, "temperature=0.0"), ({"temperature": -1.0}, "temperature=-1.0"),
    ({"temperature": float("nan")}, "temperature=nan.*not finite"), ({"temperature": float("inf")}, "not finite"),
    ({"alpha": 1.5}, r"alpha=1.5.*\[0.0, 1.0\]"), ({"alpha": -0.1}, "alpha=-0.1"),
    ({"epochs": 0}, "epochs=0.*>= 1"), ({"batch_size": 0}, "batch_size=0.*>= 1"),
    ({"lr": 0.0}, "lr=0.0"), ({"lr": -1e-3}, "lr=-0.001"),
])
def test_bad_hyperparameters_are_rejected_before_training(digits, monkeypatch, kwargs, match):
    teacher = mlp(digits, seed=1)
    ExplodingFit(monkeypatch)
    with pytest.raises(ValueError, match=match):
        kdlab.train.fit(mlp(digits), digits, teacher=teacher, progress=False, **{"epochs": 1, **kwargs})


@pytest.mark.parametrize("T", [0.0, -2.0, float("nan"), float("inf")])
def test_loss_functions_check_the_temperature(T):
    with pytest.raises(ValueError, match="temperature"):
        objectives.Distillation(nn.Linear(2, 3), temperature=T)  # checked once, when the objective is built
    z = torch.zeros(2, 3)
    for call in (lambda: kdlab.losses.kd_loss(z, z, T), lambda: kdlab.losses.soft_targets(z, T),
                 lambda: kdlab.losses.distillation_loss(z, z, torch.zeros(2, dtype=torch.long), T, 0.5)):
        with pytest.raises(ValueError, match="temperature"):
            call()


@pytest.mark.parametrize("y", [[0, 10], [-1, 3]])
def test_losses_refuse_labels_outside_the_classes_and_name_them(y):
    s, t, y = torch.zeros(2, 10), torch.zeros(2, 10), torch.tensor(y)
    with pytest.raises(errors.ParameterError, match=rf"labels from {int(y.min())} to {int(y.max())}.*0 to 9"):
        kdlab.losses.distillation_loss(s, t, y, 4.0, 0.9)


@pytest.mark.parametrize("shape", [(10,), ()])  # (B, L, K) is accepted: sequences (tests/test_language.py)
def test_losses_refuse_logits_that_are_not_batch_by_classes_and_name_the_shape(shape):
    bad, good, y = torch.zeros(shape), torch.zeros(2, 10), torch.zeros(2, dtype=torch.long)
    shown = re.escape(str(tuple(shape)))
    for call in (lambda: kdlab.losses.kd_loss(bad, good, 4.0), lambda: kdlab.losses.kd_loss(good, bad, 4.0),
                 lambda: kdlab.losses.distillation_loss(bad, good, y, 4.0, 0.9),
                 lambda: kdlab.losses.distillation_loss(good, bad, y, 4.0, 0.9)):
        with pytest.raises(errors.ParameterError, match=rf"shape {shown}.*\(batch, classes\)"):
            call()
    with pytest.raises(errors.ParameterError, match=r"\(2, 10\).*\(2, 9\)"):
        kdlab.losses.kd_loss(good, torch.zeros(2, 9), 4.0)
    with pytest.raises(errors.ParameterError, match=r"targets.*\(2,\)"):
        kdlab.losses.distillation_loss(good, good, torch.zeros(3, dtype=torch.long), 4.0, 0.9)


def test_wrong_types_name_the_parameter(digits):
    with pytest.raises(TypeError, match="epochs must be an integer, got 2.5"):
        kdlab.train.fit(mlp(digits), digits, epochs=2.5)
    with pytest.raises(TypeError, match="data must be a kdlab Dataset"):
        kdlab.train.fit(mlp(digits), [1, 2, 3])
    with pytest.raises(TypeError, match="temperature must be a real number"):
        kdlab.losses.kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), "4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(digits, monkeypatch):
    with pytest.raises(errors.DeviceUnavailableError, match="device='cuda'.*CUDA is not available"):
        kdlab.train.fit(mlp(digits), digits, device="cuda")
    monkeypatch.setenv("KDLAB_DEVICE", "cuda")
    with pytest.raises(ValueError, match="KDLAB_DEVICE"):
        kdlab.devices.resolve("auto")
    with pytest.raises(ValueError, match="'tpu' is not recognised"):
        kdlab.devices.resolve("tpu")


# --- checkpoints -------------------------------------------------------------------------

def test_checkpoint_for_another_architecture_names_both(digits, tmp_path):
    path = kdlab.checkpoint.save(mlp(digits, hidden=(32,)), tmp_path / "a.pt")
    with pytest.raises(errors.CheckpointError, match=r"hidden.*\[32\].*do not fit.*hidden.*\[16\]"):
        kdlab.checkpoint.load(path, model=mlp(digits, hidden=(16,)))


def test_truncated_and_corrupted_checkpoints(digits, tmp_path):
    path = kdlab.checkpoint.save(mlp(digits), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.CheckpointError, match="corrupted or truncated"):
        kdlab.checkpoint.load(path)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(errors.CheckpointError, match="corrupted or truncated"):
        kdlab.checkpoint.load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kdlab.checkpoint.load(tmp_path / "missing.pt")


def test_file_that_is_not_a_kdlab_checkpoint(digits, tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(mlp(digits).state_dict(), plain)  # a bare state_dict, as most tutorials save it
    with pytest.raises(errors.CheckpointError, match="not a kdlab checkpoint"):
        kdlab.checkpoint.load(plain)
    state = tmp_path / "state.pt"
    model = mlp(digits)
    kdlab.train.fit(model, digits, epochs=1, progress=False, config=kdlab.train.TrainConfig(checkpoint_path=state))
    with pytest.raises(errors.CheckpointError, match="training_state"):
        kdlab.checkpoint.load(state)


# --- faults ------------------------------------------------------------------------------

class NaNAt(objectives.CrossEntropy):
    """Cross-entropy that turns NaN at one (epoch, batch), counting from 1."""

    def __init__(self, epoch, batch, steps_per_epoch):
        super().__init__()
        self.target = (epoch - 1) * steps_per_epoch + batch
        self.calls = 0

    def forward(self, student_logits, batch):
        self.calls += 1
        loss, logs = super().forward(student_logits, batch)
        return (loss * float("nan"), logs) if self.calls == self.target else (loss, logs)


def test_non_finite_loss_stops_with_where_and_keeps_last_good_weights(digits):
    model = mlp(digits)
    steps = math.ceil(len(digits.train) / 128)
    snapshots = []
    with pytest.raises(errors.NonFiniteLossError) as info:
        kdlab.train.fit(model, digits, objective=NaNAt(2, 3, steps), epochs=3, lr=1e-3, progress=False,
                        config=kdlab.train.TrainConfig(
                            callback=lambda r: snapshots.append(copy.deepcopy(model.state_dict()))))
    err = info.value
    assert (err.epoch, err.batch) == (2, 3)
    assert [r["epoch"] for r in err.history.records] == [1]  # the epochs that finished
    assert math.isfinite(err.history.records[0]["train_loss"])
    assert "epoch 2, batch 3" in str(err) and "lr=" in str(err)
    assert len(snapshots) == 1
    assert all(torch.equal(v, snapshots[0][k]) for k, v in model.state_dict().items())
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_non_finite_distillation_hints_at_temperature(digits):
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        teacher[1].weight.fill_(float("nan"))
    with pytest.raises(errors.NonFiniteLossError, match="temperature"):
        kdlab.train.fit(mlp(digits), digits, teacher=teacher, epochs=1, progress=False)


def test_keyboard_interrupt_after_an_epoch_returns_cleanly(digits):
    model = mlp(digits, dropout=0.1)
    snapshots = []

    def stop_after_two(record):
        snapshots.append(copy.deepcopy(model.state_dict()))
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    history = kdlab.train.fit(model, digits, epochs=4, progress=False,
                              config=kdlab.train.TrainConfig(callback=stop_after_two))
    assert history.interrupted and len(history) == 2
    assert all(torch.equal(v, snapshots[1][k]) for k, v in model.state_dict().items())
    more = kdlab.train.fit(model, digits, epochs=1, progress=False)  # training can continue
    assert len(more) == 1


def test_keyboard_interrupt_mid_epoch_keeps_the_last_completed_epoch(digits):
    class StopAt(objectives.CrossEntropy):
        def __init__(self, call):
            super().__init__()
            self.call, self.calls = call, 0

        def forward(self, *args, **kwargs):
            self.calls += 1
            if self.calls == self.call:
                raise KeyboardInterrupt
            return super().forward(*args, **kwargs)

    model = mlp(digits)
    steps = math.ceil(len(digits.train) / 128)
    snapshots = []
    history = kdlab.train.fit(model, digits, objective=StopAt(2 * steps + 3), epochs=4, progress=False,
                              config=kdlab.train.TrainConfig(
                                  callback=lambda r: snapshots.append(copy.deepcopy(model.state_dict()))))
    assert history.interrupted and len(history) == 2
    assert all(torch.equal(v, snapshots[-1][k]) for k, v in model.state_dict().items())


def test_resume_equals_the_uninterrupted_run(digits, tmp_path):
    settings = dict(epochs=4, augment=True, seed=3, progress=False)
    full = mlp(digits, dropout=0.2)
    Config = kdlab.train.TrainConfig
    full_history = kdlab.train.fit(full, digits, config=Config(checkpoint_path=tmp_path / "full.pt"), **settings)

    first = mlp(digits, dropout=0.2)

    def stop(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    kdlab.train.fit(first, digits, config=Config(checkpoint_path=tmp_path / "part.pt", callback=stop), **settings)
    resumed = mlp(digits, seed=99, dropout=0.2)  # different initial weights: all state must come from the file
    history = kdlab.train.fit(resumed, digits, config=Config(resume_from=tmp_path / "part.pt"), **settings)
    assert len(history) == 4 and not history.interrupted
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in resumed.state_dict().items())
    drop = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rs]
    assert drop(history.records) == drop(full_history.records)


def test_resume_with_other_settings_is_refused(digits, tmp_path):
    model = mlp(digits)
    kdlab.train.fit(model, digits, epochs=2, progress=False,
                    config=kdlab.train.TrainConfig(checkpoint_path=tmp_path / "s.pt"))
    with pytest.raises(ValueError, match="seed=0 and epochs=2"):
        kdlab.train.fit(mlp(digits), digits, epochs=3, progress=False,
                        config=kdlab.train.TrainConfig(resume_from=tmp_path / "s.pt"))


CHILD = textwrap.dedent("""
    import sys, time, torch, kdlab, kdlab.checkpoint as ck
    path = sys.argv[1]
    model = kdlab.models.create("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=(800, 800), seed=0)
    ck.save(model, path, note="first")
    real_save = torch.save
    def slow_save(obj, fh, *a, **k):
        fh.write(b"PK\\x03\\x04 partial checkpoint bytes")  # the start of a zip, then nothing
        fh.flush()
        print("writing", flush=True)
        time.sleep(60)
    ck.torch.save = slow_save
    ck.save(kdlab.models.create("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=(8,)), path,
            overwrite=True, note="second")
""")


@pytest.mark.slow
def test_killed_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    path = tmp_path / "teacher.pt"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    model, meta = kdlab.checkpoint.load(path)
    assert meta == {"note": "first"} and kdlab.models.count_params(model) == 1_276_810
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "teacher.pt"]
    assert leftovers and all(name.startswith(".teacher.pt.") for name in leftovers)  # the dead temp file, ignored


# --- notebook parameters -----------------------------------------------------------------

def test_notebook_parameter_check_message():
    with pytest.raises(TypeError, match="notebook parameter epochs='five' has type str; expected int"):
        kdlab.lab.validate_params({"epochs": "five"}, {"epochs": int})
    with pytest.raises(TypeError, match="expected float"):
        kdlab.lab.validate_params({"lr": True}, {"lr": float})
    checked = kdlab.lab.validate_params({"lr": 1, "smoke": False, "name": "x"},
                                        {"lr": float, "smoke": bool, "name": str})
    assert checked == {"lr": 1.0, "smoke": False, "name": "x"} and isinstance(checked["lr"], float)


@pytest.mark.slow
def test_wrong_notebook_parameter_fails_in_the_cell_after_parameters(tmp_path):
    import papermill

    nb = ROOT / "notebooks" / "01_teacher_training.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), cwd=str(nb.parent), kernel_name="python3",
                                   parameters={"epochs": "five", "output_dir": str(tmp_path)}, progress_bar=False)
    assert "notebook parameter epochs='five' in notebook 01_teacher_training has type str; expected int" in str(info.value)
    assert not (tmp_path / "metrics.json").exists()
