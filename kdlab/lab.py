"""Notebook plumbing shared by every kdlab notebook, kept to one line at each end.

A notebook starts with its ``parameters`` cell (literals papermill may replace) and
one setup line, and ends with one line that records its results::

    run = kdlab.lab.start(globals(), "03_temperature")
    ...
    run.record(best_T=best_T, gain_pp=gain)

:func:`start` checks every parameter (its type from the default in the notebook's
``parameters`` cell, its range from :mod:`kdlab.course`), swaps in the smoke-mode
values (``KDLAB_SMOKE=1`` in the environment, or ``smoke=True`` from papermill), and
makes the output folder. ``KDLAB_RUNS`` and ``KDLAB_CHECKPOINTS`` move the default
output and teacher folders (the tests point them at a temporary folder).
"""

from __future__ import annotations

import os
import ast
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, course, data, experiments, metrics, models, train
from .errors import ParameterError, ParameterTypeError
from .files import new_folder, write_json, write_png

SMOKE_DATASET = course.SMOKE_DATASET
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
    """Save a matplotlib figure as ``<out>/<name>.png``, atomically and cropped (for ``kdlab run`` and reports)."""
    return write_png(fig, Path(out) / f"{name}.png", dpi=dpi, bbox_inches="tight")


# --- one line at each end of a notebook --------------------------------------------------

def _notebook_file(name: str, namespace: Mapping | None = None) -> Path:
    """The ``.ipynb`` of notebook ``name``: the one JupyterLab says is open, else in the
    working folder (JupyterLab and ``kdlab run`` both run a notebook in its own folder),
    else in the kit's ``notebooks/``."""
    from .runner import notebook_dir  # runner imports this module

    session = (namespace or {}).get("__session__")  # set by ipykernel to the open notebook's path
    candidates = [Path(session)] if session and Path(session).name == f"{name}.ipynb" else []
    candidates += [Path.cwd() / f"{name}.ipynb", notebook_dir() / f"{name}.ipynb"]
    for path in candidates:
        if path.is_file():
            return path
    raise ParameterError(f"cannot find {name}.ipynb to read its parameter defaults (looked in "
                         f"{', '.join(str(p.parent) for p in candidates)}); set KDLAB_NOTEBOOKS to its folder.")


def notebook_defaults(name: str, namespace: Mapping | None = None) -> dict:
    """The literals of notebook ``name``'s ``parameters`` cell, as written in its file."""
    path = _notebook_file(name, namespace)
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
                    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}
    raise ParameterError(f"notebook {path.name} has no cell tagged 'parameters'.")


# Where a result is written, and on which device, does not change what a notebook shows.
_NOT_SETTINGS = ("device", "smoke", "output_dir", "checkpoint_dir")


@dataclass
class Run:
    """One execution of a notebook: its checked parameters, output folder and clock.

    ``at_defaults`` is True when every setting that changes a result has its default
    value and smoke mode is off: the notebooks only assert the conclusions their text
    states for the runs those conclusions were measured on.
    """

    name: str
    title: str
    params: dict
    out: Path
    smoke: bool
    at_defaults: bool
    started: float = field(default_factory=time.perf_counter)

    @property
    def seeds(self) -> list[int]:
        """``seed, seed + 1, ..., seed + n_seeds - 1`` (notebooks with several seeds)."""
        return list(range(self.params["seed"], self.params["seed"] + self.params.get("n_seeds", 1)))

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def show(self, fig, name: str) -> None:
        """Show ``fig`` below the cell and keep a copy as ``<out>/<name>.png``."""
        import matplotlib.pyplot as plt

        save_figure(fig, self.out, name)
        plt.show()

    def record(self, **results) -> None:
        """Write ``results`` (with the parameters, the run time and the verdicts printed) to
        ``<out>/metrics.json``, and print the headline and this run's own time.

        ``verdicts`` lists every sentence and phrase the :mod:`kdlab.experiments` verdict
        helpers made during the run: the smoke test checks that every verdict the notebook
        printed is one of them. Returns nothing, so the notebook's last line shows no value.
        """
        if "verdicts" in results:
            raise ParameterError("run.record(verdicts=...) is reserved: the verdicts are recorded automatically.")
        seconds = self.seconds
        record = {"notebook": self.name, "smoke": self.smoke, "at_defaults": self.at_defaults,
                  "seconds": round(seconds, 1), "params": self.params, **results,
                  "verdicts": experiments.verdicts_said()}
        path = write_metrics(self.out, record)
        line = course.headline(self.name, record)
        quoted = course.lesson(self.name).minutes
        print(f"{self.title}: {line + '. ' if line else ''}Results saved to {path}.")
        print(f"This run took {seconds / 60:.1f} min" + ("." if self.smoke else
              f" (the course quotes about {quoted:g} min at the default settings on a 2-core CPU)."))


