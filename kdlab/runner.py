"""Running notebooks with papermill: checked parameters, one execution, and runs.

* ``run_notebooks`` executes notebooks in order into a new run folder (never an
  existing one) with ``run.json`` recording parameters, versions, machine, times and
  each notebook's headline result (:func:`kdlab.course.headline` over its
  ``metrics.json``). One progress bar (:class:`CellProgress`) counts the run's cells
  and names the notebook and cell running; at the end one line per notebook gives its
  time and headline, or ``FAILED`` and the error (:func:`summary_lines`).
  :func:`resume_run` (``kdlab run --resume RUN_DIR``) runs, in the same folder, the
  notebooks of a run that did not finish.
* :func:`execute` runs one notebook; :mod:`kdlab.sweeps` runs one notebook over a grid
  of parameters, and :mod:`kdlab.report` renders a run or sweep folder as a page.

Parameters are checked before anything runs: their types against papermill's own
inspection of the notebook's ``parameters`` cell, with the rule the notebooks use
(:func:`kdlab.lab.parameter_value`), then their ranges with the course's rules
(:func:`kdlab.course.check_params`), so ``-p temperature -1`` stops at once.

Ctrl-C stops a run cleanly (:mod:`kdlab.interrupts`): the notebook running is stopped,
``run.json`` records what finished, and :class:`~kdlab.interrupts.Interrupted` carries
the one line to show, with the command that resumes.

Kernels are started with CurveZMQ transport encryption where the kernel supports it
(:func:`kernel_config`); ipykernel otherwise prints a warning per kernel on stderr.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import os
import platform
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import course, interrupts
from .errors import KdlabError, ParameterError
from .files import new_folder, write_json
from .lab import validate_params


def notebook_dir(start: Path | None = None) -> Path:
    """The kit's ``notebooks/`` folder: ``$KDLAB_NOTEBOOKS``, or found from the working directory."""
    if os.environ.get("KDLAB_NOTEBOOKS"):
        return Path(os.environ["KDLAB_NOTEBOOKS"])
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and any((folder / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            return folder / "notebooks"
    return here / "notebooks"


def sequence(folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order."""
    return sorted((folder or notebook_dir()).glob("[0-9][0-9]_*.ipynb"))


def resolve_notebook(name: str) -> Path:
    """A path, or a bare name like ``04_student_comparison`` / ``04``, to an existing notebook."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path.resolve()
    matches = [p for p in sequence() if p.stem == name or p.name == name or p.stem.startswith(f"{name}_")]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(p.name for p in sequence()) or "none found"
    raise FileNotFoundError(f"notebook {name!r} does not exist; available notebooks: {available}.")


def inspect_parameters(path: Path) -> dict[str, dict]:
    """``{name: {"type": <python type>, "default": value, "help": str}}`` from papermill's inspection."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    if not found:
        raise ParameterError(f"notebook {path.name} has no cell tagged 'parameters', so it cannot be parameterised.")
    out = {}
    for name, info in found.items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            default = info["default"]
        out[name] = {"type": type(default), "default": default, "help": info.get("help", "")}
    return out


def parse_value(text):
    """A command-line value as YAML: ``4`` -> int, ``4.0`` -> float, ``true`` -> bool, ``[8, 8]`` -> list."""
    import yaml

    if not isinstance(text, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def validate(params: Mapping[str, object], notebooks: Sequence[Path]) -> dict[Path, dict]:
    """Per notebook, the subset of ``params`` it declares, type-checked, then range-checked
    with the course's rules (:func:`kdlab.course.check_params`) for a notebook that is a
    lesson. A name that no notebook declares is an error listing the valid names."""
    return validate_against(params, {nb: inspect_parameters(nb) for nb in notebooks})


def validate_against(params: Mapping[str, object], specs: Mapping[Path, dict]) -> dict[Path, dict]:
    """:func:`validate` with ``{notebook: inspect_parameters(notebook)}`` already read, for a caller that
    checks many values: each inspection parses the notebook again."""
    known = sorted(set().union(*(s.keys() for s in specs.values())))
    for name in params:
        if name not in known:
            raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(known)}.")
    checked = {}
    for nb, spec in specs.items():
        typed = validate_params(params, {name: spec[name]["type"] for name in params if name in spec},
                                notebook=nb.name)
        # A notebook outside the course (a user's own, a test fixture) has no range rules.
        checked[nb] = course.check_params(nb.stem, typed) if nb.stem in course.LESSONS else typed
    return checked


def versions() -> dict:
    import papermill
    import torch
    import torchvision

    from . import __version__
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "papermill": papermill.__version__, "kdlab": __version__, "platform": platform.platform()}


def device_name() -> str:
    from . import devices
    return devices.describe(devices.resolve("auto"))


def _cpu_model() -> str:
    try:  # Linux names the model here; platform.processor() is often empty or just "x86_64" there
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (a container may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> dict:
    """What ran the notebooks, for run.json, sweep.json and reports: device, CPU, usable cores, OS."""
    return {"device": device_name(), "cpu": _cpu_model(), "cores": usable_cores(), "platform": platform.platform()}


#: The variables that set how many CPU threads a kernel's torch and BLAS start.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """CPU threads for each of ``jobs`` notebooks running at once: ``cores`` (default: :func:`usable_cores`)
    shared out, at least 1."""
    return max(1, (usable_cores() if cores is None else cores) // max(1, jobs))


def kernel_config():
    """traitlets settings for the kernels papermill starts: CurveZMQ keys where possible.

    Why: ipykernel 7 prints "Kernel is running over TCP without encryption ..." on stderr
    for every kernel started without keys. ``transport_encryption="auto"`` has
    jupyter_client provision keys when the kernelspec declares ``curve`` support, which
    removes the cause instead of hiding the message (and encrypts the kernel's traffic).
    An older jupyter_client without the setting, or a pyzmq built without libsodium
    (which refuses ``"auto"``), gets the previous behaviour.
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if "transport_encryption" not in KernelManager.class_trait_names() or not zmq.has("curve"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


def execute(notebook: Path, executed: Path, parameters: dict, hooks: Mapping | None = None) -> float:
    """Run one notebook with papermill in its own folder; returns the seconds it took.

    ``hooks`` are nbclient callbacks passed through papermill (``on_cell_start`` and the
    like, see :meth:`CellProgress.start`). papermill runs in a helper thread, so that
    Ctrl-C reaches kdlab rather than nbclient (:func:`kdlab.interrupts.call_in_thread`),
    with a kernel manager that Ctrl-C can stop.
    """
    import papermill

    t0 = time.perf_counter()
    interrupts.call_in_thread(
        papermill.execute_notebook, str(notebook), str(executed), parameters=parameters, cwd=str(notebook.parent),
        kernel_name="python3", progress_bar=False, log_output=False, config=kernel_config(),
        kernel_manager_class=interrupts.kernel_manager_class(), **(hooks or {}))
    return time.perf_counter() - t0


def _is_code(cell) -> bool:
    # The cells nbclient sends to the kernel: it skips markdown and empty code cells.
    return cell.get("cell_type") == "code" and bool(cell.get("source", "").strip())


class CellProgress:
    """One tqdm bar over every code cell of a run, described by the notebook and cell running
    (``03_temperature  cell 7/19``), so its count and time estimate cover the whole run.

    papermill's own bar covers one notebook and reads "Executing"; this one is fed by
    nbclient's ``on_cell_start`` hook instead. tqdm draws nothing when stderr is not a
    terminal (``disable=None``); one line per notebook is printed then, so a log still
    shows where a run is.
    """

    def __init__(self, notebooks: Sequence[Path], **tqdm_options):
        import nbformat
        from tqdm import tqdm

        # +1: papermill injects a code cell with the parameters; corrected from the real notebook on start.
        self.expected = {nb: sum(map(_is_code, nbformat.read(nb, as_version=4).cells)) + 1 for nb in notebooks}
        tqdm_options.setdefault("disable", None)  # None: no bar unless stderr is a terminal
        self.bar = tqdm(total=sum(self.expected.values()), unit="cell", **tqdm_options)
        self.stem, self.cells, self.counted, self.started = "", 0, 0, 0

    def start(self, notebook: Path) -> dict:
        """Begin ``notebook``; returns the hooks for :func:`execute`."""
        self.stem, self.cells, self.counted, self.started = notebook.stem, self.expected[notebook], 0, 0
        if self.bar.disable:
            print(f"{notebook.stem} ...", flush=True)
        self.bar.set_description(notebook.stem)
        return {"on_notebook_start": self._notebook_start, "on_cell_start": self._cell_start}

    def _notebook_start(self, notebook, **_):
        actual = sum(map(_is_code, notebook.cells))
        self.bar.total += actual - self.cells
        self.cells = actual

    def _cell_start(self, cell, cell_index, **_):
        if not _is_code(cell):
            return
        if self.started:  # the cell before this one has finished
            self.bar.update(1)
            self.counted += 1
        self.started += 1
        self.bar.set_description(f"{self.stem}  cell {self.started}/{self.cells}")

    def finish(self, message: str | None = None) -> None:
        """Count the notebook's cells as done (also those a failure skipped); print ``message``
        above the bar."""
        self.bar.update(self.cells - self.counted)
        if message:
            self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


def failure(err: BaseException) -> str:
    """One line saying why a notebook failed: the cell's exception, not papermill's wrapper."""
    if getattr(err, "ename", None):  # papermill's PapermillExecutionError carries the cell's exception
        evalue = str(err.evalue).strip().splitlines()
        return f"{err.ename}: {evalue[0] if evalue else ''} (cell [{err.exec_count}])"
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:500]


def notebook_headline(stem: str, output_dir: Path) -> str | None:
    """The lesson's headline from ``output_dir/metrics.json``; None if there is none to show."""
    path = output_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        return course.headline(stem, json.loads(path.read_text()))
    except (ValueError, TypeError):  # a value the template cannot format: the run still finished
        return None


def summary_lines(record: Mapping) -> list[str]:
    """One line per notebook of a run record: its time, then its headline or why it failed."""
    entries = record["notebooks"]
    width = max((len(Path(e["notebook"]).stem) for e in entries), default=0)
    lines = []
    for entry in entries:
        took = f"{entry['seconds'] / 60:5.1f} min" if "seconds" in entry else "    - min"
        if entry["status"] == "ok":
            text = entry.get("headline") or ""
        elif entry["status"] == "interrupted":
            text = "INTERRUPTED  (Ctrl-C)"
        else:
            text = f"FAILED  {entry.get('error', '')}  (traceback in {entry['notebook']})"
        lines.append(f"{Path(entry['notebook']).stem:<{width}}  {took}  {text}".rstrip())
    return lines


def now() -> str:
    """The local time to the second, as run.json and sweep.json record it."""
    return _dt.datetime.now().isoformat(timespec="seconds")


def run_notebooks(notebooks: Sequence[Path], params: Mapping[str, object], *, smoke: bool, out: Path,
                  argv: Sequence[str] = ()) -> tuple[Path, bool]:
    """Execute ``notebooks`` in order into a new run folder; returns ``(folder, all_ok)``.

    Prints a progress bar while it runs and :func:`summary_lines` at the end. Ctrl-C stops
    it cleanly and raises :class:`~kdlab.interrupts.Interrupted`; :func:`resume_run` (``kdlab
    run --resume FOLDER``) then runs what did not finish.
    """
    per_notebook = validate(params, notebooks)
    folder = new_folder(out, "run")
    record = {"command": list(argv), "start": now(), "versions": versions(), "device": device_name(),
              "machine": machine(), "smoke": smoke, "params": dict(params),
              "planned": [str(nb.resolve()) for nb in notebooks], "notebooks": []}
    write_json(folder / "run.json", record)
    return _run_into(folder, record, notebooks, per_notebook)


def resume_run(folder: Path) -> tuple[Path, bool]:
    """Run, in ``folder``, the notebooks of that run that did not finish (interrupted,
    failed or not started), with the run's own parameters; returns ``(folder, all_ok)``."""
    folder = Path(folder)
    path = folder / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume {str(folder)!r} is not a run folder: it has no run.json.")
    record = json.loads(path.read_text())
    if "planned" not in record:
        raise KdlabError(f"{path} does not list the run's notebooks (an older kdlab wrote it), so it cannot be "
                         "resumed; start a new run instead.")
    notebooks = [Path(p) for p in record["planned"]]
    for nb in notebooks:
        if not nb.exists():
            raise FileNotFoundError(f"notebook {str(nb)!r} of the run {str(folder)!r} no longer exists.")
    finished = {e["notebook"] for e in record["notebooks"] if e["status"] == "ok"}
    record["notebooks"] = [e for e in record["notebooks"] if e["notebook"] in finished]
    todo = [nb for nb in notebooks if nb.name not in finished]
    print(f"{len(notebooks)} notebooks, {len(notebooks) - len(todo)} already finished, {len(todo)} to run", flush=True)
    if not todo:
        return folder, True
    record["resumed"] = [*record.get("resumed", []), now()]
    record.pop("end", None)
    # Checked against every planned notebook: a parameter may belong only to one that has finished.
    return _run_into(folder, record, todo, validate(record["params"], notebooks))


def _interrupted_run(folder: Path, record: Mapping) -> str:
    """The one line after Ctrl-C stopped a run: what finished, what did not, how to resume."""
    status = {e["notebook"]: e["status"] for e in record["notebooks"]}
    groups: dict[str, list[str]] = {"finished": [], "failed": [], "stopped": [], "not run": []}
    for nb in [Path(p) for p in record["planned"]]:
        state = status.get(nb.name)
        groups[{"ok": "finished", "failed": "failed", "interrupted": "stopped"}.get(state, "not run")].append(nb.stem)
    said = "; ".join(f"{what} {', '.join(names)}" for what, names in groups.items() if names)
    return f"interrupted: {said}. Resume with: kdlab run --resume {shlex.quote(str(folder))}"


def _run_into(folder: Path, record: dict, notebooks: Sequence[Path], per_notebook: Mapping[Path, dict]) -> tuple[Path, bool]:
    ok = True
    smoke = record["smoke"]
    order = {Path(p).name: i for i, p in enumerate(record["planned"])}
    resume = f"Resume with: kdlab run --resume {shlex.quote(str(folder))}"
    progress = CellProgress(notebooks)
    entry: dict | None = None
    with interrupts.ctrl_c(lambda: resume):
        try:
            for nb in notebooks:
                chosen = dict(per_notebook[nb])
                declared = inspect_parameters(nb)
                if "checkpoint_dir" in declared and "checkpoint_dir" not in chosen:
                    # Each run keeps its own teacher, so a run never replaces the one the user trained.
                    chosen["checkpoint_dir"] = str((folder / "checkpoints").resolve())
                output_dir = (folder / nb.stem).resolve()
                chosen.update(output_dir=str(output_dir), smoke=smoke)
                entry = {"notebook": nb.name, "parameters": chosen, "status": "interrupted",
                         "error": "interrupted (Ctrl-C)"}
                t0 = time.perf_counter()
                try:
                    execute(nb, folder / nb.name, chosen, hooks=progress.start(nb))
                    entry.update(status="ok", headline=notebook_headline(nb.stem, output_dir))
                    entry.pop("error")
                    progress.finish()
                except Exception as err:  # noqa: BLE001 - recorded, reported, and the run goes on
                    ok = False
                    entry.update(status="failed", error=failure(err))
                    progress.finish(f"{nb.stem} FAILED: {entry['error']}")
                entry["seconds"] = time.perf_counter() - t0
                record["notebooks"].append(entry)
                entry = None
                write_json(folder / "run.json", record)
        except KeyboardInterrupt:
            progress.close()
            if entry is not None:  # the notebook that was running, or had just ended
                record["notebooks"].append(entry)
            record["notebooks"].sort(key=lambda e: order.get(e["notebook"], len(order)))
            write_json(folder / "run.json", record)
            raise interrupts.Interrupted(_interrupted_run(folder, record)) from None
        finally:
            progress.close()
    record["notebooks"].sort(key=lambda e: order.get(e["notebook"], len(order)))
    record["end"] = now()
    write_json(folder / "run.json", record)
    print("\n".join(summary_lines(record)), flush=True)
    return folder, ok and all(e["status"] == "ok" for e in record["notebooks"])
