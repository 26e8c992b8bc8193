"""Notebook plumbing shared by every kdlab notebook.

A notebook's first code cells look like this::

    # parameters (papermill may replace these literals)
    dataset = "mnist-5k"
    epochs = 15
    smoke = False
    output_dir = ""
    checkpoint_dir = "../checkpoints"

    # next cell: check and derive
    kdlab.lab.validate_params(globals(), {"dataset": str, "epochs": int, "smoke": bool, ...})
    smoke = kdlab.lab.smoke_mode(smoke)
    out = kdlab.lab.output_folder(output_dir, "01_teacher_training")

Smoke mode (``KDLAB_SMOKE=1`` in the environment, or ``smoke=True`` from
papermill) makes every notebook finish in seconds on ``digits`` for CI.
``KDLAB_RUNS`` and ``KDLAB_CHECKPOINTS`` move the default output and teacher
folders (the tests point them at a temporary folder).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from . import checkpoint, data, metrics, models, train
from .errors import ParameterError, ParameterTypeError
from .files import new_folder, write_json

SMOKE_DATASET = "digits"
#: The notebooks' ``checkpoint_dir`` default, relative to ``notebooks/``; ``$KDLAB_CHECKPOINTS`` replaces it.
DEFAULT_CHECKPOINT_DIR = "../checkpoints"
_SMOKE_WORDS = {"1": True, "true": True, "yes": True, "on": True,
                "": False, "0": False, "false": False, "no": False, "off": False}


def smoke_mode(smoke: bool = False) -> bool:
    """True if ``smoke`` is set or ``KDLAB_SMOKE`` is 1, true, yes or on (any case).

    The one reading of ``KDLAB_SMOKE``: the notebooks and the ``kdlab`` command both use it.
    """
    raw = os.environ.get("KDLAB_SMOKE", "")
    word = raw.strip().lower()
    if word not in _SMOKE_WORDS:
        raise ParameterError(f"KDLAB_SMOKE={raw!r} is not understood; accepted: 1, true, yes, on (smoke mode) "
                             "or 0, false, no, off, empty (full runs).")
    return bool(smoke) or _SMOKE_WORDS[word]


def _type_name(expected) -> str:
    if isinstance(expected, tuple):
        return " or ".join(t.__name__ for t in expected)
    return expected.__name__


def parameter_value(name: str, value, expected: type | tuple[type, ...], *, notebook: str | None = None):
    """``value`` if it has the ``expected`` type, else :class:`~kdlab.errors.ParameterTypeError`.

    An int given for a float parameter is returned as that float; a bool is never
    taken for an int or a float. Used for notebook parameters, inside the notebook and
    by ``kdlab run``/``kdlab sweep`` before it starts one.
    """
    allowed = expected if isinstance(expected, tuple) else (expected,)
    not_bool = bool in allowed or not isinstance(value, bool)  # bool subclasses int: True is not epochs=1
    if isinstance(value, allowed) and not_bool:
        return value
    if float in allowed and isinstance(value, int) and not_bool:
        return float(value)
    where = f" in notebook {notebook}" if notebook else ""
    raise ParameterTypeError(f"notebook parameter {name}={value!r}{where} has type {type(value).__name__}; "
                             f"expected {_type_name(expected)}.")


def validate_params(namespace: Mapping, types: Mapping[str, type | tuple[type, ...]], *,
                    notebook: str | None = None) -> dict:
    """Check notebook parameters right after the ``parameters`` cell, before any training.

    ``types`` maps each parameter name to its type; each value in ``namespace`` (the
    notebook's ``globals()``) must pass :func:`parameter_value`. Returns the checked
    values, ints given for floats converted.
    """
    checked = {}
    for name, expected in types.items():
        if name not in namespace:
            raise ParameterTypeError(f"notebook parameter {name!r} is missing; expected a value of type "
                                     f"{_type_name(expected)}.")
        checked[name] = parameter_value(name, namespace[name], expected, notebook=notebook)
    return checked


def project_root() -> Path:
    """The kit's top folder (the one holding ``data/README.md``), found from the working directory."""
    return data.default_root().parent


def runs_root() -> Path:
    """Where new run folders go: ``$KDLAB_RUNS``, else ``runs/`` in the project."""
    return Path(os.environ.get("KDLAB_RUNS") or project_root() / "runs")


def output_folder(output_dir: str, notebook: str) -> Path:
    """The folder a notebook writes ``metrics.json`` and figures into.

    An explicit ``output_dir`` (as ``kdlab run`` passes) is created if needed.
    ``""`` means a new folder ``<notebook>-<timestamp>`` under :func:`runs_root`, so
    running a notebook again never overwrites an earlier run's results.
    """
    if output_dir:
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return new_folder(runs_root(), notebook)


def write_metrics(out: str | os.PathLike, metrics_dict: Mapping, name: str = "metrics.json") -> Path:
    """Write ``metrics_dict`` as JSON into ``out`` (atomically; NaN as null) and return the path."""
    return write_json(Path(out) / name, metrics_dict)


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
    """Where the teacher for ``dataset`` lives: ``<checkpoint_dir>/teacher_<dataset>[_smoke].pt``.

    ``$KDLAB_CHECKPOINTS`` replaces the notebooks' default ``checkpoint_dir``
    (:data:`DEFAULT_CHECKPOINT_DIR`), as ``$KDLAB_RUNS`` replaces the default output
    folder; a folder passed explicitly (by papermill or ``kdlab run``) is kept.
    """
    if os.fspath(checkpoint_dir) == DEFAULT_CHECKPOINT_DIR and os.environ.get("KDLAB_CHECKPOINTS"):
        checkpoint_dir = os.environ["KDLAB_CHECKPOINTS"]
    return Path(checkpoint_dir) / f"teacher_{dataset}{'_smoke' if smoke else ''}.pt"


def train_teacher(ds: data.Dataset, *, smoke: bool = False, seed: int = 0, device: str = "auto",
                  progress: bool = True, **overrides) -> tuple[nn.Module, train.History]:
    """Build and train the kit's teacher on ``ds`` (recipe from :func:`teacher_recipe`;
    ``overrides`` replace recipe entries such as ``epochs`` or ``lr``)."""
    recipe = {**teacher_recipe(ds.name, smoke), **overrides}
    model = models.create(recipe["model"], num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed,
                          **recipe["model_kwargs"])
    history = train.fit(model, ds, epochs=recipe["epochs"], lr=recipe["lr"], batch_size=recipe["batch_size"],
                        weight_decay=recipe["weight_decay"], augment=recipe["augment"], device=device, seed=seed,
                        progress=progress, config=train.TrainConfig(optimizer=recipe["optimizer"],
                                                                    warmup_epochs=recipe["warmup_epochs"]))
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
