"""Student and instructor versions of the notebooks, and ``kdlab classroom release OUT``.

* :func:`instructor_notebook` writes every exercise's solution into its answer cell,
  between nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION``, and appends the hidden
  tests to its test cell (:func:`with_hidden_tests` does only the second, for grading a
  submission).
* :func:`student_notebook` removes both again, exactly as nbgrader's ``ClearSolutions``
  and ``ClearHiddenTests`` would: ``notebooks/`` holds the student versions, and a test
  checks ``student_notebook(instructor_notebook(nb)) == nb`` for every notebook.
* :func:`release` writes ``OUT/student/``, ``OUT/instructor/`` and ``OUT/README.md``. It first
  runs each instructor notebook in smoke mode (with :mod:`kdlab.runner`, as ``kdlab run``
  does) and stops unless every formative check passes and every hidden test gives full points.
"""

from __future__ import annotations

import copy
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import runner
from ..errors import KdlabError, ParameterError
from . import cells
from .catalogue import EXERCISES, exercise
from .exercises import CODE_STUB, Grade


class ReleaseError(KdlabError, RuntimeError):
    """An instructor notebook failed its smoke-mode run: a solution or a test is wrong."""


def _clean(cell) -> None:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None


def _set_metadata(cell, metadata: dict) -> None:
    import nbformat  # not at the top: see kdlab/classroom/submission.py

    for key, value in metadata.items():
        cell.metadata[key] = nbformat.from_dict(value)


def _rewrite(nb, kind: str, source, metadata) -> None:
    """Give every exercise cell of ``kind`` ("answer" or "test") in ``nb`` the catalogue's source and metadata."""
    for cell in nb.cells:
        found = cells.role(cell)
        if found and found[1] == kind:
            ex = exercise(found[0])
            cell.source = source(ex)
            _set_metadata(cell, metadata(ex))


def with_hidden_tests(nb):
    """A copy of ``nb`` whose test cells are the catalogue's checks followed by nbgrader hidden
    tests (:func:`kdlab.classroom.autograde`); answer cells are left as they are."""
    nb = copy.deepcopy(nb)
    _rewrite(nb, "test", cells.instructor_test, cells.test_metadata)
    return nb


def instructor_notebook(nb):
    """A copy of ``nb`` with every exercise's marked solution and hidden tests in place, outputs cleared."""
    nb = with_hidden_tests(nb)
    for cell in nb.cells:
        _clean(cell)
    _rewrite(nb, "answer", cells.instructor_answer, cells.answer_metadata)
    return nb


def student_notebook(nb):
    """A copy of ``nb`` without solutions (each region becomes ``# YOUR CODE HERE``) and without
    hidden tests, outputs cleared: what ``nbgrader generate_assignment`` makes of it."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        _clean(cell)
        if cell.cell_type == "code":
            cell.source = cells.clear_hidden_tests(cells.clear_solutions(cell.source))
    return nb


# --- release ----------------------------------------------------------------------------------

def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def verify_executed(nb) -> list[str]:
    """What is wrong in an executed instructor notebook: a test cell without a passing formative
    check or without full autograder points. Empty if nothing."""
    problems = []
    for cell in nb.cells:
        found = cells.role(cell)
        if not found or found[1] != "test":
            continue
        text = _stdout(cell)
        grade = Grade.parse(text)
        if not any(line.startswith("✅") and "autograder" not in line for line in text.splitlines()):
            problems.append(f"{found[0]}: the formative check did not pass: {text.strip()[:300]!r}")
        if grade is None or grade.points < grade.max_points:
            problems.append(f"{found[0]}: the hidden tests did not give full points: {grade or text.strip()[:300]!r}")
    return problems


def _run_in_smoke_mode(path: Path, scratch: Path) -> Path:
    """Execute the notebook at ``path`` in smoke mode in ``scratch``; returns the executed copy."""
    work = scratch / path.stem
    work.mkdir()
    source = work / path.name
    shutil.copyfile(path, source)  # run beside a copy: the kernel's working folder is the notebook's
    declared = runner.inspect_parameters(source)
    wanted = {"smoke": True, "output_dir": str(work / "output"), "checkpoint_dir": str(scratch / "checkpoints")}
    executed = work / f"executed-{path.name}"
    runner.execute(source, executed, {k: v for k, v in wanted.items() if k in declared})
    return executed


def _readme(names: Sequence[str]) -> str:
    stems = {Path(n).stem for n in names}
    chosen = [ex for ex in EXERCISES if ex.notebook in stems]
    rows = [f"| `{ex.notebook}` | `{ex.id}` | `{ex.answer}` | {ex.points} |" for ex in chosen]
    total = sum(ex.points for ex in chosen)
    return f"""# kdlab classroom release

