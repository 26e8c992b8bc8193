"""Ctrl-C during `kdlab sweep` and `kdlab run`: one line, no traceback, nothing half-written,
nothing left running, and the printed command resumes; a second Ctrl-C stops at once.

A terminal's Ctrl-C sends SIGINT to its foreground process group. Each test starts kdlab in
a session of its own and sends SIGINT to that group, as a terminal would, once the notebook
it interrupts is known to be running (a marker file), never after a fixed time.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import write_parameterised_notebook

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="sends SIGINT to a process group, as a terminal does")

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 300  # a ceiling on waiting for a condition (two shared cores, kernels starting), never a measurement


def gated_notebook(path: Path, block: bool) -> Path:
    """A notebook that logs each execution, writes `started` in its output folder and, where
    `block` is true and `seed` is at least 1, waits while the file `gate` exists."""
    return write_parameterised_notebook(
        path,
        f'seed = 0  # an int\nblock = {block}  # wait at the gate\nsmoke = False  # a bool\n'
        'output_dir = ""  # where metrics go\ngate = ""  # wait while this file exists\n'
        'log_file = ""  # executions are appended here',
        "import json, os, pathlib, time\n"
        "open(log_file, 'a').write(f'{pathlib.Path(output_dir).name} {seed}\\n')\n"
        "out = pathlib.Path(output_dir)\nout.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'started').write_text('')\n"
        "while block and seed >= 1 and os.path.exists(gate):\n    time.sleep(0.1)\n"
        "json.dump({'accuracy': 0.9 + seed / 100}, open(out / 'metrics.json', 'w'))")


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kdlab", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"kdlab ended before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"waited {WAIT_S} s for {what}")
        time.sleep(0.2)


def ctrl_c(process: subprocess.Popen) -> tuple[str, str]:
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    return process.communicate(timeout=WAIT_S)


def processes_in(folder: Path) -> list:
    """Processes still alive whose working folder or command line names ``folder``: the kernels
    (they run in the notebook's folder) and the points' processes."""
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline", "status"]):
        try:
            info = proc.info
            names = [info.get("cwd") or "", *(info.get("cmdline") or [])]
            if info.get("status") != psutil.STATUS_ZOMBIE and any(str(folder) in n for n in names):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def nothing_left_running(folder: Path) -> None:
    # The kernels were killed before kdlab exited; give the system a moment to reap them.
    deadline = time.monotonic() + 30
    while processes_in(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_in(folder), [p.info for p in processes_in(folder)]


def kdlab_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("kdlab:")]


def resume(line: str) -> subprocess.CompletedProcess:
    """Run the command that the interrupt line ``line`` printed, and check that it succeeds."""
    command = shlex.split(line.split("Resume with: ", 1)[1])
    assert command[0] == "kdlab"
    resumed = subprocess.run([sys.executable, "-m", "kdlab", *command[1:]], cwd=ROOT, capture_output=True, text=True,
                             timeout=WAIT_S)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return resumed


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_cleanly_and_the_printed_command_resumes_it(tmp_path):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    nb = gated_notebook(notebooks / "96_gated.ipynb", block=True)
    gate, log, out = tmp_path / "gate", tmp_path / "log.txt", tmp_path / "runs"
    gate.write_text("closed")
    (tmp_path / "p.yaml").write_text(f"gate: {gate}\nlog_file: {log}\n")
    args = ["sweep", str(nb), "-p", "seed", "0", "1", "2", "-f", str(tmp_path / "p.yaml"), "-j", "2", "--out", str(out)]
    sweep = start(args)
    points = lambda: list(out.glob("sweep-96_gated-*/seed=*"))
    # Seed 0 runs alone and finishes; seeds 1 and 2 then run side by side, waiting at the gate.
    wait_for(lambda: sum((p / "started").exists() for p in points()) == 3, sweep, "all three points to start")
    stdout, stderr = ctrl_c(sweep)

    assert sweep.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    lines = kdlab_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kdlab: interrupted: 1 of 3 points finished, 2 did not (seed=1, seed=2); results.csv "
                               "holds the finished ones. Resume with: kdlab sweep "), lines[0]
    folder = next(out.glob("sweep-96_gated-*"))
    with open(folder / "results.csv") as fh:
        assert [r["seed"] for r in csv.DictReader(fh)] == ["0"]
    assert not (folder / "seed=1" / "metrics.json").exists() and not (folder / "seed=2" / "metrics.json").exists()
    assert not list(folder.rglob(".*.tmp")), "a write was left half-done"
    nothing_left_running(tmp_path)

    gate.unlink()
    resumed = resume(lines[0])
    assert "3 points, 1 already finished, 2 to run" in resumed.stdout
    assert f"sweep folder: {folder}" in resumed.stdout  # the same folder, not a new one
    with open(folder / "results.csv") as fh:
        assert sorted(r["seed"] for r in csv.DictReader(fh)) == ["0", "1", "2"]
    executions = log.read_text().split("\n")
    assert executions.count("seed=0 0") == 1  # the finished point did not run again


@pytest.mark.slow
def test_ctrl_c_stops_a_run_cleanly_and_run_resume_finishes_it(tmp_path):
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    first = gated_notebook(notebooks / "95_first.ipynb", block=False)
    second = gated_notebook(notebooks / "96_second.ipynb", block=True)
    gate, log, out = tmp_path / "gate", tmp_path / "log.txt", tmp_path / "runs"
    gate.write_text("closed")
    run = start(["run", str(first), str(second), "-p", "seed", "1", "-p", "gate", str(gate), "-p", "log_file", str(log),
                 "--out", str(out)])
    wait_for(lambda: bool(list(out.glob("run-*/96_second/started"))), run, "the second notebook to start")
    stdout, stderr = ctrl_c(run)

    assert run.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    lines = kdlab_lines(stderr)
    folder = next(out.glob("run-*"))
    assert lines == [f"kdlab: interrupted: finished 95_first; stopped 96_second. Resume with: kdlab run --resume "
                     f"{shlex.quote(str(folder))}"], stderr
    record = json.loads((folder / "run.json").read_text())
    assert [(e["notebook"], e["status"]) for e in record["notebooks"]] == [("95_first.ipynb", "ok"),
                                                                            ("96_second.ipynb", "interrupted")]
    assert not (folder / "96_second" / "metrics.json").exists()
    nothing_left_running(tmp_path)

    gate.unlink()
    resumed = resume(lines[0])
    assert "2 notebooks, 1 already finished, 1 to run" in resumed.stdout
    record = json.loads((folder / "run.json").read_text())
    assert [(e["notebook"], e["status"]) for e in record["notebooks"]] == [("95_first.ipynb", "ok"),
                                                                            ("96_second.ipynb", "ok")]
    assert record["resumed"] and record["end"]
    assert log.read_text().split("\n").count("95_first 1") == 1  # the finished notebook did not run again


def test_resume_refuses_what_it_cannot_resume(tmp_path, capsys):
    from kdlab import cli

    assert cli.main(["run", "--resume", str(tmp_path)]) == 2
    assert "has no run.json" in capsys.readouterr().err
    assert cli.main(["run", "--resume", str(tmp_path), "-p", "seed", "1"]) == 2
    assert "--resume RUN_DIR takes no notebooks, parameters" in capsys.readouterr().err


SECOND_CTRL_C = """
import os, signal, sys, time
from kdlab import interrupts

child = interrupts.start_process([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
with interrupts.ctrl_c(lambda: "Resume with: kdlab sweep ..."):
    try:
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C
        time.sleep(600)
    except KeyboardInterrupt:
        print("first Ctrl-C: cleaning up", flush=True)
        os.kill(os.getpid(), signal.SIGINT)  # the second, while the first is cleaned up
        time.sleep(600)
print("cleanup finished", flush=True)
"""


def test_a_second_ctrl_c_stops_at_once_and_takes_the_points_with_it():
    done = subprocess.run([sys.executable, "-c", SECOND_CTRL_C], cwd=ROOT, capture_output=True, text=True,
                          timeout=WAIT_S)
    assert done.returncode == 130, done.stdout + done.stderr
    assert "first Ctrl-C: cleaning up" in done.stdout and "cleanup finished" not in done.stdout  # no waiting
    assert "kdlab: stopped at once (second Ctrl-C). Resume with: kdlab sweep ..." in done.stderr
    assert "Traceback" not in done.stderr
    child = int(done.stdout.split()[0])  # the point process it had started
    deadline = time.monotonic() + 30
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the point's process outlived the second Ctrl-C"
        time.sleep(0.2)


def test_a_killed_kernel_ends_the_notebook_and_the_interrupt_goes_on(tmp_path):
    """In-process: KeyboardInterrupt while a notebook runs stops its kernel before going on."""
    import threading

    from kdlab import runner

    nb = gated_notebook(tmp_path / "96_gated.ipynb", block=True)
    gate = tmp_path / "gate"
    gate.write_text("closed")
    output = tmp_path / "out"
    errors = []

    def interrupt_when_started():
        deadline = time.monotonic() + WAIT_S
        while not (output / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)  # to the process, as Ctrl-C: the main thread raises KeyboardInterrupt

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        try:
            runner.execute(nb, tmp_path / "executed.ipynb", {"seed": 1, "gate": str(gate), "output_dir": str(output),
                                                              "log_file": str(tmp_path / "log.txt")})
        except Exception as err:  # noqa: BLE001 - the test says what went wrong
            errors.append(err)
    assert not errors and (output / "started").exists()
    assert not (output / "metrics.json").exists()
    nothing_left_running(tmp_path)  # the kernel ran in the notebook's folder
