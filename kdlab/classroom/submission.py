"""Grading one submission: its graded form, its run in a process of its own, and what happened.

:func:`prepare` builds the graded form of a student's notebook: each test cell becomes the
catalogue's check followed by the hidden tests
(:func:`~kdlab.classroom.release.with_hidden_tests`), the answers stay as the student wrote
them, outputs are cleared, and a cell injected after the ``parameters`` cell (as papermill
does) sets smoke mode and the notebook's own output and checkpoint folders.

:func:`run` executes it with :mod:`kdlab.classroom.worker`, in a new process with its own
kernel, in a temporary folder of its own (a copy of the notebook and of the smoke-mode
teacher), with errors allowed so that every test cell runs. The time limit is enforced
from here: past it, the worker's and the kernel's process groups are killed. It then reads
each test cell's grade line (:class:`~kdlab.classroom.Grade`); a test cell that never ran
gets 0 points and says why. It never raises for anything the submission does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import cells
from .catalogue import of_notebook
from .exercises import Grade
from .release import with_hidden_tests

# nbformat is imported where it is used, not here: every notebook's exercise checks import this
# package, and nbformat's schema validation can take seconds to import (docs/BENCHMARKS.md, section 8).
if TYPE_CHECKING:
    import nbformat

#: A submission larger than this is not read: a course notebook is well under a megabyte
#: once its outputs are cleared, and a few megabytes with them.
MAX_NOTEBOOK_BYTES = 64 * 2**20
#: Characters of a test cell's printed output that are kept (its end: the grade line is printed last).
KEEP_OUTPUT = 64_000
#: A submission that printed more than this many characters gets a note on its feedback page.
NOTE_OUTPUT = 1_000_000
#: Feedback longer than this is cut, so that a runaway error message cannot fill the gradebook.
MAX_FEEDBACK = 600

WORKER = Path(__file__).with_name("worker.py")


@dataclass(frozen=True)
class Row:
    """One row of ``grades.csv``: one student's grade on one exercise."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    feedback: str


@dataclass
class Submission:
    """What happened to one student's one notebook.

    ``status``: ``"graded"`` (it ran to the end), ``"missing"``, ``"not a notebook"``,
    ``"timed out"``, ``"kernel died"`` or ``"grader error"``; ``notes`` say anything else
    worth knowing (errors in cells, megabytes of output, files deleted).
    """

    student: str
    notebook: str
    status: str
    rows: list[Row]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(r.points for r in self.rows)

    @property
    def max_points(self) -> float:
        return sum(r.max_points for r in self.rows)


def one_line(text: str, limit: int = MAX_FEEDBACK) -> str:
    """``text`` on one line (for a CSV cell), cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def not_run(student: str, notebook: str, status: str, reason: str) -> Submission:
    """A submission that was not run: every exercise 0 points, with ``reason``."""
    reason = one_line(reason)
    rows = [Row(student, notebook, ex.id, 0.0, float(ex.points), reason) for ex in of_notebook(notebook)]
    return Submission(student, notebook, status, rows, notes=[reason])


# --- the graded form -------------------------------------------------------------------------------

@dataclass
class Prepared:
    """The graded form of a submission: the notebook, its test cells and where each cell came from."""

    notebook: nbformat.NotebookNode
    tests: dict[int, str]  # index of each test cell -> exercise id
    origin: list[int | None]  # each cell's index in the submission (None: the injected cell)

    def describe(self, index: int | None) -> str:
        """Cell ``index`` in the student's terms: ``cell 26 (the answer cell of most_confused)``."""
        if index is None or not 0 <= index < len(self.origin):
            return "a cell"
        cell, number = self.notebook.cells[index], self.origin[index]
        if number is None:
            return "the injected parameters cell"
        where = f"cell {number + 1}"
        found = cells.role(cell)
        if found:
            return f"{where} (the {found[1]} cell of {found[0]})"
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        return f"{where} ({first[:60]!r})" if first else where


