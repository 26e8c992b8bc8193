"""`kdlab sweep --scheduler`: sweep points on a Dask cluster (kdlab.cluster).

A scheduler and two worker processes run on 127.0.0.1 inside the test session (one
LocalCluster for the module); no test reaches any other address. The points run a
one-second notebook that can fail, kill the worker running it, or wait, on request.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="needs the optional kdlab[cluster] extra")

import kdlab  # noqa: E402
from kdlab import cli, cluster, sweeps  # noqa: E402
from kdlab.errors import ClusterError, ParameterError  # noqa: E402
from tests.fixtures import write_parameterised_notebook  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
WORKERS = 2

PARAMETERS = '''temperature = 4.0  # a float
seed = 0  # an int
smoke = False  # a bool
output_dir = ""  # where metrics go
checkpoint_dir = ""  # where the "teacher" goes
log_file = ""  # each execution appends a line here
fail_marker = ""  # the point (2.0, 1) fails while this file exists
kill_marker = ""  # ... kills the worker running it while this file exists ("once": and removes it)
hold_marker = ""  # points at temperature 2.0 wait while this file exists'''

BODY = '''import json, os, pathlib, random, time
import psutil
point_process = psutil.Process(os.getppid())  # kernel -> point's process -> worker (or the local sweep)
worker_pid = point_process.ppid()
if log_file:
    with open(log_file, "a") as fh:
        fh.write(f"{temperature},{seed},{worker_pid}\\n")
this_point = temperature == 2.0 and seed == 1
if kill_marker and this_point and os.path.exists(kill_marker):
    assert "kdlab.cluster" in " ".join(point_process.cmdline()), "not on a Dask worker"
    if pathlib.Path(kill_marker).read_text() == "once":
        os.remove(kill_marker)
    os.kill(worker_pid, 9)
    time.sleep(120)  # the point's process sees its worker die and stops this kernel
if fail_marker and this_point and os.path.exists(fail_marker):
    raise RuntimeError("deliberate failure")
while hold_marker and temperature == 2.0 and os.path.exists(hold_marker):
    time.sleep(0.2)
teacher = pathlib.Path(checkpoint_dir) / "teacher.txt"
trained = not teacher.exists()
if trained:  # the first point "trains" a teacher; the others must be given the same one
    teacher.parent.mkdir(parents=True, exist_ok=True)
    teacher.write_text(str(random.random()))
out = pathlib.Path(output_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "figure.png").write_bytes(b"not really a png")
metrics = {"accuracy": 0.9 + temperature / 100 + seed / 1000, "smoke": smoke,
           "teacher_token": float(teacher.read_text()), "trained_teacher": trained, "output_dir": output_dir,
           "omp_threads": os.environ.get("OMP_NUM_THREADS", "")}
with open(out / "metrics.json", "w") as fh:
    json.dump(metrics, fh)'''


def fixture_notebook(folder: Path) -> Path:
    return write_parameterised_notebook(folder / "98_cluster_fixture.ipynb", PARAMETERS, BODY)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two single-thread worker processes (with nannies, which restart a
    killed worker), all listening on 127.0.0.1; the workers' scratch folders go to a
    temporary folder of their own, so a test can see what they leave behind."""
    from distributed import Client, LocalCluster

    scratch = tmp_path_factory.mktemp("workers-tmp")
    local = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host=HOST, scheduler_port=0,
                         dashboard_address=None, protocol="tcp", env={"TMPDIR": str(scratch)})
    client = Client(local, set_as_default=False)
    try:
        yield local.scheduler_address, client, scratch
    finally:
        client.close()
        local.close()


@pytest.fixture
def address(dask_cluster):
    """The scheduler's address, once both workers are up (a test may have killed one)."""
    scheduler, client, _ = dask_cluster
    assert scheduler.startswith(f"tcp://{HOST}:")
    client.wait_for_workers(WORKERS, timeout=120)
    return scheduler


