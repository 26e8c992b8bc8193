"""Running the notebooks with papermill: runs, sweeps, results tables and reports.

* ``run_notebooks`` executes notebooks in order into a new run folder (never an
  existing one) with ``run.json`` recording parameters, versions, device, times and
  each notebook's headline result (:func:`kdlab.course.headline` over its
  ``metrics.json``). One progress bar (:class:`CellProgress`) counts the run's cells
  and names the notebook and cell running; at the end one line per notebook gives its
  time and headline, or ``FAILED`` and the error (:func:`summary_lines`).
* ``sweep`` executes one notebook over a Cartesian grid of parameters, in parallel,
  resumably: its folder name is a hash of the grid, a point is done when its
  ``metrics.json`` exists, and a failed point is retried on the next call.
* ``aggregate`` writes ``results.csv`` and a mean ± 95% CI summary figure;
  ``report`` renders a run or sweep folder as Markdown and HTML (``kdlab.book``
  renders a run's executed notebooks as a website).

Parameters are checked before anything runs: their types against papermill's own
inspection of the notebook's ``parameters`` cell, with the rule the notebooks use
(:func:`kdlab.lab.parameter_value`), then their ranges with the course's rules
(:func:`kdlab.course.check_params`), so ``-p temperature -1`` stops at once.

Kernels are started with CurveZMQ transport encryption where the kernel supports it
(:func:`kernel_config`); ipykernel otherwise prints a warning per kernel on stderr.
"""

from __future__ import annotations

