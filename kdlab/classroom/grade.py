"""``kdlab classroom grade SUBMISSIONS --out grades.csv``: grade a class's notebooks.

The layout is ``SUBMISSIONS/<student>/<notebook>.ipynb``, with the course's file names
(``03_temperature.ipynb``). Every student is expected to hand in the notebooks named with
``notebooks=`` (``--notebooks 03 08``), or else every catalogued notebook that any student
handed in; hidden files and folders are ignored. A missing notebook gets 0 points per
exercise, "missing".

Each student's notebook runs headless in smoke mode, in a process, a kernel and a
temporary folder of its own, under a time limit, and each exercise's test cell is graded
by the catalogue's autograder tests (:mod:`kdlab.classroom.submission`). ``jobs`` runs
that many at once. The smoke-mode teacher that every notebook after 01 distils from is
trained once per call and copied into each folder.

:func:`grade` writes ``grades.csv`` (one row per student × exercise: :data:`COLUMNS`) and
one HTML page per student in ``<out stem>_feedback/``, and prints a line per student.
Nothing in SUBMISSIONS is written to, and an existing grades file or feedback page is only
replaced with ``force=True``.

This is isolation, not a security sandbox: a submission runs with the grader's user
rights, and can read and write whatever the grader's account can.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import html
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .. import course, runner
from ..errors import ParameterError
from ..files import atomic_write
from . import submission
from .catalogue import EXERCISES
from .submission import KEEP_OUTPUT, Job, Row, Submission

#: The columns of ``grades.csv``, in order.
COLUMNS = ("student", "notebook", "exercise", "points", "max_points", "feedback")
#: Seconds each notebook may run. A notebook's smoke run takes well under a minute
#: (docs/INSTRUCTORS.md); the margin is for a slow machine and for ``-j`` sharing the cores.
DEFAULT_TIMEOUT = 300.0


@dataclass
class ClassGrades:
    """What :func:`grade` wrote (``csv``, the ``feedback`` folder) and every submission's outcome."""

    csv: Path
    feedback: Path
    submissions: list[Submission]

    @property
    def rows(self) -> list[Row]:
        return [row for sub in self.submissions for row in sub.rows]

    def totals(self) -> dict[str, tuple[float, float]]:
        """``{student: (points, max_points)}`` over every expected notebook."""
        out: dict[str, tuple[float, float]] = {}
        for sub in self.submissions:
            points, max_points = out.get(sub.student, (0.0, 0.0))
            out[sub.student] = (points + sub.points, max_points + sub.max_points)
        return out


# --- what to grade -------------------------------------------------------------------------------

def course_notebooks() -> list[str]:
    """The notebooks that have exercises, in course order (stems, e.g. ``"03_temperature"``)."""
    return list(dict.fromkeys(ex.notebook for ex in EXERCISES))


def notebook_stem(name: str) -> str:
    """The course notebook ``name`` means: ``"03"``, ``"03_temperature"`` or ``"03_temperature.ipynb"``."""
    known = course_notebooks()
    stem = name.removesuffix(".ipynb")
    matches = [s for s in known if s == stem or s.startswith(f"{stem}_")]
    if len(matches) != 1:
        raise ParameterError(f"--notebooks {name!r} is not a course notebook with exercises; accepted: "
                             f"{', '.join(known)} (or their numbers, e.g. 03).")
    return matches[0]


def students(submissions: Path) -> list[Path]:
    """The students' folders in SUBMISSIONS, by name; hidden folders are left out."""
    return sorted(p for p in Path(submissions).iterdir() if p.is_dir() and not p.name.startswith("."))


def expected_notebooks(submissions: Path, notebooks: Sequence[str] | None = None) -> list[str]:
    """The notebooks every student must hand in: those named, else every catalogued one found."""
    if notebooks:
        chosen = {notebook_stem(str(n)) for n in notebooks}
    else:
        chosen = {stem for folder in students(submissions) for stem in course_notebooks()
                  if (folder / f"{stem}.ipynb").is_file()}
    return [stem for stem in course_notebooks() if stem in chosen]


