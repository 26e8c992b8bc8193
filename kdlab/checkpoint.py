"""Saving and loading models safely.

* ``save`` writes atomically: to a temporary file in the same folder, flushed to
  disk, then renamed over the target. A process killed mid-write leaves the
  previous checkpoint intact and loadable.
* ``save`` refuses to replace an existing file unless ``overwrite=True``, so
  nothing a learner trained is lost by accident.
* ``load`` uses ``torch.load(..., weights_only=True)`` only: a checkpoint file
  cannot run code when it is opened.
* A checkpoint stores the ``state_dict``, how the model was built
  (``model.kdlab_spec`` from :func:`kdlab.models.create`) and JSON metadata.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, ParameterError

FORMAT = "kdlab-checkpoint"
VERSION = 1


def _atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows within one filesystem
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        metadata_json = json.dumps(metadata, default=float)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"checkpoint metadata must be JSON-serialisable: {err}") from err
    payload = {"format": FORMAT, "version": VERSION, "kind": "model",
               "spec": json.dumps(getattr(model, "kdlab_spec", None)), "model_class": type(model).__name__,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "metadata": metadata_json}
    _atomic_torch_save(payload, path)
    return path


def _read(path: str | os.PathLike, kind: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {str(path)!r} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if isinstance(err, pickle.UnpicklingError) and zipfile.is_zipfile(path):
            # A well-formed torch file whose pickle names classes or functions: kdlab never
            # unpickles those, because unpickling arbitrary objects can run code.
            raise CheckpointError(f"{str(path)!r} is not a kdlab checkpoint: it holds Python objects that safe "
                                  f"loading (weights_only=True) refuses to unpickle ({reason}).") from err
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted or truncated and cannot be read "
                              f"({type(err).__name__}: {reason}). Re-create it, or use an earlier copy.") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a kdlab checkpoint (no '{FORMAT}' header); "
                              "it was not written by kdlab.checkpoint.save.")
    if payload.get("kind") != kind:
        raise CheckpointError(f"{str(path)!r} is a kdlab {payload.get('kind')!r} file, not a {kind!r} file; "
                              + ("use kdlab.checkpoint.load for models." if kind == "training_state"
                                 else "pass it to fit(resume_from=...) instead."))
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
    """Save everything ``fit(resume_from=...)`` needs, atomically (used by ``fit``)."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, "kind": "training_state",
               "spec": json.dumps(getattr(model, "kdlab_spec", None)), "model_class": type(model).__name__,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizer": optimizer.state_dict(),
               "objective": {k: v.detach().cpu() for k, v in objective.state_dict().items()},
               "records": json.dumps(records), "config": json.dumps(config), "metadata": "{}"}
    _atomic_torch_save(payload, path)
    return path


def load_training_state(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                        objective: nn.Module) -> dict:
    """Restore model, optimizer and objective from :func:`save_training_state`; returns
    ``{"records": [...], "config": {...}}``."""
    payload = _read(path, "training_state")
    _load_weights(model, payload, path)
    optimizer.load_state_dict(payload["optimizer"])
    if payload["objective"]:
        objective.load_state_dict(payload["objective"])
    return {"records": json.loads(payload["records"]), "config": json.loads(payload["config"])}


def file_size(model: nn.Module, *, compressed: bool = False) -> int:
    """Bytes of ``model``'s saved ``state_dict`` (zip-deflated if ``compressed``), measured
    by really serialising it; sparse (pruned) weights only shrink when compressed."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    if not compressed:
        return buf.getbuffer().nbytes
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weights.pt", buf.getvalue())
    return out.getbuffer().nbytes
