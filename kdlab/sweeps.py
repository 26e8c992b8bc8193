"""Sweeps: one notebook over a Cartesian grid of parameters, resumably, in parallel.

    kdlab sweep 04 -p temperature 1 2 4 -p seed 0 1 2 -j 2

* The sweep folder's name is a hash of the notebook, the grid, the fixed parameters and
  smoke mode, so the same command finds the same folder again. A point (one combination)
  has a folder of its own, ``temperature=2.0,seed=1/``, with ``parameters.json``; it is
  finished when the notebook wrote ``metrics.json`` there (atomically, at its end).
  Finished points are skipped and failed ones retried on the next call.
* The points run through one function, the *executor*: :func:`run_points` by default,
  each point in a process of its own, ``-j`` at once; ``sweep(executor=...)`` takes
  another with the same contract (a cluster, say).
* At the end, and after Ctrl-C, :func:`aggregate` writes ``results.csv``, one row per
  finished point (a metric the notebook could not define is an empty cell, with its
  reason in an ``undefined.<metric>`` column), and ``summary.png``; :mod:`kdlab.report`
  turns the folder into a page to share.

Ctrl-C stops the running points (their processes stop their kernels), keeps the finished
ones and raises :class:`~kdlab.interrupts.Interrupted` with the one line to show: how
many points finished, which did not, and the command that resumes the sweep.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import experiments, interrupts
from .errors import ParameterError
from .files import atomic_write, write_json, write_png
from .runner import (THREAD_VARIABLES, device_name, execute, failure, inspect_parameters, machine, now,
                     threads_per_job, validate_against, versions)


def point_name(point: Mapping[str, object]) -> str:
    safe = lambda v: "".join(c if c.isalnum() or c in ".-_" else "_" for c in str(v))
    return ",".join(f"{k}={safe(v)}" for k, v in point.items())


def sweep_folder(out: Path, notebook: Path, grid: Mapping[str, Sequence], fixed: Mapping, smoke: bool) -> Path:
    key = json.dumps({"notebook": notebook.name, "grid": grid, "fixed": fixed, "smoke": smoke}, sort_keys=True,
                     default=str)
    return out / f"sweep-{notebook.stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass(eq=False)
class Point:
    """One grid point of a sweep, ready to run: ``folder`` holds its ``parameters.json``
    (every value papermill passes, including ``output_dir``, which is ``folder``) and
    receives ``executed.ipynb``, ``metrics.json`` and the figures."""

    notebook: Path
    folder: Path
    parameters: dict

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def finished(self) -> bool:
        """Whether the notebook wrote its results (:func:`point_finished`)."""
        return point_finished(self.folder)


def point_finished(folder: Path) -> bool:
    """Whether the point in ``folder`` finished: its notebook wrote ``metrics.json``, atomically, at its end."""
    return (folder / "metrics.json").exists()


#: ``executor(points, jobs, done)``: see :func:`run_points`.
Executor = Callable[[Sequence[Point], int, Callable[[Point, "str | None"], None]], None]

def point_environment(threads: int | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a point's process: ``threads`` CPU threads for its kernel's torch
    (None: as many as torch picks, for a point that runs alone).

    Why: each kernel's torch otherwise starts one thread per core, so N kernels at once
    run N times as many threads as there are cores, and every parallel operation waits
    for threads another kernel has taken off the cores (measured in docs/BENCHMARKS.md,
    section 3). A thread count the user set in the environment is kept.
    """
    env = dict(os.environ if base is None else base)
    if threads is not None:
        for name in THREAD_VARIABLES:
            env.setdefault(name, str(threads))
    return env


# The point's process imports this module by name: `python -m kdlab.sweeps` would run it as
# __main__ after kdlab.cli had imported it as kdlab.sweeps, loading it twice.
_POINT_CODE = "import sys; from kdlab.sweeps import point_process; sys.exit(point_process(sys.argv[1], sys.argv[2]))"


def point_process(notebook: str, folder: str) -> int:
    """The body of a point's process (:func:`run_points` starts it): run ``notebook`` with
    ``folder/parameters.json``; 0 if it ran, 1 if it failed, with ``folder/error.txt`` saying
    why (first line: the cell's exception, then the traceback). SIGTERM stops it and its
    kernel at once (:func:`kdlab.interrupts.stop_on_sigterm`)."""
    interrupts.stop_on_sigterm()
    pdir = Path(folder)
    parameters = json.loads((pdir / "parameters.json").read_text())
    try:
        execute(Path(notebook), pdir / "executed.ipynb", parameters)
    except Exception as err:  # noqa: BLE001 - a failed point is recorded and retried next time
        text = f"{failure(err)}\n\n{traceback.format_exc()}"
        atomic_write(pdir / "error.txt", lambda fh: fh.write(text))
        return 1
    return 0


