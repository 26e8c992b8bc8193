"""kdlab.checkpoint at its boundary: files that are not checkpoints, and resuming with other settings."""

import pytest
import torch
from torch import nn

import kdlab
from kdlab import checkpoint
from kdlab.errors import CheckpointError, KdlabError, ParameterError


def _model():
    return kdlab.models.create("mlp", num_classes=3, input_shape=(1, 2, 2), hidden=(4,), seed=0)


def _state(tmp_path, seed=0, epochs=2):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return checkpoint.save_training_state(tmp_path / "state.pt", model=model, optimizer=opt, objective=nn.Identity(),
                                          records=[{"epoch": 1, "train_loss": 0.5}],
                                          config={"seed": seed, "epochs": epochs})


def _loaders():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return {"load": lambda p: checkpoint.load(p),
            "load_training_state": lambda p: checkpoint.load_training_state(p, model=model, optimizer=opt,
                                                                            objective=nn.Identity()),
            "resume_training": lambda p: checkpoint.resume_training(p, model=model, optimizer=opt,
                                                                    objective=nn.Identity(), seed=0, epochs=2)}


@pytest.mark.parametrize("loader", ["load", "load_training_state", "resume_training"])
def test_files_that_are_not_checkpoints(tmp_path, loader):
    read = _loaders()[loader]
    text = tmp_path / "notes.txt"
    text.write_text("These are my notes about distillation.\n")
    empty = tmp_path / "empty.pt"
    empty.touch()
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "teacher_digits.pt").touch()
    cases = {text: r"is a text file \(it starts 'These are my notes", empty: r"is an empty file \(0 bytes\)",
             folder: r"is a folder, not a file.*teacher_digits\.pt"}
    for path, what in cases.items():
        with pytest.raises(CheckpointError, match=what) as info:
            read(path)
        message = str(info.value)
        assert str(path) in message and "expected a checkpoint file written by kdlab.checkpoint.save" in message
        assert isinstance(info.value, ValueError)
    missing = tmp_path / "missing.pt"
    with pytest.raises(kdlab.errors.CheckpointNotFoundError, match="does not exist; expected a checkpoint") as info:
        read(missing)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, KdlabError)
    assert str(missing) in str(info.value)


def test_a_path_of_the_wrong_type_is_named(tmp_path):
    with pytest.raises(TypeError, match="checkpoint path None has type NoneType; expected a str or os.PathLike"):
        checkpoint.load(None)


def test_resume_training_restores_the_state(tmp_path):
    path = _state(tmp_path)
    model = kdlab.models.create("mlp", num_classes=3, input_shape=(1, 2, 2), hidden=(4,), seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    records = checkpoint.resume_training(path, model=model, optimizer=opt, objective=nn.Identity(), seed=0, epochs=2)
    assert records == [{"epoch": 1, "train_loss": 0.5}]
    for a, b in zip(model.state_dict().values(), _model().state_dict().values()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("seed, epochs", [(1, 2), (0, 3)])
def test_resume_training_with_other_settings_changes_nothing(tmp_path, seed, epochs):
    path = _state(tmp_path)
    model = kdlab.models.create("mlp", num_classes=3, input_shape=(1, 2, 2), hidden=(4,), seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ParameterError, match=rf"resume_from='.*state\.pt' was saved with seed=0 and epochs=2; "
                                             rf"resume with the same values \(got seed={seed}, epochs={epochs}\)"):
        checkpoint.resume_training(path, model=model, optimizer=opt, objective=nn.Identity(), seed=seed,
                                   epochs=epochs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
