"""kdlab.files (atomic writes, JSON, run folders) and the notebook plumbing in kdlab.lab built on it."""

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import kdlab
from kdlab import files, lab
from kdlab.errors import ParameterError, ParameterTypeError


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    assert files.atomic_write(path, lambda fh: fh.write("first")) == path
    files.atomic_write(path, lambda fh: fh.write(b"second"), "wb")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["a.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def half_then_crash(fh):
        fh.write("new but unfini")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.atomic_write(path, half_then_crash)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_atomic_write_mode_is_checked(tmp_path):
    with pytest.raises(ParameterError, match=r"mode='a'.*'w', 'wb'"):
        files.atomic_write(tmp_path / "a.txt", lambda fh: None, "a")


def test_jsonable_handles_tensors_numpy_and_non_finite_numbers():
    value = {"t": torch.tensor([1.5, float("nan")]), "scalar": torch.tensor(2), "np": np.float32(0.25),
             "arr": np.arange(3), 4: (float("inf"), -math.inf), "path": Path("a/b"), "ok": [True, None, "x"]}
    assert files.jsonable(value) == {"t": [1.5, None], "scalar": 2, "np": 0.25, "arr": [0, 1, 2], "4": [None, None],
                                     "path": str(Path("a/b")), "ok": [True, None, "x"]}


def test_write_json_is_strict_json(tmp_path):
    path = files.write_json(tmp_path / "m.json", {"acc": np.float64(0.5), "ece": float("nan")})
    text = path.read_text()
    assert "NaN" not in text and json.loads(text) == {"acc": 0.5, "ece": None}


def test_new_folder_is_never_reused(tmp_path):
    made = [files.new_folder(tmp_path / "runs", "run") for _ in range(3)]
    assert len(set(made)) == 3 and all(p.is_dir() and p.name.startswith("run-") for p in made)


# --- kdlab.lab ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [("on", True), ("ON", True), ("1", True), ("yes", True),
                                             ("true", True), ("0", False), ("off", False), ("", False)])
def test_smoke_mode_reads_kdlab_smoke(monkeypatch, value, expected):
    monkeypatch.setenv("KDLAB_SMOKE", value)
    assert lab.smoke_mode() is expected
    assert lab.smoke_mode(True) is True


def test_smoke_mode_rejects_unknown_words(monkeypatch):
    monkeypatch.setenv("KDLAB_SMOKE", "sometimes")
    with pytest.raises(ParameterError, match="KDLAB_SMOKE='sometimes'.*accepted"):
        lab.smoke_mode()


def test_one_type_rule_for_notebook_parameters():
    assert lab.parameter_value("lr", 1, float) == 1.0 and isinstance(lab.parameter_value("lr", 1, float), float)
    assert lab.parameter_value("epochs", 3, int) == 3
    assert lab.parameter_value("smoke", True, bool) is True
    for name, value, expected in (("epochs", True, int), ("lr", False, float), ("epochs", 2.0, int),
                                  ("dataset", 3, str)):
        with pytest.raises(ParameterTypeError, match=f"notebook parameter {name}={value!r} has type "
                                                     f"{type(value).__name__}; expected {expected.__name__}"):
            lab.parameter_value(name, value, expected)
    with pytest.raises(ParameterTypeError, match="in notebook 04_x.ipynb"):
        lab.parameter_value("seed", "zero", int, notebook="04_x.ipynb")


def test_validate_params_returns_checked_values_and_names_missing_ones():
    assert lab.validate_params({"lr": 1, "name": "x", "other": 0}, {"lr": float, "name": str}) == {"lr": 1.0,
                                                                                                 "name": "x"}
    with pytest.raises(ParameterTypeError, match="'epochs' is missing; expected a value of type int"):
        lab.validate_params({}, {"epochs": int})