def point_error(folder: Path, returncode: int) -> str | None:
    """None if the point in ``folder`` finished; else one line saying why not (after its process ended)."""
    error_file = folder / "error.txt"
    if error_file.exists():
        return (error_file.read_text().strip().splitlines() or ["failed"])[0]
    if returncode != 0:
        return f"its process ended with exit code {returncode}"
    if not point_finished(folder):
        return "the notebook ran but wrote no metrics.json (a point is finished when its metrics.json exists)"
    return None


def run_points(points: Sequence[Point], jobs: int, done: Callable[[Point, str | None], None]) -> None:
    """The sweep's executor: run every point, at most ``jobs`` at once, each in a process of
    its own (:func:`point_process`), and call ``done(point, error)`` in this thread as each
    ends: ``error`` is None when the point finished, else one line saying why not.

    This is the one function that runs points; :func:`sweep` takes another with the same
    contract as ``executor=`` (a cluster, say). The contract: a point is finished when its
    ``metrics.json`` exists; a failed point may leave ``error.txt`` in its folder; on
    KeyboardInterrupt every running point is stopped before the exception goes on, so no
    point writes anything after that.
    """
    workers = max(1, min(jobs, len(points)))
    env = point_environment(threads_per_job(workers) if workers > 1 else None)
    queue, running = list(points), {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                point = queue.pop(0)
                (point.folder / "error.txt").unlink(missing_ok=True)  # a failure of an earlier call
                process = interrupts.start_process([sys.executable, "-c", _POINT_CODE, str(point.notebook),
                                                    str(point.folder)], env=env)
                running[process] = point
            ended = [process for process in running if process.poll() is not None]
            for process in ended:
                interrupts.forget_process(process)
                point = running.pop(process)
                done(point, point_error(point.folder, process.returncode))
            if not ended:
                time.sleep(0.2)  # points take seconds to minutes: polling costs nothing
    finally:  # Ctrl-C, or an error in done(): nothing keeps running behind the sweep's back
        interrupts.stop_processes(list(running))


def resume_command(argv: Sequence[str], out: Path, smoke: bool) -> str:
    """The command that continues a sweep: the one given, with the output folder and smoke
    mode spelled out where they came from defaults or the environment."""
    argv = list(argv) or ["kdlab", "sweep", "..."]
    if "--out" not in argv:
        argv += ["--out", str(Path(out).resolve())]
    if smoke and "--smoke" not in argv:
        argv.append("--smoke")
    return shlex.join(argv)


def _interrupted_sweep(points: Sequence[Point], resume: str) -> str:
    unfinished = [p.name for p in points if not p.finished]
    shown = ", ".join(unfinished[:3]) + (f" and {len(unfinished) - 3} more" if len(unfinished) > 3 else "")
    finished = len(points) - len(unfinished)
    kept = "results.csv holds the finished ones" if finished else "no results yet"
    return (f"interrupted: {finished} of {len(points)} points finished, {len(unfinished)} did not ({shown}); "
            f"{kept}. Resume with: {resume}")


class _SweepProgress:
    """A bar over the points on a terminal; elsewhere (a log file) one line per point."""

    def __init__(self, total: int, show: bool):
        from tqdm import tqdm

        self.total, self.count = total, 0
        self.bar = tqdm(total=total, desc="sweep", unit="point", disable=None if show else True)
        self.lines = show and self.bar.disable  # no terminal: tqdm draws nothing

    def update(self, point: Point, error: str | None) -> None:
        self.count += 1
        self.bar.update(1)
        if self.lines:
            print(f"[{self.count}/{self.total}] {point.name}: {'FAILED' if error else 'finished'}", flush=True)

    def close(self) -> None:
        self.bar.close()


def sweep(notebook: Path, grid: Mapping[str, Sequence], fixed: Mapping[str, object], *, smoke: bool, out: Path,
          jobs: int = 1, metric: str | None = None, progress: bool = True, argv: Sequence[str] = (),
          executor: Executor | None = None) -> tuple[Path, list[str]]:
    """Run the Cartesian ``grid`` (plus ``fixed`` parameters) of ``notebook``; returns the
    sweep folder and the failed points' names. Finished points are skipped.

    ``executor`` runs the points (default :func:`run_points`, ``jobs`` at once). ``argv``
    (the command as typed) makes the resume command that Ctrl-C prints: Ctrl-C stops the
    running points, writes ``results.csv`` for the finished ones and raises
    :class:`~kdlab.interrupts.Interrupted`.
    """
    if not grid:
        raise ParameterError("the grid is empty: give at least one -p NAME VALUE [VALUE ...].")
    for name, values in grid.items():
        if not values:
            raise ParameterError(f"parameter {name!r} has no values; the grid would be empty.")
    specs = {notebook: inspect_parameters(notebook)}  # parsed once for every value checked below
    checked_grid = {name: [validate_against({name: v}, specs)[notebook][name] for v in values]
                    for name, values in grid.items()}
    checked_fixed = validate_against(fixed, specs)[notebook]
    folder = sweep_folder(out, notebook, checked_grid, checked_fixed, smoke)
    folder.mkdir(parents=True, exist_ok=True)
    combos = [dict(zip(checked_grid, combo)) for combo in itertools.product(*checked_grid.values())]
    write_json(folder / "sweep.json", {"notebook": str(notebook), "grid": checked_grid, "fixed": checked_fixed,
                                        "smoke": smoke, "command": list(argv), "updated": now(),
                                        "versions": versions(), "device": device_name(), "machine": machine()})
    points = []
    for combo in combos:
        pdir = folder / point_name(combo)
        params = {**checked_fixed, **combo, "output_dir": str(pdir.resolve()), "smoke": smoke}
        if "checkpoint_dir" in specs[notebook] and "checkpoint_dir" not in params:
            params["checkpoint_dir"] = str((folder / "checkpoints").resolve())
        points.append(Point(Path(notebook), pdir, params))
    pending = [p for p in points if not p.finished]
    for point in pending:
        point.folder.mkdir(exist_ok=True)
        write_json(point.folder / "parameters.json", point.parameters)
    print(f"{len(points)} points, {len(points) - len(pending)} already finished, {len(pending)} to run", flush=True)
    failures: dict[str, str] = {}
    bar = _SweepProgress(len(pending), progress) if pending else None
    resume = resume_command(argv, out, smoke)

    def done(point: Point, error: str | None) -> None:
        if error is not None:
            failures[point.name] = error
        if bar is not None:
            bar.update(point, error)

    run = executor or run_points
    with interrupts.ctrl_c(lambda: f"Resume with: {resume}"):
        try:
            if pending:
                # The first point runs alone so the teacher it may train is saved before the others start.
                run(pending[:1], 1, done)
                run(pending[1:], jobs, done)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            aggregate(folder, metric=metric, figure=False)
            raise interrupts.Interrupted(_interrupted_sweep(points, resume)) from None
    if bar is not None:
        bar.close()
    aggregate(folder, metric=metric)
    for name, error in failures.items():
        print(f"FAILED {name}: {error} (see {folder / name / 'error.txt'}; re-run the same sweep to retry)")
    return folder, sorted(failures)


# --- the results table -----------------------------------------------------------------------------

def _flatten(metrics_: Mapping, prefix: str = "") -> dict:
    """Scalars of a ``metrics.json`` by dotted name; ``null`` (a metric not defined) is kept as
    None, and the reasons under ``"undefined"`` as ``undefined.<metric>``; other strings and
    lists are left out."""
    flat = {}
    for key, value in metrics_.items():
        name = f"{prefix}{key}"
        if name == "undefined" and isinstance(value, Mapping):
            flat.update({f"undefined.{k}": str(v) for k, v in value.items()})
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float)):
            flat[name] = value
    return flat


