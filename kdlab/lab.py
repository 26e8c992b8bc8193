"""Notebook plumbing shared by every kdlab notebook.

A notebook's first code cells look like this::

    # parameters (papermill may replace these literals)
    dataset = "mnist-5k"
    epochs = 15
    smoke = False
    output_dir = ""
    checkpoint_dir = "../checkpoints"

    # next cell: check and derive
    kdlab.lab.check_params(globals(), {"dataset": str, "epochs": int, "smoke": bool, ...})
    smoke = kdlab.lab.smoke_mode(smoke)
    out = kdlab.lab.output_folder(output_dir, "01_teacher_training")

Smoke mode (``KDLAB_SMOKE=1`` in the environment, or ``smoke=True`` from
papermill) makes every notebook finish in seconds on ``digits`` for CI.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, data, metrics, models, train
from .errors import ParameterTypeError

SMOKE_DATASET = "digits"
_TRUE = {"1", "true", "yes", "on"}


def smoke_mode(smoke: bool = False) -> bool:
    """True if the notebook's ``smoke`` parameter is set or ``KDLAB_SMOKE`` is 1/true/yes."""
    return bool(smoke) or os.environ.get("KDLAB_SMOKE", "").strip().lower() in _TRUE


def _type_name(expected) -> str:
    if isinstance(expected, tuple):
        return " or ".join(t.__name__ for t in expected)
    return expected.__name__


def check_params(namespace: Mapping, types: Mapping[str, type | tuple[type, ...]]) -> None:
    """Check notebook parameters' types right after the ``parameters`` cell.

    ``types`` maps each parameter name to its type (a float parameter also
    accepts an int; bool is never taken for int or float). Raises
    :class:`~kdlab.errors.ParameterTypeError` naming the parameter, the value and
    the expected type, so a wrong papermill ``-p`` value fails before any training.
    """
    for name, expected in types.items():
        if name not in namespace:
            raise ParameterTypeError(f"notebook parameter {name!r} is missing; expected a {_type_name(expected)}.")
        value = namespace[name]
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if float in allowed:
            allowed = allowed + (int,)
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            raise ParameterTypeError(f"notebook parameter {name}={value!r} has type {type(value).__name__}; "
                                     f"expected {_type_name(expected)}.")


def project_root() -> Path:
    """The kit's top folder (the one holding ``data/README.md``), found from the working directory."""
    return data.default_root().parent


def output_folder(output_dir: str, notebook: str) -> Path:
    """The folder a notebook writes ``metrics.json`` and figures into.

    An explicit ``output_dir`` (as ``kdlab run`` passes) is created if needed.
    ``""`` means a new folder ``runs/<notebook>-<timestamp>`` in the project, so
    running a notebook again never overwrites an earlier run's results.
    """
    if output_dir:
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path(os.environ.get("KDLAB_RUNS", project_root() / "runs"))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = base / (f"{notebook}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run folder under {base}")


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null reads as "not measured"
    return value


def write_metrics(out: str | os.PathLike, metrics_dict: Mapping, name: str = "metrics.json") -> Path:
    """Write ``metrics_dict`` as JSON into ``out`` (atomically) and return the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
    with os.fdopen(fd, "w") as fh:
        json.dump(_jsonable(metrics_dict), fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def save_figure(fig, out: str | os.PathLike, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``<out>/<name>.png`` (for ``kdlab run`` and reports)."""
    path = Path(out) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# --- the teacher ------------------------------------------------------------------------

def teacher_recipe(dataset: str, smoke: bool = False) -> dict:
    """Model and training settings of the kit's teacher for ``dataset``.

    Digits datasets: the small CNN, AdamW with cosine decay, random shifts and
    weight decay (about 98.5% on mnist-5k in ~1 min on 2 CPU cores). CIFAR: a
    ResNet-20 with SGD+Nesterov, crop and flip (He et al. 2016).
    """
    if dataset.startswith("cifar"):
        recipe = {"model": "resnet", "model_kwargs": {"depth": 20}, "epochs": 30, "lr": 0.1,
                  "optimizer": "sgd", "weight_decay": 5e-4, "batch_size": 256, "augment": True,
                  "warmup_epochs": 1.0}
    else:
        recipe = {"model": "cnn", "model_kwargs": {}, "epochs": 15, "lr": 2e-3, "optimizer": "adamw",
                  "weight_decay": 5e-4, "batch_size": 128, "augment": True, "warmup_epochs": 0.0}
    if smoke:
        recipe.update(epochs=2, model_kwargs={"channels": (8, 16), "fc": 32} if recipe["model"] == "cnn"
                      else {"depth": 8})
    return recipe


def teacher_path(checkpoint_dir: str | os.PathLike, dataset: str, smoke: bool = False) -> Path:
    """Where the teacher for ``dataset`` lives: ``<checkpoint_dir>/teacher_<dataset>[_smoke].pt``."""
    return Path(checkpoint_dir) / f"teacher_{dataset}{'_smoke' if smoke else ''}.pt"


def train_teacher(ds: data.Dataset, *, smoke: bool = False, seed: int = 0, device: str = "auto",
                  progress: bool = True, **overrides) -> tuple[nn.Module, train.History]:
    """Build and train the kit's teacher on ``ds`` (recipe from :func:`teacher_recipe`;
    ``overrides`` replace recipe entries such as ``epochs`` or ``lr``)."""
    recipe = {**teacher_recipe(ds.name, smoke), **overrides}
    model = models.create(recipe["model"], num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed,
                          **recipe["model_kwargs"])
    history = train.fit(model, ds, epochs=recipe["epochs"], lr=recipe["lr"], batch_size=recipe["batch_size"],
                        optimizer=recipe["optimizer"], weight_decay=recipe["weight_decay"],
                        augment=recipe["augment"], warmup_epochs=recipe["warmup_epochs"], device=device,
                        seed=seed, progress=progress)
    return model, history


def load_or_train_teacher(ds: data.Dataset, checkpoint_dir: str | os.PathLike, *, smoke: bool = False,
                          seed: int = 0, device: str = "auto", progress: bool = True,
                          **overrides) -> tuple[nn.Module, dict]:
    """The teacher notebook 01 saved for ``ds``, or a new one trained now (with a message).

    Returns ``(teacher, metadata)``; the teacher is in eval mode. A teacher trained
    here (with :func:`teacher_recipe`, updated by ``overrides`` such as ``epochs``)
    is saved where notebook 01 would have put it, never over an existing file.
    """
    path = teacher_path(checkpoint_dir, ds.name, smoke)
    if path.exists():
        teacher, meta = checkpoint.load(path)
        acc = meta.get("test_metrics", {}).get("accuracy")
        print(f"Loaded the teacher from {path}" + (f" (test accuracy {acc:.2%})." if acc is not None else "."))
        return teacher, meta
    print(f"No teacher checkpoint at {path}: training one now with notebook 01's recipe "
          f"({'seconds' if smoke else 'about a minute on a laptop CPU'}). Run notebook 01 to see how.")
    teacher, history = train_teacher(ds, smoke=smoke, seed=seed, device=device, progress=progress, **overrides)
    meta = {"dataset": ds.name, "smoke": smoke, "seed": seed, "recipe": {**teacher_recipe(ds.name, smoke), **overrides},
            "test_metrics": metrics.evaluate(teacher, ds.test), "train_seconds": history.total_seconds}
    try:
        checkpoint.save(teacher, path, **meta)
    except FileExistsError:  # another process (a parallel sweep point) saved one first: use it
        teacher, meta = checkpoint.load(path)
    return teacher.eval(), meta