import ast
import csv
import datetime as _dt
import hashlib
import html
import io
import itertools
import json
import math
import os
import platform
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from . import course
from .errors import ParameterError
from .experiments import summarize
from .files import atomic_write, new_folder, write_json
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
    specs = {nb: inspect_parameters(nb) for nb in notebooks}
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
    like, see :meth:`CellProgress.start`).
    """
    import papermill

    t0 = time.perf_counter()
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, cwd=str(notebook.parent),
                               kernel_name="python3", progress_bar=False, log_output=False,
                               config=kernel_config(), **(hooks or {}))
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
        else:
            text = f"FAILED  {entry.get('error', '')}  (traceback in {entry['notebook']})"
        lines.append(f"{Path(entry['notebook']).stem:<{width}}  {took}  {text}".rstrip())
    return lines


def run_notebooks(notebooks: Sequence[Path], params: Mapping[str, object], *, smoke: bool, out: Path,
                  argv: Sequence[str] = ()) -> tuple[Path, bool]:
    """Execute ``notebooks`` in order into a new run folder; returns ``(folder, all_ok)``.

    Prints a progress bar while it runs and :func:`summary_lines` at the end.
    """
    per_notebook = validate(params, notebooks)
    folder = new_folder(out, "run")
    record = {"command": list(argv), "start": _dt.datetime.now().isoformat(timespec="seconds"),
              "versions": versions(), "device": device_name(), "smoke": smoke, "notebooks": []}
    write_json(folder / "run.json", record)
    ok = True
    progress = CellProgress(notebooks)
    try:
        for nb in notebooks:
            chosen = dict(per_notebook[nb])
            declared = inspect_parameters(nb)
            if "checkpoint_dir" in declared and "checkpoint_dir" not in chosen:
                # Each run keeps its own teacher, so a run never replaces the one the user trained.
                chosen["checkpoint_dir"] = str((folder / "checkpoints").resolve())
            output_dir = (folder / nb.stem).resolve()
            chosen.update(output_dir=str(output_dir), smoke=smoke)
            entry = {"notebook": nb.name, "parameters": chosen}
            t0 = time.perf_counter()
            try:
                execute(nb, folder / nb.name, chosen, hooks=progress.start(nb))
                entry.update(status="ok", headline=notebook_headline(nb.stem, output_dir))
                progress.finish()
            except Exception as err:  # noqa: BLE001 - recorded, reported, and the run goes on
                ok = False
                entry.update(status="failed", error=failure(err))
                progress.finish(f"{nb.stem} FAILED: {entry['error']}")
            entry["seconds"] = time.perf_counter() - t0
            record["notebooks"].append(entry)
            write_json(folder / "run.json", record)
    finally:
        progress.close()
    record["end"] = _dt.datetime.now().isoformat(timespec="seconds")
    write_json(folder / "run.json", record)
    print("\n".join(summary_lines(record)), flush=True)
    return folder, ok


# --- sweeps ---------------------------------------------------------------------------------

def point_name(point: Mapping[str, object]) -> str:
    safe = lambda v: "".join(c if c.isalnum() or c in ".-_" else "_" for c in str(v))
    return ",".join(f"{k}={safe(v)}" for k, v in point.items())


def sweep_folder(out: Path, notebook: Path, grid: Mapping[str, Sequence], fixed: Mapping, smoke: bool) -> Path:
    key = json.dumps({"notebook": notebook.name, "grid": grid, "fixed": fixed, "smoke": smoke}, sort_keys=True,
                     default=str)
    return out / f"sweep-{notebook.stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _run_point(notebook: str, folder: str, parameters: dict) -> tuple[str, str | None]:
    """Worker: run one grid point; returns (folder, error text or None)."""
    folder_path = Path(folder)
    try:
        execute(Path(notebook), folder_path / "executed.ipynb", parameters)
        (folder_path / "error.txt").unlink(missing_ok=True)
        return folder, None
    except Exception:  # noqa: BLE001 - a failed point is recorded and retried next time
        text = traceback.format_exc()
        atomic_write(folder_path / "error.txt", lambda fh: fh.write(text))
        return folder, text.strip().splitlines()[-1]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """CPU threads for each of ``jobs`` notebooks running at once: the cores shared out, at least 1."""
    if cores is None:  # the cores this process may run on (a container may allow fewer than the machine has)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, jobs))


def _share_cores(threads: int) -> None:
    """Worker initializer: kernels started by this worker use ``threads`` CPU threads.

    Why: each kernel's torch otherwise starts one thread per core, so N kernels at once
    run N times as many threads as there are cores, and every parallel operation waits
    for threads another kernel has taken off the cores (measured in docs/BENCHMARKS.md,
    section 3). A thread count the user set in the environment is kept.
    """
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))


def sweep(notebook: Path, grid: Mapping[str, Sequence], fixed: Mapping[str, object], *, smoke: bool, out: Path,
          jobs: int = 1, metric: str | None = None, progress: bool = True) -> tuple[Path, list[str]]:
    """Run the Cartesian ``grid`` (plus ``fixed`` parameters) of ``notebook``; returns the
    sweep folder and the failed points' names. Finished points are skipped."""
    if not grid:
        raise ParameterError("the grid is empty: give at least one -p NAME VALUE [VALUE ...].")
    for name, values in grid.items():
        if not values:
            raise ParameterError(f"parameter {name!r} has no values; the grid would be empty.")
    spec = inspect_parameters(notebook)
    checked_grid = {name: [validate({name: v}, [notebook])[notebook][name] for v in values]
                    for name, values in grid.items()}
    checked_fixed = validate(fixed, [notebook])[notebook]
    folder = sweep_folder(out, notebook, checked_grid, checked_fixed, smoke)
    folder.mkdir(parents=True, exist_ok=True)
    points = [dict(zip(checked_grid, combo)) for combo in itertools.product(*checked_grid.values())]
    write_json(folder / "sweep.json", {"notebook": str(notebook), "grid": checked_grid, "fixed": checked_fixed,
                                        "smoke": smoke, "versions": versions(), "device": device_name()})
    pending = []
    for point in points:
        pdir = folder / point_name(point)
        if (pdir / "metrics.json").exists():
            continue
        pdir.mkdir(exist_ok=True)
        params = {**checked_fixed, **point, "output_dir": str(pdir.resolve()), "smoke": smoke}
        if "checkpoint_dir" in spec and "checkpoint_dir" not in params:
            params["checkpoint_dir"] = str((folder / "checkpoints").resolve())
        write_json(pdir / "parameters.json", params)
        pending.append((str(notebook), str(pdir), params))
    print(f"{len(points)} points, {len(points) - len(pending)} already finished, {len(pending)} to run", flush=True)
    failures: dict[str, str] = {}
    bar = None
    if progress and pending:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(pending), desc="sweep", unit="point")

    def done(result):
        pdir, error = result
        if error is not None:
            failures[Path(pdir).name] = error
        if bar is not None:
            bar.update(1)

    if pending:
        # The first point runs alone so the teacher it may train is saved before the others start.
        done(_run_point(*pending[0]))
        rest = pending[1:]
        if jobs > 1 and len(rest) > 1:
            with ProcessPoolExecutor(max_workers=jobs, initializer=_share_cores,
                                     initargs=(threads_per_job(jobs),)) as pool:
                for future in as_completed([pool.submit(_run_point, *args) for args in rest]):
                    done(future.result())
        else:
            for args in rest:
                done(_run_point(*args))
    if bar is not None:
        bar.close()
    aggregate(folder, metric=metric)
    for name, error in failures.items():
        print(f"FAILED {name}: {error} (see {folder / name / 'error.txt'}; re-run the same sweep to retry)")
    return folder, sorted(failures)


def _flatten(metrics: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float)):
            flat[name] = value
    return flat


def aggregate(folder: Path, metric: str | None = None) -> Path | None:
    """``results.csv`` (one row per finished point: its parameters, then every scalar metric)
    and ``summary.png`` (mean ± 95% CI of ``metric`` against the first swept non-seed parameter)."""
    meta = json.loads((folder / "sweep.json").read_text())
    names = list(meta["grid"])
    rows = []
    for pdir in sorted(p for p in folder.iterdir() if (p / "metrics.json").exists()):
        params = json.loads((pdir / "parameters.json").read_text())
        row = {n: params[n] for n in names}
        row.update({k: v for k, v in _flatten(json.loads((pdir / "metrics.json").read_text())).items() if k not in row})
        rows.append(row)
    if not rows:
        return None
    columns = names + sorted({k for r in rows for k in r} - set(names))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(folder / "results.csv", lambda fh: fh.write(table.getvalue()))
    numeric = [c for c in columns if c not in names and all(isinstance(r.get(c), (int, float)) and not isinstance(
        r.get(c), bool) for r in rows)]
    metric = metric or ("distilled_accuracy" if "distilled_accuracy" in numeric else (numeric[0] if numeric else None))
    x_name = next((n for n in names if n != "seed"), None)
    if metric is None or x_name is None or metric not in numeric:
        return folder / "results.csv"
    summary_figure(rows, x_name, metric, folder / "summary.png")
    return folder / "results.csv"