def _inject_parameters(nb, values: dict) -> int | None:
    """Insert a cell setting ``values`` after the ``parameters`` cell, for the names that cell
    declares; returns its index, or None if there is no such cell."""
    at = next((i for i, c in enumerate(nb.cells)
               if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if at is None:
        return None
    declared = set(re.findall(r"^(\w+)\s*=", nb.cells[at].source, flags=re.M))
    lines = [f"{name} = {value!r}" for name, value in values.items() if name in declared]
    if not lines:
        return None
    import nbformat

    cell = nbformat.v4.new_code_cell("# Injected by kdlab classroom grade\n" + "\n".join(lines),
                                     metadata={"tags": ["injected-parameters"]})
    if nb.get("nbformat_minor", 0) < 5:
        cell.pop("id", None)  # cell ids came with nbformat 4.5
    nb.cells.insert(at + 1, cell)
    return at + 1


def prepare(nb, parameters: dict) -> Prepared:
    """The graded form of submission ``nb`` with ``parameters`` (e.g. ``smoke=True``) injected."""
    graded = with_hidden_tests(nb)
    for cell in graded.cells:
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
    injected = _inject_parameters(graded, parameters)
    origin: list[int | None] = list(range(len(graded.cells)))
    if injected is not None:
        origin = [i if i < injected else (None if i == injected else i - 1) for i in origin]
    tests = {}
    for index, cell in enumerate(graded.cells):
        found = cells.role(cell)
        if found and found[1] == "test":
            tests[index] = found[0]
    return Prepared(graded, tests, origin)


# --- running it ------------------------------------------------------------------------------------

_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def _kill_group(pgid: int | None) -> None:
    if pgid is None or not hasattr(os, "killpg"):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _kill_worker(proc: subprocess.Popen) -> None:
    if hasattr(os, "killpg"):
        _kill_group(proc.pid)  # the worker leads its own process group (start_new_session)
    else:  # no process groups (Windows): the kernel exits when it sees its parent gone
        proc.kill()


def stop_all() -> None:
    """Kill every worker still running (after Ctrl-C, or an error in the grader itself)."""
    with _running_lock:
        running = list(_running)
    for proc in running:
        if proc.poll() is None:
            _kill_worker(proc)


def _events(path: Path) -> list[dict]:
    events = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the last line of a worker killed mid-write is cut short
    return events


@dataclass
class Job:
    """One student's one notebook, to run in ``folder`` (a new, empty temporary folder)."""

    student: str
    notebook: str
    path: Path
    folder: Path
    teacher: Path | None  # a checkpoints folder to copy in
    timeout: float
    env: dict
    keep: int = KEEP_OUTPUT


def run(job: Job) -> Submission:
    """Grade ``job``'s submission (see the module docstring); never raises."""
    try:
        return _run(job)
    except Exception as err:  # noqa: BLE001 - a fault of the grader on one submission; the class goes on
        return not_run(job.student, job.notebook, "grader error",
                       f"did not run: the grader failed on this submission: {type(err).__name__}: {err}")


def _run(job: Job) -> Submission:
    t0 = time.perf_counter()
    size = job.path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return not_run(job.student, job.notebook, "not a notebook", f"not graded: the file has {size / 2**20:.0f} "
                       f"MB, more than the {MAX_NOTEBOOK_BYTES / 2**20:.0f} MB a notebook may have")
    work = job.folder / "work"  # the kernel's working folder
    checkpoints = work / "checkpoints"
    parameters = {"smoke": True, "output_dir": str(work / "output"), "checkpoint_dir": str(checkpoints)}
    import nbformat

    try:
        prepared = prepare(nbformat.read(job.path, as_version=4), parameters)
    except Exception as err:  # noqa: BLE001 - whatever is wrong with the file, the class is still graded
        first = (str(err).strip().splitlines() or [""])[0]
        return not_run(job.student, job.notebook, "not a notebook",
                       f"not graded: the file is not a valid notebook ({type(err).__name__}: {first})")
    work.mkdir(parents=True)
    if job.teacher is not None:
        shutil.copytree(job.teacher, checkpoints)
    notebook_file = work / job.path.name
    notebook_file.write_text(json.dumps(prepared.notebook), encoding="utf-8")
    results = job.folder / "results.jsonl"  # outside the kernel's folder
    spec = {"notebook": str(notebook_file), "cwd": str(work), "results": str(results),
            "watch": sorted(prepared.tests), "keep": job.keep}
    (job.folder / "job.json").write_text(json.dumps(spec), encoding="utf-8")
    env = {**job.env, "KDLAB_RUNS": str(work / "runs"), "KDLAB_CHECKPOINTS": str(checkpoints)}
    with open(job.folder / "worker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(WORKER), str(job.folder / "job.json")], cwd=job.folder,
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True)
        with _running_lock:
            _running.add(proc)
        timed_out = False
        try:
            proc.wait(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # also after Ctrl-C
            if proc.poll() is None:  # still running: kill it before proc.wait(), while its id cannot be reused
                _kill_worker(proc)
            # The kernel has a process group of its own: end it, and anything the submission started.
            _kill_group(next((e["kernel"] for e in _events(results) if "kernel" in e), None))
            proc.wait()
            with _running_lock:
                _running.discard(proc)
    deleted = _deleted(work, notebook_file, job.teacher, checkpoints)
    return _outcome(job, prepared, _events(results), timed_out, proc.returncode, time.perf_counter() - t0, deleted)


def _deleted(work: Path, notebook_file: Path, teacher: Path | None, checkpoints: Path) -> list[str]:
    if not work.exists():
        return ["its whole working folder"]
    gone = [] if notebook_file.exists() else ["its own notebook file"]
    if teacher is not None and any(not (checkpoints / p.name).exists() for p in teacher.iterdir()):
        gone.append("the teacher checkpoint")
    return gone


def _last_grade(text: str, exercise_id: str) -> Grade | None:
    # The autograder prints its line last; a learner's output before it cannot pass for it.
    found = [g for g in map(Grade.parse, text.splitlines()) if g is not None and g.exercise == exercise_id]
    return found[-1] if found else None


def _why_not_run(job: Job, prepared: Prepared, events: list[dict], timed_out: bool,
                 returncode: int | None) -> tuple[str, str]:
    """``(status, reason)``: how the run ended, and why a test cell it did not reach got no points."""
    end = next((e for e in events if "end" in e), None)
    finished = {e["cell"] for e in events if "cell" in e and "end" not in e}
    started = [e["start"] for e in events if "start" in e]
    running = started[-1] if started and started[-1] not in finished else None
    if timed_out:
        where = f"in {prepared.describe(running)}" if running is not None else "before its first cell ran"
        return "timed out", f"did not run: the notebook ran past its {job.timeout:g} s time limit {where}"
    if end is not None and end["end"] == "ok":
        return "graded", "did not run"
    if end is not None and end["end"] == "died":
        cell = end.get("cell")
        where = f"in {prepared.describe(cell)}" if cell is not None else "before its first cell ran"
        return "kernel died", (f"did not run: the kernel died {where}: the code exited, was killed, or ran out of "
                               "memory")
    detail = end.get("reason", "").strip().splitlines()[-1:] if end else []
    if not detail:
        log = (job.folder / "worker.log").read_bytes()[-500:].decode("utf-8", "replace").strip().splitlines()
        detail = [f"its process ended with exit code {returncode}", *log[-1:]]
    return "grader error", f"did not run: the grader could not run the notebook: {' '.join(detail)}"


def _outcome(job: Job, prepared: Prepared, events: list[dict], timed_out: bool, returncode: int | None,
             seconds: float, deleted: list[str]) -> Submission:
    status, reason = _why_not_run(job, prepared, events, timed_out, returncode)
    finished = {e["cell"]: e for e in events if "cell" in e and "end" not in e}
    rows = []
    for ex in of_notebook(job.notebook):
        indices = [i for i, exercise_id in prepared.tests.items() if exercise_id == ex.id]
        points, feedback = 0.0, reason
        if not indices:
            feedback = ("not graded: the submission has no test cell for this exercise (was it deleted, or its "
                        "metadata removed?)")
        for index in (i for i in indices if i in finished):
            ran = finished[index]
            grade = _last_grade(ran.get("stdout", ""), ex.id)
            if grade is not None:
                points, feedback = min(max(grade.points, 0.0), float(ex.points)), grade.feedback
            elif ran.get("error"):
                feedback = f"the test cell stopped with {ran['error']} before the autograder ran"
            else:
                feedback = "the test cell ran but printed no grade"
        rows.append(Row(job.student, job.notebook, ex.id, points, float(ex.points), one_line(feedback)))
    notes = [] if status == "graded" else [reason.replace("did not run: ", "", 1)]
    errors = [(i, e["error"]) for i, e in sorted(finished.items()) if e.get("error") and i not in prepared.tests]
    if errors:
        first, error = errors[0]
        notes.append(f"{len(errors)} cell(s) outside the test cells stopped with an error; the first, "
                     f"{prepared.describe(first)}: {one_line(error, 200)}")
    end = next((e for e in events if "end" in e), None)
    chars = end.get("chars", 0) if end else sum(e.get("chars", 0) for e in finished.values())
    if chars > NOTE_OUTPUT:
        notes.append(f"it printed {chars / 1e6:.1f} million characters of output; the grader kept only the end "
                     "of each test cell's output")
    if deleted:
        notes.append(f"it deleted files in its working folder: {', '.join(deleted)}")
    return Submission(job.student, job.notebook, status, rows, seconds, notes)
