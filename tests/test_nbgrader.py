"""The nbgrader round trip (issue 16): a course that uses nbgrader takes kdlab's instructor
notebook into its ``source/`` folder and runs ``nbgrader generate_assignment`` and
``nbgrader autograde`` on it, unchanged.

Skipped where nbgrader is not installed (it is in the ``dev`` extra), except on CI
(``CI=true``), where a missing nbgrader is a failure.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kdlab.classroom import CODE_STUB, cells, instructor_notebook, of_notebook

try:
    from nbgrader.api import Gradebook
except ImportError:
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("nbgrader is not installed (pip install -e '.[dev]')", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_teacher_training"  # its smoke run takes seconds, and it trains its own teacher


def nbgrader(course: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                          env={**os.environ, "KDLAB_SMOKE": "1"}, timeout=900)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_generate_assignment_and_autograde_in_an_nbgrader_course(tmp_path, monkeypatch):
    # nbgrader runs the `alembic` command of its environment, so that environment's bin/ must be on PATH
    # (it is in an activated environment; .venv/bin/pytest alone does not put it there).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    course = tmp_path / "course"
    db_url = f"sqlite:///{course / 'gradebook.db'}"
    (course / "source" / "ps1").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(f"""c = get_config()
c.CourseDirectory.course_id = "kdlab"
c.CourseDirectory.root = {str(course)!r}
c.CourseDirectory.db_url = {db_url!r}
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
c.Execute.timeout = 600
""")
    student_version = nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)
    nbformat.write(instructor_notebook(student_version), course / "source" / "ps1" / f"{NOTEBOOK}.ipynb")

    nbgrader(course, "generate_assignment", "ps1")
    released = nbformat.read(course / "release" / "ps1" / f"{NOTEBOOK}.ipynb", as_version=4)
    assert [c.source for c in released.cells] == [c.source for c in student_version.cells], \
        "nbgrader's student version differs from notebooks/"
    for ours, theirs in zip(student_version.cells, released.cells):
        if cells.role(ours):
            assert cells.role(theirs) == cells.role(ours)
            assert {k: theirs.metadata.nbgrader[k] for k in ours.metadata.nbgrader} == ours.metadata.nbgrader

    solved = copy.deepcopy(released)
    for cell in solved.cells:
        found = cells.role(cell)
        if found and found[1] == "answer":
            cell.source = next(ex for ex in of_notebook(NOTEBOOK) if ex.id == found[0]).solved_source()
    for student, nb in (("solved", solved), ("empty", released)):
        folder = course / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{NOTEBOOK}.ipynb")

    nbgrader(course, "autograde", "ps1")
    max_points = sum(ex.points for ex in of_notebook(NOTEBOOK))
    with Gradebook(db_url) as gb:
        scores = {student: gb.find_submission("ps1", student) for student in ("solved", "empty")}
        assert {s: (sub.score, sub.max_score) for s, sub in scores.items()} == \
            {"solved": (max_points, max_points), "empty": (0, max_points)}
        for ex in of_notebook(NOTEBOOK):
            assert gb.find_grade(ex.test_id, NOTEBOOK, "ps1", "solved").score == ex.points
            assert gb.find_grade(ex.test_id, NOTEBOOK, "ps1", "empty").score == 0