def test_default_output_and_teacher_folders_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("KDLAB_CHECKPOINTS", str(tmp_path / "ckpt"))
    out = lab.output_folder("", "01_teacher_training")
    assert out.parent == tmp_path / "runs" and out.name.startswith("01_teacher_training-")
    assert lab.output_folder(str(tmp_path / "mine"), "01") == tmp_path / "mine"
    default = lab.teacher_path(lab.DEFAULT_CHECKPOINT_DIR, "digits", smoke=True)
    assert default == tmp_path / "ckpt" / "teacher_digits_smoke.pt"
    # A folder passed explicitly (papermill, kdlab run) is kept.
    assert lab.teacher_path(tmp_path / "given", "mnist-5k") == tmp_path / "given" / "teacher_mnist-5k.pt"


def test_both_teachers_live_in_the_checkpoint_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_CHECKPOINTS", str(tmp_path / "ckpt"))
    assert lab.checkpoint_folder(lab.DEFAULT_CHECKPOINT_DIR) == tmp_path / "ckpt"
    assert lab.checkpoint_folder(tmp_path / "given") == tmp_path / "given"
    recipe = {"dataset": "synthetic"}
    assert kdlab.lm.teacher_path(lab.DEFAULT_CHECKPOINT_DIR, recipe).parent == tmp_path / "ckpt"
    assert kdlab.lm.teacher_path(tmp_path / "given", recipe).parent == tmp_path / "given"


def test_load_or_train_trains_once_then_loads(tmp_path):
    made = []

    def make():
        made.append(1)
        return kdlab.models.create("linear", num_classes=3, input_shape=(1, 2, 2), seed=0), {"note": "made"}

    path = tmp_path / "m.pt"
    first, meta, loaded = lab.load_or_train(path, make)
    again, meta2, loaded2 = lab.load_or_train(path, make)
    assert made == [1] and (loaded, loaded2) == (False, True) and meta == meta2 == {"note": "made"}
    assert not first.training and not again.training
    torch.testing.assert_close(first.state_dict(), again.state_dict())


def test_write_metrics_writes_null_for_nan(tmp_path):
    path = lab.write_metrics(tmp_path, {"accuracy": torch.tensor(0.5), "ece": float("nan")})
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "ece": None}


def test_checkpoint_file_size_is_gone_and_compress_measures_size():
    assert not hasattr(kdlab.checkpoint, "file_size")
    model = kdlab.models.create("linear", num_classes=3, input_shape=(1, 2, 2), seed=0)
    assert kdlab.compress.saved_size(model) > 4 * kdlab.models.count_params(model)


class _Figure:
    """Stands in for a matplotlib figure: records how it was saved, and can die half-way through."""

    def __init__(self, crash=False):
        self.crash, self.saved_with = crash, None

    def savefig(self, target, **kwargs):
        self.saved_with = kwargs
        with contextlib.ExitStack() as stack:
            fh = stack.enter_context(open(target, "wb")) if isinstance(target, (str, os.PathLike)) else target
            fh.write(b"\x89PNG half an image")
            if self.crash:
                raise RuntimeError("killed mid-write")


def test_write_png_saves_a_real_figure(tmp_path):
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    path = files.write_png(fig, tmp_path / "sub" / "f.png", dpi=50)
    assert path.read_bytes()[:4] == b"\x89PNG" and os.listdir(path.parent) == ["f.png"]


@pytest.mark.parametrize("save", [lambda fig, folder: lab.save_figure(fig, folder, "f"),
                                  lambda fig, folder: files.write_png(fig, folder / "f.png")],
                         ids=["lab", "files"])
def test_figures_are_written_atomically(tmp_path, save):
    (tmp_path / "f.png").write_bytes(b"the old image")
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save(_Figure(crash=True), tmp_path)
    assert (tmp_path / "f.png").read_bytes() == b"the old image" and os.listdir(tmp_path) == ["f.png"]


def test_each_figure_helper_keeps_its_resolution_and_cropping(tmp_path):
    fig = _Figure()
    assert lab.save_figure(fig, tmp_path, "a") == tmp_path / "a.png"
    assert fig.saved_with == {"format": "png", "dpi": 110, "bbox_inches": "tight"}
    files.write_png(fig, tmp_path / "b.png", dpi=80)
    assert fig.saved_with == {"format": "png", "dpi": 80, "bbox_inches": None}
