"""The kdlab command line: runs (progress, summary, no kernel warnings), sweeps (with resume,
quiet output, a weak teacher's gap_closed not defined), reports, and errors before anything
runs (types and the course's ranges). Ctrl-C is tested in tests/test_interrupts.py."""

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kdlab import cli, report, runner, sweeps
from tests.fixtures import write_parameterised_notebook

ROOT = Path(__file__).resolve().parents[1]
NB04 = ROOT / "notebooks" / "04_student_comparison.ipynb"


def fixture_notebook(folder: Path) -> Path:
    """A one-second notebook with a parameters cell. It fails while the file named by
    `fail_marker` exists, and appends each execution to `log_file`."""
    return write_parameterised_notebook(
        folder / "99_fixture.ipynb",
        'temperature = 4.0  # a float\nseed = 0  # an int\nsmoke = False  # a bool\n'
        'output_dir = ""  # where metrics go\nfail_marker = ""  # fail while this file exists\n'
        'log_file = ""  # executions are appended here',
        "import json, os, pathlib\n"
        "if log_file:\n    open(log_file, 'a').write(f'{temperature},{seed}\\n')\n"
        "if fail_marker and os.path.exists(fail_marker) and temperature == 2.0 and seed == 1:\n"
        "    raise RuntimeError('deliberate failure')\n"
        "pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
        "json.dump({'accuracy': 0.9 + temperature / 100 + seed / 1000, 'smoke': smoke,"
        " 'omp_threads': os.environ.get('OMP_NUM_THREADS', '')},"
        " open(pathlib.Path(output_dir) / 'metrics.json', 'w'))")


def read_rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv") as fh:
        return list(csv.DictReader(fh))


def untrained_teacher(folder: Path) -> Path:
    """A smoke-mode teacher that never trained (about 10% on digits), where notebook 04 looks for one."""
    import kdlab

    recipe = kdlab.lab.teacher_recipe("digits", smoke=True)
    ds = kdlab.data.load("digits", seed=0)
    teacher = kdlab.models.create(recipe["model"], num_classes=ds.num_classes, input_shape=ds.input_shape, seed=0,
                                  **recipe["model_kwargs"])
    path = kdlab.lab.teacher_path(folder, "digits", smoke=True)
    kdlab.checkpoint.save(teacher, path, dataset="digits", smoke=True, recipe=recipe,
                          test_metrics=kdlab.metrics.evaluate(teacher, ds.test))
    return folder


@pytest.mark.slow
def test_a_weak_teacher_sweep_of_notebook_04_reports_gap_closed_as_not_defined(tmp_path):
    # A teacher worse than the scratch student: (kd - scratch) / (teacher - scratch) would divide
    # two negatives and read a loss as "closed most of the gap".
    checkpoints = untrained_teacher(tmp_path / "weak")
    (tmp_path / "fixed.yaml").write_text(f"checkpoint_dir: {checkpoints}\n")
    code = cli.main(["sweep", str(NB04), "-p", "temperature", "1", "4", "--smoke",
                     "-f", str(tmp_path / "fixed.yaml"), "-j", "2", "--out", str(tmp_path)])
    assert code == 0
    folder = next(tmp_path.glob("sweep-04_student_comparison-*"))
    rows = read_rows(folder)
    assert sorted(r["temperature"] for r in rows) == ["1.0", "4.0"]
    assert all(float(r["teacher_accuracy"]) < float(r["scratch_accuracy"]) for r in rows)  # the premise
    assert all(r["gap_closed"] == "" for r in rows)  # not a number, in results.csv either
    for point in folder.glob("temperature=*"):
        recorded = json.loads((point / "metrics.json").read_text())
        assert recorded["gap_closed"] is None
        assert recorded["undefined"]["gap_closed"].startswith("not defined: the teacher does not beat")  # and why
    assert (folder / "summary.png").exists()
    md, html = report.write(folder, baseline=["temperature=1"])
    page = html.read_text()
    assert "not defined: the teacher does not beat the scratch student" in page
    assert "not defined: the teacher does not beat the scratch student" in md.read_text()
    assert "Against the baseline temperature=1.0" in page and "temperature=4.0 " in page
    assert page.count("executed.ipynb</a>") == 2