def is_number(value) -> bool:
    """A finite int or float, not a bool: a metric with a value."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ListValue(tuple):
    """A list-valued parameter in a point's row: hashable like a tuple, shown like the list it was."""

    def __repr__(self) -> str:
        return repr(list(self))


def _hashable(value):
    return ListValue(map(_hashable, value)) if isinstance(value, list) else value


def point_rows(folder: Path) -> list[dict]:
    """One dict per finished point of a sweep folder: its swept parameters (a list as a
    :class:`ListValue`, so rows can be grouped by it), then its metrics, then the private
    ``_folder`` and ``_params`` (the ``params`` its notebook recorded)."""
    names = list(json.loads((folder / "sweep.json").read_text())["grid"])
    rows = []
    for pdir in sorted(p for p in folder.iterdir() if point_finished(p)):
        params = json.loads((pdir / "parameters.json").read_text())
        row = {n: _hashable(params[n]) for n in names}
        recorded = json.loads((pdir / "metrics.json").read_text())
        row.update({k: v for k, v in _flatten(recorded).items() if k not in row})
        # Private columns ("_..."), never written to results.csv: the folder, and every parameter the notebook ran
        # with as it recorded them (for kdlab report's list of fixed parameters).
        row["_folder"], row["_params"] = pdir.name, recorded.get("params")
        rows.append(row)
    return rows


