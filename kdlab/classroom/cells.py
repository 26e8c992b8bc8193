"""The cell convention of an exercise, in nbgrader's terms.

Every exercise is two code cells in its notebook:

1. the **answer cell**: the student sees ``Exercise.stub``; the instructor version has the
   stub's ``# YOUR CODE HERE`` line replaced by the solution between
   ``### BEGIN SOLUTION`` and ``### END SOLUTION``, at that line's indentation. nbgrader
   metadata: an autograded answer (``solution: true``, ``grade_id: <id>``);
2. the **test cell**: the formative check (``Exercise.check``); the instructor version
   appends nbgrader hidden tests that call :func:`kdlab.classroom.autograde`. nbgrader
   metadata: autograder tests (``grade: true``, ``locked: true``, ``points``,
   ``grade_id: <id>_test``).

Both carry ``{"kdlab": {"exercise": <id>}}`` too. :func:`clear_solutions` and
:func:`clear_hidden_tests` do what nbgrader's ``ClearSolutions`` (with ``code_stub`` set to
:data:`~kdlab.classroom.exercises.CODE_STUB`) and ``ClearHiddenTests`` do, line for line, so
the student version kdlab writes is the one ``nbgrader generate_assignment`` writes.
"""

from __future__ import annotations

import re

from .exercises import CODE_STUB, Exercise

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SCHEMA_VERSION = 3  # nbgrader's cell metadata schema


def answer_metadata(ex: Exercise) -> dict:
    return {"nbgrader": {"grade": False, "solution": True, "locked": False, "grade_id": ex.id,
                         "schema_version": SCHEMA_VERSION},
            "kdlab": {"exercise": ex.id}}


def test_metadata(ex: Exercise) -> dict:
    return {"nbgrader": {"grade": True, "solution": False, "locked": True, "points": ex.points,
                         "grade_id": ex.test_id, "schema_version": SCHEMA_VERSION},
            "kdlab": {"exercise": ex.id}}


def role(cell) -> tuple[str, str] | None:
    """``(exercise id, "answer" | "test")`` for an exercise cell, else None."""
    exercise_id = cell.get("metadata", {}).get("kdlab", {}).get("exercise")
    if cell.get("cell_type") != "code" or not exercise_id:
        return None
    grader = cell["metadata"].get("nbgrader", {})
    return exercise_id, ("test" if grader.get("grade") and not grader.get("solution") else "answer")


def _stub_line(ex: Exercise) -> tuple[int, str]:
    lines = ex.stub.split("\n")
    found = [i for i, line in enumerate(lines) if line.strip() == CODE_STUB]
    if len(found) != 1:
        raise ValueError(f"the stub of exercise {ex.id!r} needs exactly one line {CODE_STUB!r}, has {len(found)}")
    return found[0], re.match(r"\s*", lines[found[0]]).group(0)


def _indented(code: str, indent: str) -> list[str]:
    return [indent + line if line.strip() else "" for line in code.strip("\n").split("\n")]


def instructor_answer(ex: Exercise) -> str:
    """The instructor's answer cell: the stub with the marked solution in place of ``# YOUR CODE HERE``."""
    lines = ex.stub.split("\n")
    at, indent = _stub_line(ex)
    region = [indent + BEGIN_SOLUTION, *_indented(ex.solution, indent), indent + END_SOLUTION]
    return "\n".join(lines[:at] + region + lines[at + 1:])


def solved_source(ex: Exercise) -> str:
    """The answer cell with the solution written in and no markers: what a learner would paste.

    The stub's ``raise NotImplementedError`` right after ``# YOUR CODE HERE`` goes too.
    """
    lines = ex.stub.split("\n")
    at, indent = _stub_line(ex)
    rest = lines[at + 1:]
    if rest and rest[0].strip().startswith("raise NotImplementedError"):
        rest = rest[1:]
    return "\n".join(lines[:at] + _indented(ex.solution, indent) + rest)


def hidden_tests(ex: Exercise) -> str:
    """The nbgrader hidden-test block of an exercise's test cell."""
    # The trailing ";" keeps IPython from showing the returned Grade as the cell's result:
    # nbgrader would try to read a result as partial credit.
    return "\n".join([BEGIN_HIDDEN, "import kdlab.classroom", f'kdlab.classroom.autograde("{ex.id}", globals());',
                      END_HIDDEN])


def instructor_test(ex: Exercise) -> str:
    return f"{ex.check}\n{hidden_tests(ex)}"


def _clear_region(source: str, begin: str, end: str, stub: list[str] | None) -> str:
    out, inside = [], False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ValueError(f"nested {begin!r} in:\n{source}")
            inside = True
            indent = re.match(r"\s*", line).group(0)
            out += [indent + s for s in stub or []]
        elif end in line:
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{begin!r} without {end!r} in:\n{source}")
    return "\n".join(out)


def clear_solutions(source: str) -> str:
    """``source`` with every solution region replaced by ``# YOUR CODE HERE`` (nbgrader's ClearSolutions)."""
    return _clear_region(source, "BEGIN SOLUTION", "END SOLUTION", CODE_STUB.split("\n"))


def clear_hidden_tests(source: str) -> str:
    """``source`` without its hidden-test regions (nbgrader's ClearHiddenTests)."""
    return _clear_region(source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", None)


_GRADE_ID = re.compile(r"^[a-zA-Z0-9_\-]*$")
_NBGRADER_KEYS = {"schema_version", "grade", "locked", "solution", "task", "grade_id", "points", "checksum",
                  "cell_type"}


def nbgrader_problems(nb) -> list[str]:
    """What nbgrader's cell metadata rules (schema version 3) would reject in ``nb``; empty if nothing."""
    problems, ids = [], set()
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        where, source = f"cell {index}", cell.get("source", "")
        if meta is None:
            meta = {"grade": False, "solution": False, "locked": False, "schema_version": SCHEMA_VERSION}
            if "BEGIN SOLUTION" not in source and "BEGIN HIDDEN TESTS" not in source:
                continue
        if meta.get("schema_version") != SCHEMA_VERSION:
            problems.append(f"{where}: schema_version {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        if set(meta) - _NBGRADER_KEYS:
            problems.append(f"{where}: unknown keys {sorted(set(meta) - _NBGRADER_KEYS)}")
        for key in ("grade", "solution", "locked"):
            if not isinstance(meta.get(key), bool):
                problems.append(f"{where}: {key} must be true or false")
        if meta.get("grade") or meta.get("solution") or meta.get("locked"):
            grade_id = meta.get("grade_id", "")
            if not grade_id or not isinstance(grade_id, str) or not _GRADE_ID.match(grade_id):
                problems.append(f"{where}: grade_id {grade_id!r} must be non-empty letters, digits, _ or -")
            elif grade_id in ids:
                problems.append(f"{where}: grade_id {grade_id!r} is used twice")
            ids.add(grade_id)
        if meta.get("grade"):
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
                problems.append(f"{where}: a graded cell needs points >= 0, has {points!r}")
        if cell.get("cell_type") == "markdown" and bool(meta.get("grade")) != bool(meta.get("solution")):
            problems.append(f"{where}: a markdown cell must be both grade and solution, or neither")
        if "BEGIN SOLUTION" in source and not meta.get("solution"):
            problems.append(f"{where}: a solution region in a cell that is not a solution cell")
        if "BEGIN HIDDEN TESTS" in source and not meta.get("grade"):
            problems.append(f"{where}: hidden tests in a cell that is not a grade cell")
    return problems