def group_ci(rows: Sequence[dict], by: str, metric: str) -> list[dict]:
    """Mean, ``ci95`` and ``n`` of ``metric`` per value of ``by`` (over the seeds and any other
    parameter), sorted by that value (:func:`kdlab.experiments.summarize`)."""
    return sorted(summarize(rows, [by], metric), key=lambda g: (isinstance(g[by], str), g[by]))


def summary_figure(rows: Sequence[dict], x_name: str, metric: str, path: Path) -> None:
    # A bare Figure, not pyplot: no backend to pick and no global state, in a terminal or a notebook.
    from matplotlib.figure import Figure

    stats = group_ci(rows, x_name, metric)
    keys = [g[x_name] for g in stats]
    xs = list(range(len(keys))) if any(isinstance(k, str) for k in keys) else keys
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.errorbar(xs, [g["mean"] for g in stats], yerr=[0 if math.isnan(g["ci95"]) else g["ci95"] for g in stats],
                marker="o", capsize=4)
    if xs != keys:
        ax.set_xticks(xs, [str(k) for k in keys])
    ax.set(xlabel=x_name, ylabel=metric, title=f"{metric}: mean ± 95% CI over the other parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --- reports --------------------------------------------------------------------------------

def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report(folder: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for a run or sweep folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"RUN_DIR {str(folder)!r} does not exist.")
    sections: list[tuple[str, list[str], list[list[str]]]] = []  # (title, header, rows)
    if (folder / "sweep.json").exists():
        meta = json.loads((folder / "sweep.json").read_text())
        title = f"Sweep of {Path(meta['notebook']).name}"
        results = folder / "results.csv"
        if results.exists():
            with open(results) as fh:
                rows = [{k: parse_value(v) for k, v in r.items()} for r in csv.DictReader(fh)]
            names = list(meta["grid"])
            x_name = next((n for n in names if n != "seed"), names[0])
            key_metrics = [m for m in ("distilled_accuracy", "scratch_accuracy", "gain_pp", "gap_closed")
                           if m in rows[0]]
            key_metrics = key_metrics or [c for c in rows[0] if c not in names][:4]
            for m in key_metrics:
                sections.append((f"{m} by {x_name} (mean ± 95% CI)", [x_name, "mean", "± 95% CI", "n"],
                                 [[_fmt(g[x_name]), _fmt(g["mean"]), _fmt(g["ci95"]), str(g["n"])]
                                  for g in group_ci(rows, x_name, m)]))
            shown = names + key_metrics
            sections.append(("All points", shown, [[_fmt(r.get(c, "")) for c in shown] for r in rows]))
        failed = [p.name for p in folder.iterdir() if (p / "error.txt").exists()]
        if failed:
            sections.append(("Failed points", ["point"], [[f] for f in sorted(failed)]))
    elif (folder / "run.json").exists():
        meta = json.loads((folder / "run.json").read_text())
        title = f"Run {folder.name}"
        rows = []
        for entry in meta["notebooks"]:
            mfile = folder / Path(entry["notebook"]).stem / "metrics.json"
            flat = _flatten(json.loads(mfile.read_text())) if mfile.exists() else {}
            scalars = {k: v for k, v in flat.items() if "." not in k}
            rows.append([entry["notebook"], entry["status"], _fmt(entry.get("seconds", "")),
                         "; ".join(f"{k}={_fmt(v)}" for k, v in sorted(scalars.items()))])
        sections.append(("Notebooks", ["notebook", "status", "seconds", "metrics"], rows))
    else:
        raise FileNotFoundError(f"{str(folder)!r} is neither a run folder (run.json) nor a sweep folder (sweep.json).")
    figures = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
    md = [f"# {title}", "", f"Folder: `{folder}`", ""]
    for name, header, rows in sections:
        md += [f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    if figures:
        md += ["## Figures", ""] + [f"![{f}]({f.as_posix()})" for f in figures]
    md_path = atomic_write(folder / "report.md", lambda fh: fh.write("\n".join(md) + "\n"))
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{esc(title)}</title>",
             ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
              "td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}</style>"), f"<h1>{esc(title)}</h1>"]
    for name, header, rows in sections:
        parts.append(f"<h2>{esc(name)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [f"<figure><img src='{esc(f.as_posix())}'><figcaption>{esc(str(f))}</figcaption></figure>"
                  for f in figures]
    html_path = atomic_write(folder / "report.html", lambda fh: fh.write("\n".join(parts) + "\n"))
    return md_path, html_path