def numeric_columns(rows: Sequence[Mapping], exclude: Sequence[str] = ()) -> list[str]:
    """Columns whose values are numbers or missing (None: not defined), at least one a number."""
    columns = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("_")))
    return [c for c in columns if c not in exclude
            and all(r.get(c) is None or is_number(r.get(c)) or isinstance(r.get(c), float) for r in rows)
            and any(is_number(r.get(c)) for r in rows)]


def aggregate(folder: Path, metric: str | None = None, *, figure: bool = True) -> Path | None:
    """``results.csv`` (one row per finished point: its parameters, then every scalar metric,
    an empty cell where a metric is not defined) and ``summary.png`` (mean ± 95% CI of
    ``metric`` against the first swept parameter that is not ``seed``). Both are written
    atomically, so an interrupted sweep never leaves half a file. ``figure=False`` (after
    Ctrl-C, where drawing would keep the user waiting) removes an older ``summary.png`` instead,
    so no figure disagrees with the table."""
    names = list(json.loads((folder / "sweep.json").read_text())["grid"])
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in point_rows(folder)]
    if not rows:
        return None
    columns = names + sorted({k for r in rows for k in r} - set(names))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(folder / "results.csv", lambda fh: fh.write(table.getvalue()))
    numeric = numeric_columns(rows, exclude=names)
    metric = metric or ("distilled_accuracy" if "distilled_accuracy" in numeric else (numeric[0] if numeric else None))
    x_name = next((n for n in names if n != "seed"), None)
    if not figure:
        (folder / "summary.png").unlink(missing_ok=True)
    if not figure or metric is None or x_name is None or metric not in numeric:
        return folder / "results.csv"
    write_png(summary_figure(rows, x_name, metric, title="mean ± 95% CI over the other parameters"),
              folder / "summary.png")
    return folder / "results.csv"


def group_ci(rows: Sequence[dict], by: str, metric: str) -> list[dict]:
    """Mean, ``ci95`` and ``n`` of ``metric`` per value of ``by`` (over the seeds and any other
    parameter), sorted by that value (:func:`kdlab.experiments.summarize`). Rows where the
    metric is missing or not defined are left out of their group."""
    kept = [r for r in rows if is_number(r.get(metric))]
    return sorted(experiments.summarize(kept, [by], metric), key=lambda g: (isinstance(g[by], str), g[by]))


def summary_figure(rows: Sequence[dict], x_name: str, metric: str, *, unit=None, series: Sequence[str] = (),
                   title: str | None = None):
    """A matplotlib Figure: mean ± 95% CI of ``metric`` against ``x_name``, one line per
    combination of the parameters in ``series`` (the other swept ones that are not seed)."""
    # A bare Figure, not pyplot: no backend to pick and no global state, in a terminal or a notebook.
    from matplotlib.figure import Figure

    from .report import label, unit_for  # the report's number format, for the axis too

    unit = unit or unit_for(metric, [r.get(metric) for r in rows])
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.subplots()
    keys = sorted({r[x_name] for r in rows}, key=lambda v: (isinstance(v, str), v))
    categorical = any(not isinstance(k, (int, float)) for k in keys)  # strings and lists: one tick each
    groups = sorted({tuple(r[s] for s in series) for r in rows}, key=str) if series else [()]
    for group in groups:
        subset = [r for r in rows if tuple(r[s] for s in series) == group]
        stats = group_ci(subset, x_name, metric)
        xs = [keys.index(g[x_name]) if categorical else g[x_name] for g in stats]
        name = ", ".join(f"{s}={v}" for s, v in zip(series, group)) or None
        ax.errorbar(xs, [unit.scale * g["mean"] for g in stats], capsize=4, marker="o", label=name,
                    yerr=[0 if math.isnan(g["ci95"]) else unit.scale * g["ci95"] for g in stats])
    if categorical:
        ax.set_xticks(range(len(keys)), [str(k) for k in keys])
    elif len(keys) <= 12:
        ax.set_xticks(keys, [f"{k:g}" for k in keys])  # the grid's values, not matplotlib's round numbers
    suffix = f" ({unit.suffix.strip()})" if unit.suffix and f"({unit.suffix.strip()})" not in label(metric) else ""
    ax.set(xlabel=x_name, ylabel=label(metric) + suffix, title=title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig

