"""``kdlab classroom grade`` (issue 16, stage 2): a class is graded whatever its submissions do.

Most tests need no kernel: files that are not notebooks, missing notebooks, the CSV file,
the HTML pages, the refusal to overwrite, and how a run's events (from
:mod:`kdlab.classroom.worker`) become grades. One test runs three tiny notebooks (a few
seconds each: megabytes of output, deleted files). The ``slow`` test releases notebook 01
and grades a class of five in smoke mode, a hanging and a crashing member among them.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kdlab import cli
from kdlab.classroom import cells, grade, of_notebook, release
from kdlab.classroom.grade import COLUMNS, DEFAULT_TIMEOUT, expected_notebooks, feedback_page
from kdlab.classroom.submission import Job, Row, Submission, _outcome, prepare
from kdlab.errors import ParameterError

NB01 = "01_teacher_training"
EX01 = of_notebook(NB01)  # accuracy (2 points), most_confused (2 points)
SOLVED = {ex.id: ex.solved_source() for ex in EX01}

# What 01's checks need from the notebook, without training a teacher: cm and ds.
SETUP = """import types
import torch
import kdlab
cm = torch.eye(10, dtype=torch.long) * 50
cm[4, 9], cm[9, 4], cm[3, 5] = 7, 2, 3  # one most confused pair: 4 taken for 9
ds = types.SimpleNamespace(class_names=[str(i) for i in range(10)], num_classes=10)"""


def tiny_notebook(answers: dict, extra: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """01's two exercises (answer cell, test cell) after SETUP and the ``extra`` cells: seconds to run."""
    nb_cells = [new_code_cell(SETUP), *(new_code_cell(source) for source in extra)]
    for ex in EX01:
        nb_cells.append(new_code_cell(answers.get(ex.id, ex.stub), metadata=cells.answer_metadata(ex)))
        nb_cells.append(new_code_cell(ex.check, metadata=cells.test_metadata(ex)))
    nb = new_notebook(cells=nb_cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def put(folder: Path, student: str, name: str, content) -> Path:
    path = folder / student / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        nbformat.write(content, path)
    return path


def digest(folder: Path) -> dict:
    """Every file and folder under ``folder``: its content's hash, mode and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                         p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def points(rows: list[dict]) -> dict:
    return {(r["student"], r["exercise"]): float(r["points"]) for r in rows}


# --- a class whose files are not notebooks, or not there: no kernel runs -----------------------

EVE = "<b>eve & co"  # a folder name with HTML in it


@pytest.fixture()
def bad_files(tmp_path):
    subs = tmp_path / "submissions"
    put(subs, "broken", f"{NB01}.ipynb", '{"cells": [')
    put(subs, "listy", f"{NB01}.ipynb", "[1, 2, 3]")
    put(subs, EVE, f"{NB01}.ipynb", "<script>alert('x')</script>")
    put(subs, "absent", f"{NB01} (1).ipynb", "a browser's download name")
    put(subs, ".hidden", f"{NB01}.ipynb", "ignored: a hidden folder")
    (subs / "stray.ipynb").write_text("ignored: not in a student's folder")
    return subs


def test_files_that_are_not_notebooks_and_missing_notebooks_get_zero_and_say_why(bad_files, tmp_path):
    before = digest(bad_files)
    printed = []
    result = grade(bad_files, tmp_path / "grades.csv", log=printed.append)
    assert digest(bad_files) == before, "grading changed SUBMISSIONS"
    rows = read_csv(tmp_path / "grades.csv")
    assert tuple(rows[0]) == COLUMNS
    students = sorted(["absent", "broken", EVE, "listy"])  # .hidden is left out
    assert [(r["student"], r["notebook"], r["exercise"]) for r in rows] == \
        [(s, NB01, ex.id) for s in students for ex in EX01]
    assert all((r["points"], r["max_points"]) == ("0", "2") for r in rows)
    by_student = {r["student"]: r["feedback"] for r in rows}
    assert by_student["absent"] == f"missing: no {NB01}.ipynb in the student's folder (found: {NB01} (1).ipynb)"
    for student in ("broken", "listy", EVE):
        assert by_student[student].startswith("not graded: the file is not a valid notebook"), by_student[student]
    assert {s.status for s in result.submissions} == {"missing", "not a notebook"}
    assert result.totals() == {s: (0.0, 4.0) for s in students}
    assert any("ignored stray.ipynb" in line for line in printed)
    assert any(re.fullmatch(r"absent +0/4 points  \(01 missing\)", line) for line in printed), printed
    assert any(re.fullmatch(r"listy +0/4 points  \(01 not a notebook\)", line) for line in printed), printed
    assert sorted(p.name for p in (tmp_path / "grades_feedback").iterdir()) == sorted(f"{s}.html" for s in students)


def test_feedback_pages_escape_what_students_wrote(bad_files, tmp_path):
    grade(bad_files, tmp_path / "grades.csv", log=lambda _: None)
    rows = [r for r in read_csv(tmp_path / "grades.csv") if r["student"] == EVE]
    assert "<script>" in rows[0]["feedback"]  # the start of her file, quoted in the feedback
    page = (tmp_path / "grades_feedback" / f"{EVE}.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>eve" not in page and "&lt;b&gt;eve &amp; co" in page
    assert "http" not in page and "src=" not in page, "a feedback page is self-contained"


def test_a_feedback_page_has_each_notebook_its_notes_and_the_total():
    rows = [Row("bo", NB01, "accuracy", 2, 2, "Correct."), Row("bo", NB01, "most_confused", 0, 2, "a < b & c")]
    page = feedback_page("bo", [Submission("bo", NB01, "timed out", rows, 3.0, ["ran past <60 s>"])])
    assert "Total: 2 of 4 points" in page and f"{NB01}: 2 of 4 points" in page
    assert "a &lt; b &amp; c" in page and "ran past &lt;60 s&gt;" in page
    assert page.count('class="full"') == 1 and page.count('class="none"') == 1


def test_grading_never_writes_over_a_file_unless_forced(bad_files, tmp_path):
    out = tmp_path / "grades.csv"
    out.write_text("my own gradebook")
    with pytest.raises(ParameterError, match="already exists.*--force"):
        grade(bad_files, out, log=lambda _: None)
    assert out.read_text() == "my own gradebook" and not (tmp_path / "grades_feedback").exists()
    out.unlink()
    (tmp_path / "grades_feedback").mkdir()
    (tmp_path / "grades_feedback" / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="feedback folder"):
        grade(bad_files, out, log=lambda _: None)
    assert not out.exists()
    out.write_text("an old gradebook")
    grade(bad_files, out, force=True, log=lambda _: None)
    assert out.read_text().startswith(",".join(COLUMNS))
    assert (tmp_path / "grades_feedback" / "notes.txt").read_text() == "mine", "--force replaces pages only"


def test_grades_are_never_written_into_the_submissions(bad_files):
    before = digest(bad_files)
    with pytest.raises(ParameterError, match="inside SUBMISSIONS"):
        grade(bad_files, bad_files / "broken" / "grades.csv", log=lambda _: None)
    assert digest(bad_files) == before


def test_bad_arguments_are_named(bad_files, tmp_path):
    with pytest.raises(ParameterError, match="jobs"):
        grade(bad_files, tmp_path / "g.csv", jobs=0)
    with pytest.raises(ParameterError, match="timeout"):
        grade(bad_files, tmp_path / "g.csv", timeout=0)
    with pytest.raises(ParameterError, match="not a course notebook.*01_teacher_training"):
        grade(bad_files, tmp_path / "g.csv", notebooks=["99"])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        grade(tmp_path / "nowhere", tmp_path / "g.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no submissions"):
        grade(tmp_path / "empty", tmp_path / "g.csv")


def test_the_expected_notebooks_are_those_named_or_else_those_handed_in(tmp_path):
    put(tmp_path, "ann", "08_interpretable_students.ipynb", "{}")
    put(tmp_path, "bob", "03_temperature.ipynb", "{}")
    put(tmp_path, "bob", "my_notes.ipynb", "{}")
    put(tmp_path, ".git", "01_teacher_training.ipynb", "{}")
    assert expected_notebooks(tmp_path) == ["03_temperature", "08_interpretable_students"]
    assert expected_notebooks(tmp_path, ["08", "01_teacher_training.ipynb"]) == [NB01, "08_interpretable_students"]


def test_kdlab_classroom_grade_on_the_command_line(bad_files, tmp_path, capsys):
    out = tmp_path / "class.csv"
    assert cli.main(["classroom", "grade", str(bad_files), "--out", str(out), "-j", "2"]) == 0
    printed = capsys.readouterr().out
    assert "absent" in printed and "0/4 points" in printed and (tmp_path / "class_feedback" / "listy.html").exists()
    assert cli.main(["classroom", "grade", str(bad_files), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["classroom", "grade", str(bad_files), "--out", str(out), "-j", "0"]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["classroom", "grade", "--help"])
    assert f"(default {DEFAULT_TIMEOUT:g})" in " ".join(capsys.readouterr().out.split())


# --- from a run's events to grades (no kernel) -----------------------------------------------------

def _job(tmp_path) -> Job:
    (tmp_path / "worker.log").write_text("")
    return Job("ann", NB01, tmp_path / f"{NB01}.ipynb", tmp_path, None, 60.0, {})


def _graded(tmp_path, events, *, timed_out=False, nb=None):
    prepared = prepare(nb or tiny_notebook(SOLVED), {})
    tests = sorted(prepared.tests)  # the test cells of accuracy and most_confused
    events = [e if not isinstance(e, tuple) else {"cell": tests[e[0]], "error": e[1], "stdout": e[2]} for e in events]
    sub = _outcome(_job(tmp_path), prepared, events, timed_out, 0, 1.0, [])
    return sub, {r.exercise: (r.points, r.feedback) for r in sub.rows}, prepared


def _line(exercise_id: str, got: int) -> str:
    mark = "✅" if got == 2 else "❌"
    return f"✅ Correct.\n{mark} autograder {exercise_id}: {got}/2 points. {'Correct' if got else 'Wrong'}.\n"


def test_each_test_cell_is_graded_by_its_last_autograder_line(tmp_path):
    fake = "accuracy: 2/2 points. printed by the learner's function\n"
    sub, rows, _ = _graded(tmp_path, [(0, "GradeError: accuracy: 0/2 points. Wrong.", fake + _line("accuracy", 0)),
                                      (1, None, _line("most_confused", 2)), {"end": "ok", "chars": 10}])
    assert rows == {"accuracy": (0.0, "Wrong."), "most_confused": (2.0, "Correct.")}
    assert sub.status == "graded" and sub.notes == [] and (sub.points, sub.max_points) == (2.0, 4.0)


def test_a_test_cell_that_never_ran_says_why(tmp_path):
    _, rows, prepared = _graded(tmp_path, [(0, None, _line("accuracy", 2)), {"start": 3}], timed_out=True)
    assert prepared.describe(3) == "cell 4 (the answer cell of most_confused)"
    assert rows["accuracy"] == (2.0, "Correct.")
    assert rows["most_confused"] == (0.0, "did not run: the notebook ran past its 60 s time limit in cell 4 (the "
                                           "answer cell of most_confused)")
    sub, rows, _ = _graded(tmp_path, [(0, None, _line("accuracy", 2)), {"end": "died", "cell": 3}])
    assert sub.status == "kernel died" and rows["most_confused"][1].startswith("did not run: the kernel died in cell 4")
    sub, rows, _ = _graded(tmp_path, [{"end": "failed", "reason": "Traceback ...\nRuntimeError: no kernel"}])
    assert sub.status == "grader error" and rows["accuracy"] == (0.0, "did not run: the grader could not run the "
                                                                      "notebook: RuntimeError: no kernel")
    sub, rows, _ = _graded(tmp_path, [(0, "NameError: name 'cm' is not defined", "")])
    assert rows["accuracy"] == (0.0, "the test cell stopped with NameError: name 'cm' is not defined before the "
                                     "autograder ran")
    assert sub.status == "grader error" and "exit code 0" in rows["most_confused"][1]  # no end: the worker vanished


def test_a_deleted_test_cell_and_errors_elsewhere_are_recorded(tmp_path):
    nb = tiny_notebook(SOLVED, extra=("1 / 0",))
    del nb.cells[3]  # accuracy's test cell
    sub, rows, _ = _graded(tmp_path, [{"cell": 1, "error": "ZeroDivisionError: division by zero"},
                                      (0, None, _line("most_confused", 2)), {"end": "ok", "chars": 3_000_000}], nb=nb)
    assert rows["accuracy"][0] == 0 and "no test cell for this exercise" in rows["accuracy"][1]
    assert rows["most_confused"] == (2.0, "Correct.")
    assert sub.notes[0] == "1 cell(s) outside the test cells stopped with an error; the first, cell 2 ('1 / 0'): " \
                           "ZeroDivisionError: division by zero"
    assert "3.0 million characters" in sub.notes[1]


def test_the_graded_form_has_hidden_tests_and_injected_parameters():
    nb = tiny_notebook({})
    params = new_code_cell('smoke = False  # a bool\noutput_dir = ""  # out\nepochs = 3')
    params.metadata["tags"] = ["parameters"]
    nb.cells.insert(0, params)
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="old output")]
    prepared = prepare(nb, {"smoke": True, "output_dir": "/tmp/x", "checkpoint_dir": "/tmp/c"})
    injected = prepared.notebook.cells[1]
    assert injected.source == "# Injected by kdlab classroom grade\nsmoke = True\noutput_dir = '/tmp/x'"
    assert prepared.origin[:3] == [0, None, 1] and prepared.describe(1) == "the injected parameters cell"
    assert sorted(prepared.tests.values()) == ["accuracy", "most_confused"]
    for index, exercise_id in prepared.tests.items():
        assert f'kdlab.classroom.autograde("{exercise_id}", globals())' in prepared.notebook.cells[index].source
    assert all(not c.get("outputs") for c in prepared.notebook.cells)
    assert nb.cells[3].outputs, "the submission itself is left as it was"


# --- megabytes of output and deleted files: a tiny notebook in a kernel --------------------------

FLOOD = "for _ in range(12_000):\n    print('x' * 99)"  # 1.2 million characters
NOISY_ACCURACY = SOLVED["accuracy"].replace("def my_accuracy(logits, targets):\n",
                                            "def my_accuracy(logits, targets):\n    print('y' * 5000)\n")
DELETE = "import os, shutil\nshutil.rmtree(os.getcwd())  # the kernel's working folder, and everything in it"


def test_megabytes_of_output_and_deleted_files_do_not_stop_the_grading(tmp_path):
    subs = tmp_path / "submissions"
    # The noisy answer prints 5,000 characters in its test cell, more than the 2,000 kept: the grade is at the end.
    put(subs, "wrecker", f"{NB01}.ipynb", tiny_notebook({**SOLVED, "accuracy": NOISY_ACCURACY}, extra=(FLOOD, DELETE)))
    before = digest(subs)
    out = tmp_path / "grades.csv"
    result = grade(subs, out, keep=2_000, timeout=120, log=lambda _: None)
    assert digest(subs) == before, "grading changed SUBMISSIONS"
    assert points(read_csv(out)) == {("wrecker", ex.id): 2.0 for ex in EX01}
    (sub,) = result.submissions
    assert sub.status == "graded" and len(sub.notes) == 2, sub.notes
    assert sub.notes[0].startswith("it printed 1.2 million characters of output")
    assert sub.notes[1] == "it deleted files in its working folder: its whole working folder"
    assert out.stat().st_size < 1_000 and (result.feedback / "wrecker.html").stat().st_size < 5_000


# --- the class, end to end: release, then grade --------------------------------------------

WRONG_ACCURACY = SOLVED["accuracy"].replace("return (", "return 100 * (")  # a percentage
HANG = "while True:  # never ends\n    pass"
CRASH = "import os\nos.kill(os.getpid(), 9)  # the kernel kills itself"
# Notebook 01 runs in about 15 s in smoke mode here; 60 s leaves a margin for a slow machine.
TIMEOUT = 60


@pytest.mark.slow
def test_release_then_grade_a_class_of_five(tmp_path, capsys):
    student = nbformat.read(release(tmp_path / "release", ["01"], execute=False) / "student" / f"{NB01}.ipynb",
                            as_version=4)

    def member(name: str, answers: dict) -> None:
        nb = copy.deepcopy(student)
        for cell in nb.cells:
            found = cells.role(cell)
            if found and found[1] == "answer" and found[0] in answers:
                cell.source = answers[found[0]]
        put(tmp_path / "submissions", name, f"{NB01}.ipynb", nb)

    member("full", SOLVED)
    member("empty", {})
    member("partial", {**SOLVED, "accuracy": WRONG_ACCURACY})
    member("hanging", {**SOLVED, "most_confused": HANG})
    member("crashing", {**SOLVED, "most_confused": CRASH})
    subs = tmp_path / "submissions"
    before = digest(subs)
    out = tmp_path / "grades.csv"
    assert cli.main(["classroom", "grade", str(subs), "--out", str(out), "--timeout", str(TIMEOUT), "-j", "2"]) == 0
    assert digest(subs) == before, "grading changed SUBMISSIONS"
    rows = read_csv(out)
    assert points(rows) == {
        ("crashing", "accuracy"): 2, ("crashing", "most_confused"): 0,
        ("empty", "accuracy"): 0, ("empty", "most_confused"): 0,
        ("full", "accuracy"): 2, ("full", "most_confused"): 2,
        ("hanging", "accuracy"): 2, ("hanging", "most_confused"): 0,
        ("partial", "accuracy"): 0, ("partial", "most_confused"): 2}
    feedback = {(r["student"], r["exercise"]): r["feedback"] for r in rows}
    assert feedback[("full", "accuracy")].startswith("Correct")
    assert feedback[("empty", "accuracy")].startswith("Not done yet")
    assert "percentage" in feedback[("partial", "accuracy")]
    assert feedback[("hanging", "most_confused")].startswith(f"did not run: the notebook ran past its {TIMEOUT} s "
                                                             "time limit in cell")
    assert "(the answer cell of most_confused)" in feedback[("hanging", "most_confused")]
    assert feedback[("crashing", "most_confused")].startswith("did not run: the kernel died in cell")
    printed = capsys.readouterr().out
    for line in ("crashing  2/4 points  (01 kernel died)", "empty     0/4 points", "full      4/4 points",
                 "hanging   2/4 points  (01 timed out)", "partial   2/4 points"):
        assert line in printed, printed
    pages = tmp_path / "grades_feedback"
    assert sorted(p.name for p in pages.iterdir()) == [f"{s}.html" for s in
                                                       ("crashing", "empty", "full", "hanging", "partial")]
    assert "Total: 4 of 4 points" in (pages / "full.html").read_text(encoding="utf-8")
