"""Saving and loading models safely.

* ``save`` writes atomically (:func:`kdlab.files.atomic_write`): a process killed
  mid-write leaves the previous checkpoint intact and loadable.
* ``save`` refuses to replace an existing file unless ``overwrite=True``, so
  nothing a learner trained is lost by accident.
* ``load`` uses ``torch.load(..., weights_only=True)`` only: a checkpoint file
  cannot run code when it is opened. A path that is missing, a folder, empty, a
  text file or a damaged file raises an error saying so, naming the path.
* A checkpoint stores the ``state_dict``, how the model was built
  (``model.kdlab_spec`` from :func:`kdlab.models.create`) and JSON metadata.
* ``save_training_state`` / ``resume_training`` are what ``fit`` uses to stop and
  continue a run (``TrainConfig(checkpoint_path=...)`` / ``TrainConfig(resume_from=...)``).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, CheckpointNotFoundError, ParameterError, ParameterTypeError
from .files import atomic_write, jsonable

FORMAT = "kdlab-checkpoint"
VERSION = 1
EXPECTED = "a checkpoint file written by kdlab.checkpoint.save or TrainConfig(checkpoint_path=...)"


def _torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh), "wb")


def _describe(model: nn.Module) -> str:
    spec = getattr(model, "kdlab_spec", None)
    if spec:
        return f"{type(model).__name__} ({spec['name']}, {spec['kwargs']})"
    return type(model).__name__


def save(model: nn.Module, path: str | os.PathLike, *, overwrite: bool = False, **metadata) -> Path:
    """Save ``model`` with JSON-able ``metadata`` (e.g. ``dataset="mnist-5k", metrics={...}``).

    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"checkpoint path {str(path)!r} already exists; pass overwrite=True to "
                              "replace it, or choose another path.")
    try:
        metadata_json = json.dumps(jsonable(metadata))
    except (TypeError, ValueError) as err:
        raise ParameterError(f"checkpoint metadata {sorted(metadata)} must hold numbers, strings, lists, dicts or "
                             f"tensors: {err}") from err
    payload = {"format": FORMAT, "version": VERSION, "kind": "model",
               "spec": json.dumps(getattr(model, "kdlab_spec", None)), "model_class": type(model).__name__,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "metadata": metadata_json}
    _torch_save(payload, path)
    return path