def feedback_folder(out: Path) -> Path:
    """Where the feedback pages of ``out`` go: ``grades.csv`` -> ``grades_feedback/``."""
    return out.with_name(f"{out.stem}_feedback")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_outputs(submissions: Path, out: Path, force: bool) -> None:
    pages = feedback_folder(out)
    for path, what in ((out, "--out"), (pages, "the feedback folder")):
        if _inside(path, submissions):
            raise ParameterError(f"{what} {str(path)!r} is inside SUBMISSIONS={str(submissions)!r}; grading never "
                                 "writes into the submissions: choose a place outside it.")
    if force:
        return
    if out.exists():
        raise ParameterError(f"--out {str(out)!r} already exists; grading never writes over a file: choose another "
                             "name, or pass --force to replace it.")
    if pages.exists() and (not pages.is_dir() or any(pages.iterdir())):
        raise ParameterError(f"the feedback folder {str(pages)!r} (named after --out) already exists and is not "
                             "empty: choose another --out, or pass --force to replace the pages in it.")


def _missing(folder: Path, stem: str) -> Submission:
    others = sorted(p.name for p in folder.glob("*.ipynb"))
    found = f" (found: {', '.join(others)})" if others else ""
    return submission.not_run(folder.name, stem, "missing", f"missing: no {stem}.ipynb in the student's folder{found}")


def _smoke_teacher(folder: Path) -> None:
    """Train the smoke-mode teacher into ``folder``, where the notebooks look for it."""
    from .. import data, lab

    with contextlib.redirect_stdout(io.StringIO()):  # its "training one now" message is meant for a notebook
        lab.load_or_train_teacher(data.load(course.SMOKE_DATASET, seed=0), folder, smoke=True, progress=False)


def _environment(jobs: int) -> dict:
    env = dict(os.environ)
    env.update(KDLAB_SMOKE="1", PYTHONUNBUFFERED="1")
    env.setdefault("MPLBACKEND", "Agg")
    for name in runner.THREAD_VARIABLES:  # each kernel gets its share of the cores, as in sweeps.sweep
        env.setdefault(name, str(runner.threads_per_job(jobs)))
    return env


# --- the gradebook -------------------------------------------------------------------------------

def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """``grades.csv``: :data:`COLUMNS`, one row per student × exercise, written atomically."""
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.student, r.notebook, r.exercise, f"{r.points:g}", f"{r.max_points:g}", r.feedback])
    return atomic_write(path, lambda fh: fh.write(table.getvalue()))


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
          "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
          "vertical-align:top}td.n{text-align:right;white-space:nowrap}.full{background:#eefbea}"
          ".none{background:#fdeeee}.note{color:#8a4b00}")