def start(namespace: dict, name: str) -> Run:
    """Check a notebook's parameters, apply smoke mode and make its output folder.

    ``namespace`` is the notebook's ``globals()`` right after its ``parameters`` cell
    (and papermill's injected values). Each parameter must have the type of its default
    in the notebook file and follow its rule in :data:`kdlab.course.LESSONS`; in smoke
    mode the lesson's smoke values replace the parameters, in ``namespace`` too, so the
    cells below read them as usual. Returns the :class:`Run`.
    """
    lesson = course.lesson(name)
    defaults = notebook_defaults(lesson.name, namespace)
    types = {key: type(value) for key, value in defaults.items()}
    values = course.check_params(lesson.name, validate_params(namespace, types, notebook=lesson.name))
    smoke = smoke_mode(values.get("smoke", False))
    if smoke:
        values.update({"dataset": SMOKE_DATASET} if "dataset" in values else {}, **lesson.smoke, smoke=True)
    namespace.update(values)
    at_defaults = not smoke and all(values[k] == defaults[k] for k in defaults if k not in _NOT_SETTINGS)
    out = output_folder(values.get("output_dir", ""), lesson.name)
    run = Run(lesson.name, f"{lesson.number} · {lesson.title}", values, out, smoke, at_defaults)
    experiments.forget_verdicts()  # a fresh list for this run's metrics.json (see Run.record)
    mode = "smoke mode (seconds, on digits)" if smoke else ("default settings" if at_defaults else "your settings")
    print(f"{run.title}: {mode}; results go to {out}")
    return run


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


def checkpoint_folder(checkpoint_dir: str | os.PathLike) -> Path:
    """The folder teachers are kept in: ``$KDLAB_CHECKPOINTS`` in place of the notebooks' default
    ``checkpoint_dir`` (:data:`DEFAULT_CHECKPOINT_DIR`), as ``$KDLAB_RUNS`` replaces the default
    output folder; a folder passed explicitly (by papermill or ``kdlab run``) is kept."""
    if os.fspath(checkpoint_dir) == DEFAULT_CHECKPOINT_DIR and os.environ.get("KDLAB_CHECKPOINTS"):
        return Path(os.environ["KDLAB_CHECKPOINTS"])
    return Path(checkpoint_dir)


def load_or_train(path: Path, make: Callable[[], tuple[nn.Module, dict]], *,
                  device: str | torch.device = "cpu") -> tuple[nn.Module, dict, bool]:
    """The model saved at ``path``, or the one ``make()`` trains and returns with its metadata, saved there.

    Returns ``(model, metadata, loaded)``, the model in eval mode; ``loaded`` is False when
    ``make`` ran. A file is never overwritten: when another process (a parallel sweep point)
    saves first, its model and metadata are loaded and returned, so every process uses the same one.
    """
    if path.exists():
        model, meta = checkpoint.load(path, device=device)
        return model, meta, True
    model, meta = make()
    try:
        checkpoint.save(model, path, **meta)
    except FileExistsError:  # another process saved first: take its file, so all of them use one model
        model, meta = checkpoint.load(path, device=device)
    return model.eval(), meta, False


def teacher_path(checkpoint_dir: str | os.PathLike, dataset: str, smoke: bool = False) -> Path:
    """Where the teacher for ``dataset`` lives: ``<checkpoint_dir>/teacher_<dataset>[_smoke].pt``,
    the folder from :func:`checkpoint_folder`."""
    return checkpoint_folder(checkpoint_dir) / f"teacher_{dataset}{'_smoke' if smoke else ''}.pt"


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

    def train_now():
        print(f"No teacher checkpoint at {path}: training one now with notebook 01's recipe "
              f"({'seconds' if smoke else 'about a minute on a laptop CPU'}). Run notebook 01 to see how.")
        teacher, history = train_teacher(ds, smoke=smoke, seed=seed, device=device, progress=progress, **overrides)
        return teacher, {"dataset": ds.name, "smoke": smoke, "seed": seed,
                         "recipe": {**teacher_recipe(ds.name, smoke), **overrides},
                         "test_metrics": metrics.evaluate(teacher, ds.test), "train_seconds": history.total_seconds}

    teacher, meta, loaded = load_or_train(path, train_now)
    if loaded:
        acc = meta.get("test_metrics", {}).get("accuracy")
        print(f"Loaded the teacher from {path}" + (f" (test accuracy {acc:.2%})." if acc is not None else "."))
    return teacher, meta