# Bytes a text file is made of: printable ASCII, whitespace, and UTF-8's multi-byte sequences.
_TEXT_BYTES = frozenset(range(32, 127)) | frozenset(b"\t\n\r\f") | frozenset(range(128, 256))


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    """The error for a file that ``torch.load`` could not read, saying what it is instead."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    if isinstance(err, pickle.UnpicklingError) and zipfile.is_zipfile(path):
        # A well-formed torch file whose pickle names classes or functions: kdlab never
        # unpickles those, because unpickling arbitrary objects can run code.
        return CheckpointError(f"{str(path)!r} is not a kdlab checkpoint: it holds Python objects that safe "
                               f"loading (weights_only=True) refuses to unpickle ({reason}).")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if set(head) <= _TEXT_BYTES:
        start = head[:40].decode("utf-8", errors="replace")
        return CheckpointError(f"{str(path)!r} is a text file (it starts {start!r}), not a checkpoint; "
                               f"expected {EXPECTED}.")
    return CheckpointError(f"checkpoint {str(path)!r} is corrupted or truncated, or not a checkpoint at all, and "
                           f"cannot be read ({type(err).__name__}: {reason}); expected {EXPECTED}. Re-create it, "
                           "or use an earlier copy.")


def _read(path: str | os.PathLike, kind: str) -> dict:
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterTypeError(f"checkpoint path {path!r} has type {type(path).__name__}; expected a str or "
                                 "os.PathLike naming a file.")
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint path {str(path)!r} does not exist; expected {EXPECTED}.")
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))[:5]
        raise CheckpointError(f"checkpoint path {str(path)!r} is a folder, not a file; expected {EXPECTED}"
                              + (f" (this folder holds {', '.join(inside)})." if inside else "."))
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is an empty file (0 bytes); expected {EXPECTED}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise _unreadable(path, err) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a kdlab checkpoint (no '{FORMAT}' header); expected "
                              f"{EXPECTED}.")
    if payload.get("kind") != kind:
        raise CheckpointError(f"{str(path)!r} is a kdlab {payload.get('kind')!r} file, not a {kind!r} file; "
                              + ("use kdlab.checkpoint.load for models." if kind == "training_state"
                                 else "pass it to fit(config=TrainConfig(resume_from=...)) instead."))
    return payload


def _load_weights(model: nn.Module, payload: dict, path) -> None:
    state = payload["state_dict"]
    own = model.state_dict()
    mismatch = (set(state) != set(own)) or any(state[k].shape != own[k].shape for k in state)
    if mismatch:
        spec = json.loads(payload.get("spec") or "null")
        saved = f"{payload.get('model_class')}" + (f" ({spec['name']}, {spec['kwargs']})" if spec else "")
        raise CheckpointError(f"checkpoint {str(path)!r} holds weights for {saved}, which do not fit the "
                              f"model given, {_describe(model)}. Build the model the checkpoint was saved "
                              "from, or call kdlab.checkpoint.load without model= to rebuild it.")
    model.load_state_dict(state)


def load(path: str | os.PathLike, *, model: nn.Module | None = None,
         device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint saved by :func:`save`; returns ``(model, metadata)``.

    Without ``model`` the architecture is rebuilt from the stored spec; with it,
    the weights are loaded into ``model`` after checking that they fit.
    """
    from . import models  # local: models does not depend on checkpoint

    payload = _read(path, "model")
    spec = json.loads(payload.get("spec") or "null")
    if model is None:
        if not spec:
            raise CheckpointError(f"checkpoint {str(path)!r} was saved from a custom {payload.get('model_class')} "
                                  "model, which kdlab cannot rebuild; pass model=<an instance of it>.")
        model = models.create(spec["name"], num_classes=spec["num_classes"], input_shape=spec["input_shape"],
                              **spec["kwargs"])
    _load_weights(model, payload, path)
    model.to(device).eval()
    return model, json.loads(payload["metadata"])


def save_training_state(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                        objective: nn.Module, records: list[dict], config: dict) -> Path:
    """Save everything ``TrainConfig(resume_from=...)`` needs, atomically (used by ``fit``)."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, "kind": "training_state",
               "spec": json.dumps(getattr(model, "kdlab_spec", None)), "model_class": type(model).__name__,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizer": optimizer.state_dict(),
               "objective": {k: v.detach().cpu() for k, v in objective.state_dict().items()},
               "records": json.dumps(records), "config": json.dumps(config), "metadata": "{}"}
    _torch_save(payload, path)
    return path


def load_training_state(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                        objective: nn.Module) -> dict:
    """Restore model, optimizer and objective from :func:`save_training_state`; returns
    ``{"records": [...], "config": {...}}``."""
    return _restore(_read(path, "training_state"), path, model, optimizer, objective)


def resume_training(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    objective: nn.Module, seed: int, epochs: int) -> list[dict]:
    """What ``fit`` does first with ``TrainConfig(resume_from=path)``: restore the state saved at ``path`` and
    return the records of the epochs already done.

    The run must continue with the ``seed`` and ``epochs`` it was saved with (the batch
    order and the learning-rate schedule depend on them); otherwise ``ParameterError``,
    raised before anything is changed.
    """
    payload = _read(path, "training_state")
    config = json.loads(payload["config"])
    if config.get("seed") != seed or config.get("epochs") != epochs:
        raise ParameterError(f"resume_from={str(path)!r} was saved with seed={config.get('seed')} and "
                             f"epochs={config.get('epochs')}; resume with the same values (got seed={seed}, "
                             f"epochs={epochs}).")
    return _restore(payload, path, model, optimizer, objective)["records"]


def _restore(payload: dict, path, model: nn.Module, optimizer: torch.optim.Optimizer, objective: nn.Module) -> dict:
    _load_weights(model, payload, path)
    optimizer.load_state_dict(payload["optimizer"])
    if payload["objective"]:
        objective.load_state_dict(payload["objective"])
    return {"records": json.loads(payload["records"]), "config": json.loads(payload["config"])}