def leftovers(dask_cluster, wait: float = 30) -> list[str]:
    """The workers' scratch folders still there after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = sorted(p.name for p in dask_cluster[2].glob("kdlab-point-*"))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture
def setup(tmp_path):
    nb = fixture_notebook(tmp_path)
    log = tmp_path / "log.txt"
    return nb, log, {"log_file": str(log)}


def executions(log: Path) -> list[tuple[str, str, str]]:
    return [tuple(line.split(",")) for line in log.read_text().split()] if log.exists() else []


def rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv") as fh:
        return list(csv.DictReader(fh))


def cluster_sweep(address, nb, grid, fixed, out, **options):
    with cluster.Cluster(address, **options) as pool:
        return sweeps.sweep(nb, grid, fixed, smoke=True, out=out, progress=False, executor=pool.run_points)


GRID = {"temperature": [1.0, 2.0], "seed": [0, 1]}


@pytest.mark.slow
def test_a_2x2_sweep_on_the_cluster_equals_the_local_sweep(address, setup, tmp_path, capsys):
    nb, log, fixed = setup
    local, failed = sweeps.sweep(nb, GRID, fixed, smoke=True, out=tmp_path / "local", jobs=2, progress=False)
    assert failed == []
    log.unlink()
    # On the cluster, one notebook fails the first time: it is recorded and the sweep goes on.
    marker = tmp_path / "fail"
    marker.write_text("fail")
    fixed = {**fixed, "fail_marker": str(marker)}
    folder, failed = cluster_sweep(address, nb, GRID, fixed, tmp_path / "cluster")
    assert f"Dask cluster at {address}: {WORKERS} workers" in capsys.readouterr().out
    assert failed == ["temperature=2.0,seed=1"] and len(rows(folder)) == 3
    error = (folder / failed[0] / "error.txt").read_text()
    assert "RuntimeError" in error and "deliberate failure" in error
    assert (folder / failed[0] / "executed.ipynb").exists()  # with the failing cell's traceback
    # The same command again runs only the failed point.
    marker.unlink()
    folder, failed = cluster_sweep(address, nb, GRID, fixed, tmp_path / "cluster")
    assert failed == [] and "4 points, 3 already finished, 1 to run" in capsys.readouterr().out
    assert not (folder / "temperature=2.0,seed=1" / "error.txt").exists()
    runs = [e[:2] for e in executions(log)]
    assert len(runs) == 5 and runs.count(("2.0", "1")) == 2
    # The same rows as the local sweep, apart from the teacher each sweep trained for itself.
    ours, theirs = rows(folder), rows(local)
    for row in ours + theirs:
        row.pop("teacher_token")
    assert ours == theirs and len(ours) == 4
    assert {(r["temperature"], r["smoke"]) for r in ours} == {("1.0", "True"), ("2.0", "True")}
    # Everything came back into the sweep folder on this machine; the notebooks wrote elsewhere.
    for row in rows(folder):
        pdir = folder / f"temperature={row['temperature']},seed={row['seed']}"
        assert {"parameters.json", "executed.ipynb", "figure.png", "metrics.json"} <= {p.name for p in pdir.iterdir()}
        assert not json.loads((pdir / "metrics.json").read_text())["output_dir"].startswith(str(folder))
        assert json.loads((pdir / "parameters.json").read_text())["output_dir"] == str(pdir.resolve())
    # Each kernel had the threads it has in a local sweep: a point run alone (the first, and the
    # rerun of the failed one) all of them; the others a share of the cores of this machine,
    # which both workers run on.
    if "OMP_NUM_THREADS" not in os.environ:
        threads = {p.parent.name: json.loads(p.read_text())["omp_threads"] for p in folder.glob("*/metrics.json")}
        assert threads == {"temperature=1.0,seed=0": "", "temperature=2.0,seed=1": "",
                           "temperature=1.0,seed=1": str(sweeps.threads_per_job(2)),
                           "temperature=2.0,seed=0": str(sweeps.threads_per_job(2))}
    assert (folder / "summary.png").exists()
    # The first point trained the teacher alone; it came back, and went out to the other points.
    token = (folder / "checkpoints" / "teacher.txt").read_text()
    assert {r["teacher_token"] for r in rows(folder)} == {str(float(token))}
    assert sorted(r["trained_teacher"] for r in rows(folder)) == ["False", "False", "False", "True"]


@pytest.mark.slow
def test_a_point_whose_worker_dies_is_retried_once_on_another_worker(address, dask_cluster, setup, tmp_path):
    nb, log, fixed = setup
    marker = tmp_path / "kill"
    marker.write_text("once")
    grid = {"temperature": [2.0], "seed": [1]}
    folder, failed = cluster_sweep(address, nb, grid, {**fixed, "kill_marker": str(marker)}, tmp_path / "runs")
    assert failed == []
    assert not marker.exists()  # the first attempt did kill its worker
    attempts = executions(log)
    assert len(attempts) == 2 and attempts[0][2] != attempts[1][2]  # two worker processes
    assert len(rows(folder)) == 1
    assert leftovers(dask_cluster) == []  # the killed worker's point cleaned up after itself


@pytest.mark.slow
def test_a_point_whose_workers_die_twice_is_recorded_as_failed_with_the_reason(address, dask_cluster, setup,
                                                                              tmp_path):
    nb, log, fixed = setup
    marker = tmp_path / "kill"
    marker.write_text("always")
    grid = {"temperature": [2.0], "seed": [1]}
    folder, failed = cluster_sweep(address, nb, grid, {**fixed, "kill_marker": str(marker)}, tmp_path / "runs")
    assert failed == ["temperature=2.0,seed=1"]
    error = (folder / failed[0] / "error.txt").read_text()
    assert error.startswith("WorkerDied") and "died 2 times" in error and error.count(f"tcp://{HOST}:") == 2
    assert len(executions(log)) == 2  # retried once, not three times (Dask's own limit)
    assert not (folder / failed[0] / "metrics.json").exists()
    assert leftovers(dask_cluster) == []


def test_workers_with_another_kdlab_version_are_refused_before_anything_runs(address, setup, tmp_path, capsys,
                                                                              monkeypatch):
    nb, log, _ = setup
    real = kdlab.__version__
    monkeypatch.setattr(kdlab, "__version__", "0.0.0+elsewhere")
    code = cli.main(["sweep", str(nb), "-p", "seed", "0", "1", "-p", "log_file", str(log), "--out",
                     str(tmp_path / "runs"), "--scheduler", address])
    err = capsys.readouterr().err
    assert code == 2
    assert "this machine runs kdlab 0.0.0+elsewhere" in err and f"has {real}" in err
    assert "Nothing was submitted" in err and err.count(f"tcp://{HOST}:") >= WORKERS
    assert not (tmp_path / "runs").exists() and not log.exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def test_an_unreachable_scheduler_is_a_clear_error_before_anything_runs(setup, tmp_path, capsys, monkeypatch):
    nb, log, _ = setup
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1.0)
    nobody = f"tcp://{HOST}:{_free_port()}"
    monkeypatch.setenv("KDLAB_SCHEDULER", nobody)  # the environment variable is read like --scheduler
    code = cli.main(["sweep", str(nb), "-p", "seed", "0", "-p", "log_file", str(log), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot reach the Dask scheduler at {nobody}" in err and "Nothing has run" in err
    assert not (tmp_path / "runs").exists() and not log.exists()


def test_bad_cluster_options_name_the_option(tmp_path):
    with pytest.raises(ParameterError, match="not a scheduler address.*tcp://"):
        cluster.connect("10.0.0.5:8786")
    with pytest.raises(ParameterError, match="-j/--jobs=4"):
        cluster.connect(f"tcp://{HOST}:8786", jobs=4)
    with pytest.raises(ParameterError, match="--out or --shared-dir"):
        cluster.connect(f"tcp://{HOST}:8786", shared_dir=tmp_path, out=tmp_path / "elsewhere")
    with pytest.raises(ParameterError, match="--shared-dir needs a scheduler"):
        cluster.connect(None, shared_dir=tmp_path)
    with pytest.raises(ClusterError, match="does not exist"):
        cluster.Cluster(f"tcp://{HOST}:8786", shared_dir=tmp_path / "nowhere")


def test_kernels_share_the_cores_of_their_machine_among_all_its_workers(monkeypatch):
    threads = {f"tcp://{HOST}:1001": 1, f"tcp://{HOST}:1002": 3, "tcp://10.1.2.3:1001": 4}
    assert cluster.threads_per_host(threads) == {HOST: 4, "10.1.2.3": 4}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the Dask nanny sets for numpy tasks: replaced
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # what a user set: kept
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    env = cluster.point_environment(1)  # one point at a time on this machine: all of its cores
    share = str(sweeps.threads_per_job(1))
    assert env["OMP_NUM_THREADS"] == share and env["OPENBLAS_NUM_THREADS"] == share and env["MKL_NUM_THREADS"] == "3"
    alone = cluster.point_environment(None)  # a point run alone: torch picks, as in a local sweep
    assert "OMP_NUM_THREADS" not in alone and alone["MKL_NUM_THREADS"] == "3"


def test_files_from_a_worker_stay_inside_the_point_folder(tmp_path):
    cluster.deliver({"metrics.json": b"{}", "figs/a.png": b"png"}, tmp_path)
    assert (tmp_path / "figs" / "a.png").read_bytes() == b"png"
    for name in ("../escape.txt", "/etc/escape.txt"):
        with pytest.raises(ClusterError, match="outside the point's folder"):
            cluster.deliver({name: b"x"}, tmp_path)


@pytest.mark.slow
def test_workers_sharing_a_folder_write_the_points_themselves(address, setup, tmp_path, capsys):
    nb, log, fixed = setup
    shared = tmp_path / "shared"
    shared.mkdir()
    grid = {"temperature": [1.0], "seed": [0, 1]}
    folder, failed = cluster_sweep(address, nb, grid, fixed, shared, shared_dir=shared)
    assert failed == [] and folder.parent == shared and len(rows(folder)) == 2
    assert f"workers write to {shared}" in capsys.readouterr().out
    # Here the notebooks wrote to a scratch folder, then the workers copied the results over.
    metrics = json.loads((folder / "temperature=1.0,seed=1" / "metrics.json").read_text())
    assert metrics["trained_teacher"] is False  # the teacher came through the shared folder
    assert (folder / "checkpoints" / "teacher.txt").exists()
    assert not list(shared.glob(".kdlab-probe-*"))


def _point_processes() -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "from kdlab.cluster import point_process" in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.mark.slow
def test_ctrl_c_stops_the_cluster_sweep_and_the_same_command_resumes_it(address, dask_cluster, setup, tmp_path,
                                                                       capsys):
    nb, log, _ = setup
    hold = tmp_path / "hold"
    hold.write_text("wait")
    command = [sys.executable, "-m", "kdlab", "sweep", str(nb), "-p", "temperature", "1", "2", "-p", "log_file",
               str(log), "-p", "hold_marker", str(hold), "--out", str(tmp_path / "runs"), "--smoke",
               "--scheduler", address]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Wait until temperature=1.0 has finished and temperature=2.0 is running (and waiting).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            finished = list((tmp_path / "runs").glob("sweep-*/*/metrics.json"))
            if len(finished) == 1 and [e[0] for e in executions(log)] == ["1.0", "2.0"]:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "interrupted" in output, output
    folder = next((tmp_path / "runs").glob("sweep-*"))
    assert len(rows(folder)) == 1
    # The point that was running was stopped on its worker, not left computing.
    deadline = time.monotonic() + 60
    while _point_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _point_processes() == [] and leftovers(dask_cluster) == []
    hold.unlink()
    assert cli.main(command[3:]) == 0  # the same command, in this process
    assert "2 points, 1 already finished, 1 to run" in capsys.readouterr().out
    assert len(rows(folder)) == 2
    # The finished point ran once; the stopped one twice (stopped, then resumed).
    assert [e[0] for e in executions(log)] == ["1.0", "2.0", "2.0"]