def test_parallel_points_share_the_cores_out():
    assert runner.threads_per_job(2, cores=2) == 1
    assert runner.threads_per_job(2, cores=16) == 8
    assert runner.threads_per_job(3, cores=16) == 5
    assert runner.threads_per_job(8, cores=2) == 1  # never 0 threads


@pytest.fixture
def no_thread_settings(monkeypatch):
    """No thread-count variables in the environment, restored (or removed) afterwards. A
    plain delenv of an unset variable records nothing, so a thread count set here would
    leak into every later notebook kernel of the test session."""
    for name in runner.THREAD_VARIABLES:
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)


@pytest.mark.slow
def test_parallel_sweep_kernels_get_their_share_of_threads(tmp_path, no_thread_settings):
    nb = fixture_notebook(tmp_path)
    assert cli.main(["sweep", str(nb), "-p", "seed", "0", "1", "2", "--out", str(tmp_path / "runs"), "-j", "2"]) == 0
    folder = next((tmp_path / "runs").glob("sweep-99_fixture-*"))
    threads = {json.loads((folder / f"seed={s}" / "metrics.json").read_text())["omp_threads"] for s in (1, 2)}
    # The first point runs alone with every core; the two after it run side by side, a share each.
    assert threads == {str(runner.threads_per_job(2))}
    first = json.loads((folder / "seed=0" / "metrics.json").read_text())["omp_threads"]
    assert first == ""


def test_a_thread_count_the_user_set_is_kept(no_thread_settings, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = sweeps.point_environment(1)
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "1"
    assert "MKL_NUM_THREADS" not in sweeps.point_environment(None)  # a point that runs alone: torch decides
    assert "MKL_NUM_THREADS" not in os.environ  # the sweep's own process is left as it was


@pytest.mark.slow
def test_sweep_resumes_after_a_failed_point(tmp_path):
    nb = fixture_notebook(tmp_path)
    marker, log = tmp_path / "fail", tmp_path / "log.txt"
    marker.write_text("fail")
    args = ["sweep", str(nb), "-p", "temperature", "1", "2", "-p", "seed", "0", "1", "-f", str(tmp_path / "p.yaml"),
            "--out", str(tmp_path / "runs"), "-j", "2"]
    (tmp_path / "p.yaml").write_text(f"fail_marker: {marker}\nlog_file: {log}\n")
    assert cli.main(args) == 1  # one point failed, the other three finished
    folder = next((tmp_path / "runs").glob("sweep-99_fixture-*"))
    assert len(read_rows(folder)) == 3
    assert (folder / "temperature=2.0,seed=1" / "error.txt").exists()
    marker.unlink()
    assert cli.main(args) == 0
    assert len(read_rows(folder)) == 4
    # The second call ran only the failed point again.
    executions = log.read_text().split()
    assert len(executions) == 5 and executions.count("2.0,1") == 2
    assert not (folder / "temperature=2.0,seed=1" / "error.txt").exists()


def test_unknown_parameter_is_rejected_before_running(tmp_path, capsys):
    nb = fixture_notebook(tmp_path)
    assert cli.main(["sweep", str(nb), "-p", "temprature", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'temprature'" in err and "temperature" in err and "seed" in err
    assert not list(tmp_path.glob("sweep-*"))


def test_wrong_type_missing_notebook_and_empty_grid(tmp_path, capsys):
    nb = fixture_notebook(tmp_path)
    assert cli.main(["sweep", str(nb), "-p", "seed", "zero", "--out", str(tmp_path)]) == 2
    assert "expected int" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "nope.ipynb"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["sweep", str(nb), "-p", "seed", "--out", str(tmp_path)]) == 2
    assert "no values" in capsys.readouterr().err
    assert cli.main(["run", str(nb), "-p", "temperature", "hot", "--out", str(tmp_path)]) == 2
    assert "expected float" in capsys.readouterr().err
    assert not list(tmp_path.glob("run-*")) and not list(tmp_path.glob("sweep-*"))


@pytest.mark.slow
def test_run_makes_a_new_folder_each_time(tmp_path):
    nb = fixture_notebook(tmp_path)
    out = tmp_path / "runs"
    assert cli.main(["run", str(nb), "-p", "temperature", "3", "--out", str(out), "--smoke"]) == 0
    assert cli.main(["run", str(nb), "--out", str(out), "--smoke"]) == 0
    folders = sorted(out.glob("run-*"))
    assert len(folders) == 2
    first = json.loads((folders[0] / "run.json").read_text())
    assert first["notebooks"][0]["status"] == "ok" and first["notebooks"][0]["parameters"]["temperature"] == 3.0
    assert {"python", "torch", "kdlab"} <= set(first["versions"]) and first["device"] and first["end"]
    metrics = json.loads((folders[0] / "99_fixture" / "metrics.json").read_text())
    assert metrics["smoke"] is True
    assert (folders[0] / "99_fixture.ipynb").exists()
    md, _ = report.write(folders[0])
    assert "99_fixture" in md.read_text()


@pytest.mark.slow
def test_kdlab_smoke_on_is_recorded_as_smoke(tmp_path, monkeypatch):
    # The notebooks and run.json read KDLAB_SMOKE through one function, so they cannot disagree.
    monkeypatch.setenv("KDLAB_SMOKE", "on")
    nb = fixture_notebook(tmp_path)
    assert cli.main(["run", str(nb), "--out", str(tmp_path / "runs")]) == 0
    folder = next((tmp_path / "runs").glob("run-*"))
    assert json.loads((folder / "run.json").read_text())["smoke"] is True
    assert json.loads((folder / "99_fixture" / "metrics.json").read_text())["smoke"] is True


def test_unreadable_kdlab_smoke_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDLAB_SMOKE", "maybe")
    nb = fixture_notebook(tmp_path)
    assert cli.main(["run", str(nb), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "KDLAB_SMOKE='maybe'" in err and "on" in err and "off" in err
    assert not list(tmp_path.glob("run-*"))


@pytest.mark.slow
def test_run_without_out_goes_to_kdlab_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path / "elsewhere"))
    nb = fixture_notebook(tmp_path)
    assert cli.main(["run", str(nb)]) == 0
    assert len(list((tmp_path / "elsewhere").glob("run-*/99_fixture/metrics.json"))) == 1


def test_list_shows_parameters(capsys):
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    assert "01_teacher_training.ipynb" in text and "checkpoint_dir" in text and "int" in text


# --- what a newcomer sees: progress, no kernel warnings, one line per notebook, range checks ---

# What kernels and their transport print on stderr: ipykernel 7's unencrypted-TCP notice
# (any [IPKernelApp] log line), pyzmq's Windows Proactor notice, debugpy's frozen-modules
# notice, jupyter_client's port and zmq messages. Other stderr lines (a notebook's own
# problems) are not this test's business.
KERNEL_WARNINGS = re.compile(r"without encryption|CurveZMQ|Proactor|frozen.modules|Debugger warning|"
                             r"\bports?\b|\[IPKernelApp\]|\bzmq\b|jupyter_client", re.IGNORECASE)


def lesson_notebook(folder: Path, stem: str, body: str) -> Path:
    """A quick notebook named like a lesson, so the course's rules and headline apply to it."""
    return write_parameterised_notebook(
        folder / f"{stem}.ipynb", 'epochs = 1  # an int\nsmoke = False  # a bool\noutput_dir = ""  # where metrics go', body)


@pytest.mark.slow
def test_a_run_ends_with_one_line_per_notebook_and_no_kernel_warnings(tmp_path):
    ok = lesson_notebook(tmp_path, "01_teacher_training",
                         "import json, pathlib\npathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
                         "json.dump({'teacher_accuracy': 0.93}, open(pathlib.Path(output_dir) / 'metrics.json', 'w'))")
    bad = lesson_notebook(tmp_path, "02_soft_targets", "raise RuntimeError('deliberate failure')")
    # A subprocess, so the kernels' own stderr (inherited from this process) is captured too.
    done = subprocess.run([sys.executable, "-m", "kdlab", "run", str(ok), str(bad), "--smoke", "--out",
                           str(tmp_path / "runs")], check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # one notebook failed
    noise = [line for line in done.stderr.splitlines() if KERNEL_WARNINGS.search(line)]
    assert not noise, done.stderr
    lines = done.stdout.splitlines()
    summary = r"^01_teacher_training +\d+\.\d min  teacher test accuracy 93\.00%$"
    assert re.search(summary, done.stdout, re.MULTILINE), lines
    failed = next(line for line in lines if line.startswith("02_soft_targets ") and " min " in line)
    assert "FAILED" in failed and "RuntimeError: deliberate failure" in failed
    record = json.loads(next((tmp_path / "runs").glob("run-*/run.json")).read_text())
    first, second = record["notebooks"]
    assert first["headline"] == "teacher test accuracy 93.00%" and first["seconds"] > 0
    assert second["status"] == "failed" and "deliberate failure" in second["error"] and "headline" not in second


@pytest.mark.slow
def test_a_sweep_prints_its_own_lines_and_the_real_errors_but_no_library_noise(tmp_path):
    path = write_parameterised_notebook(
        tmp_path / "97_noisy.ipynb", 'seed = 0  # an int\nsmoke = False  # a bool\noutput_dir = ""  # where metrics go',
        "import json, os, pathlib\n"
        "if seed == 1:\n"
        "    os.write(2, b'kdlab-test: a problem the kernel wrote to its stderr\\n')\n"
        "    raise RuntimeError('deliberate failure')\n"
        "pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
        "json.dump({'accuracy': 0.9}, open(pathlib.Path(output_dir) / 'metrics.json', 'w'))")
    # A subprocess whose stderr is a pipe, not a terminal: what a log file of the sweep would hold.
    done = subprocess.run([sys.executable, "-m", "kdlab", "sweep", str(path), "-p", "seed", "0", "1", "-j", "2",
                           "--out", str(tmp_path / "runs")], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # one point failed
    noise = [line for line in done.stderr.splitlines() if KERNEL_WARNINGS.search(line)]
    assert not noise, done.stderr
    assert "Traceback" not in done.stderr and "point/s" not in done.stderr, done.stderr  # no bar drawn into a log
    # What is not noise still shows: the kernel's own stderr, and the failure in one line.
    assert "kdlab-test: a problem the kernel wrote to its stderr" in done.stderr
    assert re.search(r"^FAILED seed=1: RuntimeError: deliberate failure \(cell \[\d+\]\)", done.stdout, re.MULTILINE), \
        done.stdout
    assert "[1/2] seed=0: finished" in done.stdout and "[2/2] seed=1: FAILED" in done.stdout


def test_an_out_of_range_value_stops_before_anything_runs(tmp_path, capsys):
    # The course's range rules apply to every lesson that declares the parameter.
    assert cli.main(["run", "-p", "epochs", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "epochs=0" in err and ">= 1" in err
    nb = fixture_notebook(tmp_path)
    lesson = nb.rename(tmp_path / "04_student_comparison.ipynb")
    assert cli.main(["run", str(lesson), "-p", "temperature", "-1", "--out", str(tmp_path)]) == 2
    assert "temperature=-1.0" in capsys.readouterr().err
    assert not list(tmp_path.glob("run-*"))


def test_a_notebook_outside_the_course_has_no_range_rules(tmp_path):
    nb = fixture_notebook(tmp_path)  # 99_fixture is not a lesson
    assert runner.validate({"temperature": -1.0}, [nb])[nb] == {"temperature": -1.0}


def _notebook_with(path: Path, code_cells: int) -> Path:
    cells = [new_markdown_cell("# title")] + [new_code_cell(f"x = {i}") for i in range(code_cells)]
    nbformat.write(new_notebook(cells=cells + [new_code_cell("   ")]), path)  # an empty cell is not run
    return path


def test_progress_bar_counts_the_cells_of_every_notebook(tmp_path):
    first, second = _notebook_with(tmp_path / "01_a.ipynb", 2), _notebook_with(tmp_path / "02_b.ipynb", 1)
    progress = runner.CellProgress([first, second], file=io.StringIO(), disable=False)
    assert progress.bar.total == 5  # 2 + 1 cells, plus one injected parameters cell each
    for path in (first, second):
        hooks = progress.start(path)
        executed = nbformat.read(path, as_version=4)
        executed.cells.insert(1, new_code_cell("smoke = True"))  # as papermill injects it
        hooks["on_notebook_start"](notebook=executed)
        for index, cell in enumerate(executed.cells):
            hooks["on_cell_start"](cell=cell, cell_index=index)
        assert f"{path.stem}  cell {len(executed.cells) - 2}/{len(executed.cells) - 2}" in progress.bar.desc
        progress.finish()
    assert progress.bar.n == progress.bar.total == 5
    progress.close()


def test_a_failed_notebook_still_completes_its_share_of_the_bar(tmp_path):
    path = _notebook_with(tmp_path / "01_a.ipynb", 3)
    progress = runner.CellProgress([path], file=io.StringIO(), disable=False)
    hooks = progress.start(path)
    hooks["on_cell_start"](cell=new_code_cell("x = 0"), cell_index=1)  # fails in its first cell
    progress.finish("01_a FAILED: RuntimeError")
    assert progress.bar.n == progress.bar.total == 4
    progress.close()


def test_summary_lines_give_time_and_headline_or_failure():
    record = {"notebooks": [
        {"notebook": "03_temperature.ipynb", "status": "ok", "seconds": 126.0, "headline": "best alpha=0.9"},
        {"notebook": "04_student_comparison.ipynb", "status": "failed", "seconds": 3.0,
         "error": "ValueError: bad (cell [4])"},
        {"notebook": "99_mine.ipynb", "status": "ok", "seconds": 6.0, "headline": None}]}
    assert runner.summary_lines(record) == [
        "03_temperature           2.1 min  best alpha=0.9",
        ("04_student_comparison    0.1 min  FAILED  ValueError: bad (cell [4])"
         "  (traceback in 04_student_comparison.ipynb)"),
        "99_mine                  0.1 min"]


def test_failure_is_the_cells_exception_in_one_line():
    from papermill.exceptions import PapermillExecutionError

    err = PapermillExecutionError(cell_index=3, exec_count=4, source="1/0", ename="ZeroDivisionError",
                                  evalue="division by zero", traceback=["long", "traceback"])
    assert runner.failure(err) == "ZeroDivisionError: division by zero (cell [4])"
    assert runner.failure(RuntimeError("kernel died\nmore")) == "RuntimeError: kernel died"


def test_kernels_are_started_with_transport_encryption_when_available():
    import zmq

    config = runner.kernel_config()
    if zmq.has("curve"):
        assert config.KernelManager.transport_encryption == "auto"


def test_resume_keeps_a_parameter_that_only_a_finished_notebook_declares(tmp_path, monkeypatch):
    first = write_parameterised_notebook(tmp_path / "95_first.ipynb", 'width = 1  # an int\noutput_dir = ""', "pass")
    second = write_parameterised_notebook(tmp_path / "96_second.ipynb", 'seed = 0  # an int\noutput_dir = ""', "pass")
    folder = tmp_path / "run-1"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({
        "smoke": True, "params": {"width": 3, "seed": 1}, "planned": [str(first), str(second)],
        "notebooks": [{"notebook": first.name, "status": "ok"}, {"notebook": second.name, "status": "interrupted"}]}))
    ran = []
    monkeypatch.setattr(runner, "execute", lambda nb, executed, parameters, hooks=None: ran.append((nb, parameters)))
    assert runner.resume_run(folder) == (folder, True)
    assert ran == [(second, {"seed": 1, "output_dir": str((folder / "96_second").resolve()), "smoke": True})]
    record = json.loads((folder / "run.json").read_text())
    assert [(e["notebook"], e["status"]) for e in record["notebooks"]] == [(first.name, "ok"), (second.name, "ok")]