Made by `kdlab classroom release`. Two versions of the same notebooks:

- `student/`: what students get. Every exercise is an answer cell (`# YOUR CODE HERE`) followed by a
  check cell that gives feedback (`kdlab.checks`); `kdlab.checks.hint("<exercise>")` gives hints. These
  are the notebooks in the kit's `notebooks/` folder.
- `instructor/`: the solutions, between `### BEGIN SOLUTION` and `### END SOLUTION`, and after each check
  hidden tests between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` that call
  `kdlab.classroom.autograde`. Before writing this folder, each instructor notebook was run in smoke
  mode: every check passed and every hidden test gave full points.

## Grading

Collect each student's notebooks as `SUBMISSIONS/<student>/<notebook>.ipynb`, then

    kdlab classroom grade SUBMISSIONS --out grades.csv

Each exercise is all or nothing: the autograder tests try more inputs and edge cases than the
check does, and an answer that only calls the kit's own implementation gets no points.

## With nbgrader

The cells carry nbgrader's metadata (schema version 3): answer cells are "autograded answer"
cells with `grade_id` = the exercise, check cells are locked "autograder tests" cells with
`grade_id` = `<exercise>_test` and the exercise's points. To use them in an nbgrader course:

1. copy `instructor/*.ipynb` into `source/<assignment>/`;
2. in `nbgrader_config.py`, set `c.ClearSolutions.code_stub = {{"python": "{CODE_STUB}"}}`: the
   `raise NotImplementedError` of a function stub is already outside the solution region, and a
   value answer must not raise, so that the notebook still runs top to bottom;
3. `nbgrader generate_assignment <assignment>` (its student version equals `student/`), and after
   collecting, `nbgrader autograde <assignment>`. The grading environment needs kdlab installed,
   since the hidden tests call `kdlab.classroom.autograde`.

nbgrader gives a test cell no points when it writes to stderr, so a warning from a student's code
costs the exercise there.

## Exercises ({total} points)

| notebook | exercise | answer | points |
|---|---|---|---|
""" + "\n".join(rows) + "\n"


def release(out, notebooks: Sequence[str | Path] | None = None, *, execute: bool = True,
            log: Callable[[str], None] = print) -> Path:
    """Write ``OUT/student/``, ``OUT/instructor/`` and ``OUT/README.md``; returns ``OUT``.

    ``notebooks``: paths or names (``"03"``, ``"03_temperature"``); default every numbered
    notebook of ``notebooks/``. ``execute=False`` skips the smoke-mode run of the instructor
    versions. ``OUT`` must be new or empty; nothing is written there unless the release succeeds.
    """
    import nbformat  # not at the top: see kdlab/classroom/submission.py

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ParameterError(f"OUT={str(out)!r} is not an empty folder; accepted: a new or empty folder "
                             "(a release never writes over existing files).")
    paths = [runner.resolve_notebook(str(n)) for n in notebooks] if notebooks else runner.sequence()
    if not paths:
        raise FileNotFoundError(f"no numbered notebooks found in {runner.notebook_dir()}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        for part in ("student", "instructor", "scratch"):
            (staging / part).mkdir()
        for path in paths:
            instructor = instructor_notebook(nbformat.read(path, as_version=4))
            nbformat.write(instructor, staging / "instructor" / path.name)
            nbformat.write(student_notebook(instructor), staging / "student" / path.name)
            if not execute:
                continue
            t0 = time.perf_counter()
            try:
                executed = _run_in_smoke_mode(staging / "instructor" / path.name, staging / "scratch")
            except Exception as err:  # noqa: BLE001 - reported with the notebook's name
                raise ReleaseError(f"{path.name}: the instructor version failed in smoke mode: "
                                   f"{runner.failure(err)}") from err
            problems = verify_executed(nbformat.read(executed, as_version=4))
            if problems:
                raise ReleaseError(f"{path.name}: " + "; ".join(problems))
            n = sum(1 for ex in EXERCISES if ex.notebook == path.stem)
            log(f"{path.stem}: {n} exercise(s): checks pass, hidden tests give full points "
                f"({time.perf_counter() - t0:.0f} s in smoke mode)")
        shutil.rmtree(staging / "scratch")
        (staging / "README.md").write_text(_readme([p.name for p in paths]), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