def feedback_page(student: str, subs: Sequence[Submission], *, when: str = "") -> str:
    """One student's feedback as a self-contained HTML page: no scripts, nothing fetched."""
    esc = html.escape
    points, max_points = sum(s.points for s in subs), sum(s.max_points for s in subs)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Feedback for {esc(student)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Feedback for {esc(student)}</h1>",
             f"<p><strong>Total: {points:g} of {max_points:g} points.</strong> Each exercise is all or nothing: the "
             "autograder tries more inputs and edge cases than the check in the notebook does.</p>"]
    for sub in subs:
        parts.append(f"<h2>{esc(sub.notebook)}: {sub.points:g} of {sub.max_points:g} points</h2>")
        parts += [f'<p class="note">{esc(note)}</p>' for note in sub.notes]
        parts.append("<table><tr><th>exercise</th><th>points</th><th>feedback</th></tr>")
        for r in sub.rows:
            parts.append(f'<tr class="{"full" if r.points >= r.max_points else "none"}">'
                         f"<td><code>{esc(r.exercise)}</code></td><td class=\"n\">{r.points:g} / {r.max_points:g}</td>"
                         f"<td>{esc(r.feedback)}</td></tr>")
        parts.append("</table>")
    parts += [f"<p>Graded by <code>kdlab classroom grade</code>{esc(when)}. To practise an exercise again, run "
              "<code>kdlab.checks.hint(\"&lt;exercise&gt;\")</code> in its notebook.</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _page_name(student: str) -> str:
    # A student's folder name is already a valid file name; a leading dot would only hide the page.
    return f"{student.lstrip('.') or 'student'}.html"


def _write(ordered: list[Submission], out: Path) -> ClassGrades:
    pages = feedback_folder(out)
    write_csv([row for sub in ordered for row in sub.rows], out)
    when = f" on {_dt.datetime.now():%Y-%m-%d %H:%M}"
    for student in dict.fromkeys(sub.student for sub in ordered):
        page = feedback_page(student, [sub for sub in ordered if sub.student == student], when=when)
        atomic_write(pages / _page_name(student), lambda fh, page=page: fh.write(page))
    return ClassGrades(out, pages, ordered)


# --- the class -----------------------------------------------------------------------------------

def grade(submissions, out="grades.csv", *, notebooks: Sequence[str] | None = None,
          timeout: float = DEFAULT_TIMEOUT, jobs: int = 1, force: bool = False, keep: int = KEEP_OUTPUT,
          log: Callable[[str], None] = print) -> ClassGrades:
    """Grade ``SUBMISSIONS/<student>/<notebook>.ipynb`` (see the module docstring).

    ``notebooks``: the notebooks every student must hand in (``"03"`` or ``"03_temperature"``);
    default, every catalogued notebook found in any student's folder. ``timeout``: seconds
    each notebook may run. ``jobs``: submissions run at once. ``force``: replace an existing
    ``out`` and the pages in its feedback folder. ``keep``: characters of each test cell's
    printed output kept (its end). Returns a :class:`ClassGrades`.
    """
    submissions, out = Path(submissions), Path(out)
    if not submissions.is_dir():
        raise FileNotFoundError(f"SUBMISSIONS={str(submissions)!r} is not a folder; expected "
                                "SUBMISSIONS/<student>/<notebook>.ipynb.")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"-j/--jobs={jobs!r} must be a whole number, at least 1.")
    if not timeout > 0:
        raise ParameterError(f"--timeout={timeout!r} must be a number of seconds above 0.")
    _check_outputs(submissions, out, force)
    folders, stems = students(submissions), expected_notebooks(submissions, notebooks)
    if not folders or not stems:
        raise FileNotFoundError(f"no submissions in {str(submissions)!r}: expected SUBMISSIONS/<student>/<notebook>"
                                f".ipynb, where <notebook> is one of {', '.join(course_notebooks())}.")
    for stray in sorted(p.name for p in submissions.glob("*.ipynb")):
        log(f"ignored {stray}: a notebook must be in its student's folder, SUBMISSIONS/<student>/{stray}")
    log(f"grading {len(folders)} student(s) × {len(stems)} notebook(s) ({', '.join(stems)}), "
        f"{jobs} at a time, at most {timeout:g} s each")
    scratch = Path(tempfile.mkdtemp(prefix="kdlab-grade-"))
    try:
        teacher = None
        if any(stem != next(iter(course.LESSONS)) for stem in stems):  # notebook 01 trains its own
            t0 = time.perf_counter()
            teacher = scratch / "checkpoints"
            _smoke_teacher(teacher)
            log(f"trained the smoke-mode teacher once for the class ({time.perf_counter() - t0:.0f} s)")
        env = _environment(jobs)
        outcomes: dict[tuple[str, str], Submission] = {}
        todo = []
        for folder in folders:
            for stem in stems:
                path = folder / f"{stem}.ipynb"
                if not path.is_file():
                    outcomes[(folder.name, stem)] = _missing(folder, stem)
                    continue
                job_folder = scratch / f"job{len(todo):04d}"
                job_folder.mkdir()
                todo.append(Job(folder.name, stem, path, job_folder, teacher, timeout, env, keep))
        outcomes.update(_run_all(todo, jobs, log))
    finally:
        submission.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)  # a kernel killed a moment ago may still hold a file there
    result = _write([outcomes[(f.name, stem)] for f in folders for stem in stems], out)
    totals, width = result.totals(), max(len(f.name) for f in folders)
    for folder in folders:
        trouble = "; ".join(f"{sub.notebook[:2]} {sub.status}" for sub in result.submissions
                            if sub.student == folder.name and sub.status != "graded")
        points, max_points = totals[folder.name]
        log(f"{folder.name:<{width}}  {points:g}/{max_points:g} points" + (f"  ({trouble})" if trouble else ""))
    log(f"wrote {result.csv} and {len(folders)} feedback page(s) in {result.feedback}")
    return result


def _run_all(todo: list[Job], jobs: int, log: Callable[[str], None]) -> dict[tuple[str, str], Submission]:
    done = {}

    def record(sub: Submission) -> None:
        done[(sub.student, sub.notebook)] = sub
        log(f"{sub.student}/{sub.notebook}: {sub.points:g}/{sub.max_points:g} points, {sub.status} "
            f"({sub.seconds:.0f} s)")

    if jobs == 1:
        for job in todo:
            record(submission.run(job))
        return done
    # Threads only wait: each submission runs in a process (and a kernel) of its own.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(submission.run, job) for job in todo]
        try:
            for future in as_completed(futures):
                record(future.result())
        except BaseException:  # Ctrl-C: stop the queue and the running submissions, then re-raise
            for future in futures:
                future.cancel()
            submission.stop_all()
            raise
    return done
