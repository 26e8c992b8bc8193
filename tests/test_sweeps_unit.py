"""Sweeps without a kernel: an executor that writes each point's metrics stands in for the
notebook, and a stand-in for Dask's client lets the cluster executor run without a cluster
(the real cluster is tested in tests/test_cluster.py)."""

import csv
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest

from kdlab import cli, report, sweeps
from kdlab.files import write_json
from tests.fixtures import write_parameterised_notebook


def list_notebook(folder: Path) -> Path:
    return write_parameterised_notebook(
        folder / "98_lists.ipynb",
        'hidden = [32]  # a list\nseed = 0  # an int\nsmoke = False  # a bool\noutput_dir = ""  # where metrics go',
        "pass")


def finish_points(points, jobs, done):
    """An executor whose points finish at once, with an accuracy that depends on the point."""
    for point in points:
        hidden, seed = point.parameters["hidden"], point.parameters["seed"]
        write_json(point.folder / "metrics.json", {"accuracy": 0.8 + sum(hidden) / 10_000 + seed / 1000})
        done(point, None)


def test_a_list_valued_parameter_can_be_swept_and_summarised(tmp_path):
    nb = list_notebook(tmp_path)
    folder, failed = sweeps.sweep(nb, {"hidden": [[64], [128, 64]], "seed": [0, 1]}, {}, smoke=True,
                                  out=tmp_path / "runs", progress=False, executor=finish_points)
    assert failed == []
    rows = sweeps.point_rows(folder)
    assert sorted({r["hidden"] for r in rows}) == [(64,), (128, 64)]  # hashable: sets, group keys
    assert [(g["hidden"], g["n"]) for g in sweeps.group_ci(rows, "hidden", "accuracy")] == [((64,), 2), ((128, 64), 2)]
    with open(folder / "results.csv") as fh:
        assert sorted(r["hidden"] for r in csv.DictReader(fh)) == ["[128, 64]", "[128, 64]", "[64]", "[64]"]  # as typed
    assert (folder / "summary.png").exists()
    assert "| [128, 64] | 81.97 ± 0.64 % | 2 |" in report.write(folder)[0].read_text()  # one setting per list


def test_a_sweep_parses_its_notebook_once(tmp_path, monkeypatch):
    import papermill

    nb, parsed = list_notebook(tmp_path), []
    real = papermill.inspect_notebook
    monkeypatch.setattr(papermill, "inspect_notebook", lambda path, *a, **k: parsed.append(path) or real(path, *a, **k))
    sweeps.sweep(nb, {"seed": [0, 1, 2]}, {"hidden": [16]}, smoke=True, out=tmp_path / "runs", progress=False,
                 executor=finish_points)
    assert parsed == [str(nb)]


def fail_points(points, jobs, done):
    """An executor whose points fail leaving an empty error.txt (a process killed while writing it)."""
    for point in points:
        (point.folder / "error.txt").write_text("")
        done(point, "failed")


def test_a_failed_point_with_an_empty_error_file_is_reported_as_failed(tmp_path):
    nb = list_notebook(tmp_path)
    folder, failed = sweeps.sweep(nb, {"seed": [0]}, {}, smoke=True, out=tmp_path / "runs", progress=False,
                                  executor=fail_points)
    assert failed == ["seed=0"]
    assert "1 failed" in report.sweep_context(folder)["summary"]


# --- the cluster executor, against a stand-in for Dask ------------------------------------------

WORKER = "tcp://127.0.0.1:40000"


class FakeFuture:
    def __init__(self, key, result):
        self.key, self._result = key, result

    def result(self):
        return self._result

    def release(self):
        pass


class FakeClient:
    """The Client calls kdlab.cluster makes; a submitted point runs at once, on a "worker" whose
    working directory is ``worker_cwd``, writing its metrics.json into the ``point_dir`` it got."""

    def __init__(self, address, worker_cwd: Path, **_):
        self.worker_cwd, self.submitted, self.loop = worker_cwd, [], None

    def wait_for_workers(self, n, timeout=None):
        pass

    def run(self, fn, *args, on_error=None):  # as Client.run: dask_worker for a function that asks for it
        kwargs = {"dask_worker": SimpleNamespace(state=SimpleNamespace(nthreads=1))} \
            if "dask_worker" in inspect.signature(fn).parameters else {}
        return {WORKER: fn(*args, **kwargs)}

    def nthreads(self):
        return {WORKER: 1}

    def submit(self, fn, *args, key, pure, **kwargs):
        self.submitted.append(kwargs)
        point = self.worker_cwd / kwargs["point_dir"]  # a worker resolves a relative path against its own cwd
        point.mkdir(parents=True, exist_ok=True)
        (point / "metrics.json").write_text('{"accuracy": 0.9}')
        return FakeFuture(key, {"error": None, "checkpoints": {}})

    def cancel(self, futures, force=False):
        pass

    def close(self):
        pass


class FakeVariable:
    live: dict = {}  # the Variables the "scheduler" holds, by name

    def __init__(self, name, client=None):
        self.name = name

    def set(self, value):
        self.live[self.name] = value

    def delete(self):
        self.live.pop(self.name, None)


class FakeAsCompleted:
    def __init__(self, loop=None):
        self.futures = []

    def add(self, future):
        self.futures.append(future)

    def __next__(self):
        return self.futures.pop(0)


@pytest.fixture
def fake_dask(tmp_path, monkeypatch):
    """Dask's Client, Variable and as_completed replaced; the working directory is tmp_path."""
    distributed = pytest.importorskip("distributed")
    clients = []
    monkeypatch.setattr(distributed, "Client", lambda address, **k: clients.append(
        FakeClient(address, tmp_path / "worker")) or clients[-1])
    monkeypatch.setattr(distributed, "Variable", FakeVariable)
    monkeypatch.setattr(distributed, "as_completed", FakeAsCompleted)
    monkeypatch.setattr(FakeVariable, "live", {})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shared").mkdir()
    return clients


def test_cluster_points_get_absolute_folders_and_their_variables_go_when_done(tmp_path, fake_dask):
    from kdlab import cluster

    nb = list_notebook(tmp_path)
    points = [sweeps.Point(nb, Path("shared", "sweep", f"seed={s}"), {"seed": s}) for s in (0, 1)]
    for point in points:
        point.folder.mkdir(parents=True)
    pool = cluster.Cluster("tcp://127.0.0.1:8786", shared_dir="shared")
    ended = []
    pool.run_points(points, 1, lambda point, error: ended.append((point.name, error)))
    assert ended == [("seed=0", None), ("seed=1", None)]
    assert [s["point_dir"] for s in fake_dask[0].submitted] == [str(p.folder.resolve()) for p in points]
    assert FakeVariable.live == {}  # each point's Variable is deleted once the point is done, not at close()
    pool.close()


def test_a_relative_shared_dir_reaches_the_workers_resolved(tmp_path, fake_dask, capsys):
    nb = list_notebook(tmp_path)
    code = cli.main(["sweep", str(nb), "-p", "seed", "0", "1", "--scheduler", "tcp://127.0.0.1:8786",
                     "--shared-dir", "shared"])
    assert code == 0
    folder = next((tmp_path / "shared").glob("sweep-98_lists-*"))
    assert f"sweep folder: {folder}" in capsys.readouterr().out  # the folder the workers see, not a relative one
    assert len(sweeps.point_rows(folder)) == 2 and not (tmp_path / "worker").exists()
