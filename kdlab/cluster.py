"""Sweep points on a Dask distributed cluster: ``kdlab sweep ... --scheduler tcp://HOST:PORT``.

A sweep (:func:`kdlab.sweeps.sweep`) runs its points through one executor; with a
scheduler that executor is :meth:`Cluster.run_points`, and everything else stays the
local sweep's: the sweep folder on this machine, ``results.csv``, ``summary.png``, the
progress bar, Ctrl-C, and resuming (a point is done when its ``metrics.json`` exists;
the same command again runs only the unfinished and failed points).

Each point is one papermill execution on a worker, in a scratch folder of its own and a
process of its own (:func:`point_process`, as in a local sweep):

* the client sends the notebook and, when the point uses the sweep's own checkpoint
  folder, the checkpoints in it (the first point runs alone, so a teacher it trains
  reaches the others, as in a local sweep);
* the worker sends back the executed notebook, ``metrics.json``, the figures,
  ``error.txt`` and any new checkpoint; the client writes them into the point's folder,
  ``metrics.json`` last;
* with ``--shared-dir DIR`` (a folder every worker sees at the same path) the sweep
  folder goes under DIR and the workers write the points there themselves.

Faults are found before anything runs, or recorded as a local sweep records them:

* a scheduler that cannot be reached, no workers, workers without kdlab or with another
  kdlab version than this client, a ``--shared-dir`` a worker cannot see:
  :class:`~kdlab.errors.ClusterError`, and nothing is submitted;
* a worker that dies mid-point: Dask gives the point to another worker; if that one dies
  too (:data:`RETRIES`), the point is recorded as failed, naming both workers (a scheduler
  whose ``distributed.scheduler.allowed-failures`` is below its default of 3 may give up
  sooner: that is recorded too);
* a notebook that fails: ``error.txt`` in the point's folder, and the sweep goes on.

Workers are started from an environment with ``pip install "kdlab[cluster]"``:
``dask worker tcp://HOST:8786 --nthreads 2`` (``--nthreads``: points at once on that
worker; each point's kernel gets an equal share of its machine's cores, counting every
worker thread there). A Dask scheduler runs whatever its clients send: keep it on a
network you trust, or use ``tls://`` addresses with Dask's TLS settings.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from . import interrupts, sweeps
from .errors import ClusterError, ParameterError
from .files import atomic_write, write_json

#: Times a point whose worker died is given to another worker before it is recorded as failed.
RETRIES = 1
#: Seconds to wait for the scheduler to answer, then again for its first worker.
CONNECT_TIMEOUT = 10.0
#: Seconds between a worker's checks that the point it runs is still wanted.
POLL_S = 0.5
#: Address schemes of ``distributed``'s networked transports.
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_ADDRESS = re.compile(rf"^({'|'.join(SCHEMES)})://[^/\s]+:\d+$")
_INSTALL = 'pip install "kdlab[cluster]"'


def check_address(address: str) -> str:
    """``address`` without surrounding blanks if it reads ``SCHEME://HOST:PORT``, else a
    :class:`~kdlab.errors.ParameterError` naming what is accepted."""
    if not isinstance(address, str) or not _ADDRESS.match(address.strip()):
        raise ParameterError(f"--scheduler/KDLAB_SCHEDULER={address!r} is not a scheduler address; expected "
                             f"SCHEME://HOST:PORT with SCHEME one of {', '.join(SCHEMES)}, e.g. tcp://10.0.0.5:8786.")
    return address.strip()


def connect(scheduler: str | None, *, shared_dir: str | os.PathLike | None = None, jobs: int = 1,
            out: str | os.PathLike | None = None, timeout: float | None = None) -> Cluster:
    """The :class:`Cluster` for ``kdlab sweep --scheduler``, after checking the options given with it.

    ``-j`` keeps meaning the local pool, so ``jobs > 1`` with a scheduler is refused (the
    workers' ``--nthreads`` decide how many points run at once). ``shared_dir`` replaces
    ``--out`` as the parent of the sweep folder, so an ``out`` elsewhere is refused.
    """
    if not scheduler:
        raise ParameterError("--shared-dir needs a scheduler: give --scheduler tcp://HOST:PORT or set KDLAB_SCHEDULER.")
    if jobs > 1:
        raise ParameterError(f"-j/--jobs={jobs} sets the size of the local pool and cannot be combined with a "
                           f"scheduler (--scheduler or KDLAB_SCHEDULER: {scheduler}); the workers' --nthreads decide "
                           "how many points run at once. Drop one of them.")
    if shared_dir is not None and out is not None and Path(out).resolve() != Path(shared_dir).resolve():
        raise ParameterError(f"give --out or --shared-dir, not both (--out={str(out)!r}, --shared-dir="
                           f"{str(shared_dir)!r}): with --shared-dir the sweep folder goes under it.")
    return Cluster(scheduler, shared_dir=shared_dir, timeout=timeout)


class Cluster:
    """A connection to a Dask scheduler whose workers can run this kdlab's sweep points.

    Connecting checks what can be checked before a point runs: the scheduler answers
    within ``timeout`` seconds, a worker is there, every worker imports the same kdlab
    version as this client, and every worker sees ``shared_dir`` when one is given.
    :meth:`run_points` is a sweep's executor (``sweeps.sweep(executor=cluster.run_points)``).
    """

    def __init__(self, address: str, *, shared_dir: str | os.PathLike | None = None,
                 timeout: float | None = None):
        from . import __version__

        timeout = CONNECT_TIMEOUT if timeout is None else timeout
        address = check_address(address)
        try:
            import distributed
        except ImportError as err:
            raise ClusterError(f"--scheduler needs Dask, which is not installed here ({err}): {_INSTALL}") from err
        self.address, self.version = address, __version__
        self.shared_dir = Path(shared_dir).resolve() if shared_dir is not None else None
        if self.shared_dir is not None and not self.shared_dir.is_dir():
            raise ClusterError(f"--shared-dir={str(shared_dir)!r} does not exist here; it must be a folder that "
                               "this machine and every worker see at the same path.")
        try:
            self.client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({err}); start "
                               "one with `dask scheduler`, or check the address and the firewall. Nothing has run."
                               ) from err
        self._variables: dict[str, str] = {}  # {task key: name of the Variable of its attempts}
        try:
            self.workers = self._check_workers(timeout)
            if self.shared_dir is not None:
                self._check_shared_dir()
        except BaseException:
            self.client.close()
            raise
        print(f"Dask cluster at {address}: {len(self.workers)} workers, {sum(self.workers.values())} threads, "
              f"kdlab {self.version}" + (f"; workers write to {self.shared_dir}" if self.shared_dir else ""),
              flush=True)

    # --- checks before anything runs ---------------------------------------------------------

    def _check_workers(self, timeout: float) -> dict[str, int]:
        """``{worker address: threads}``; refuses a cluster without workers or with another kdlab."""
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError as err:
            raise ClusterError(f"the scheduler at {self.address} has no workers after {timeout:g} s; start one with "
                               f"`dask worker {self.address}` in an environment with {_INSTALL}.") from err
        found = self.client.run(_worker_versions, on_error="return")
        broken = {w: v for w, v in found.items() if isinstance(v, BaseException)}
        if broken:
            listed = "; ".join(f"{w}: {type(e).__name__}: {e}" for w, e in sorted(broken.items()))
            raise ClusterError(f"workers that cannot run kdlab ({listed}); start them from an environment with "
                               f"{_INSTALL} and kdlab {self.version}, as here. Nothing was submitted.")
        other = {w: v["kdlab"] for w, v in found.items() if v["kdlab"] != self.version}
        if other:
            listed = ", ".join(f"worker {w} has {v}" for w, v in sorted(other.items()))
            raise ClusterError(f"this machine runs kdlab {self.version}, but {listed}; install the same kdlab "
                               "version on both sides and restart the workers. Nothing was submitted.")
        return {w: v["threads"] for w, v in found.items()}

    def _check_shared_dir(self) -> None:
        probe, token = self.shared_dir / f".kdlab-probe-{uuid.uuid4().hex}", uuid.uuid4().hex
        probe.write_text(token)
        try:
            seen = self.client.run(_read_probe, str(probe), on_error="return")
        finally:
            probe.unlink(missing_ok=True)
        blind = sorted(w for w, text in seen.items() if text != token)
        if blind:
            raise ClusterError(f"--shared-dir {self.shared_dir} is not the same folder on every worker: "
                               f"{', '.join(blind)} cannot read a file written there by this machine. Mount it at the "
                               "same path everywhere, or leave out --shared-dir to have the results sent back.")

    # --- the executor ----------------------------------------------------------------------------

    def run_points(self, points: Sequence[sweeps.Point], jobs: int,
                   done: Callable[[sweeps.Point, str | None], None]) -> None:
        """Run ``points`` on the workers and call ``done(point, error)`` here as each ends,
        with the contract of :func:`kdlab.sweeps.run_points`. ``jobs`` is the local pool's
        size and is not used: the workers' threads decide how many points run at once.

        On KeyboardInterrupt the points are cancelled; their workers stop them within
        :data:`POLL_S` seconds, and nothing more is written into the sweep folder.
        """
        if not points:
            return
        from distributed import Variable, as_completed

        folder = points[0].folder.parent
        # The notebook and the checkpoints travel inside each task rather than scattered once:
        # scattered data lives only on workers, and a worker dying would take it with it.
        source = points[0].notebook.read_bytes()
        checkpoints = None  # with a shared folder, the points use the sweep's checkpoints where they are
        if self.shared_dir is None:
            checkpoints = {f.name: f.read_bytes() for f in sorted((folder / "checkpoints").glob("*")) if f.is_file()}
        queue, running = list(points), {}
        finished = as_completed(loop=self.client.loop)
        try:
            while queue or running:
                # A few points per worker thread are submitted at a time, so the scheduler holds a
                # few copies of the notebook and checkpoints, not one per point of a large grid.
                try:
                    threads = self.client.nthreads()  # {worker address: threads}, for workers that come and go
                    while queue and len(running) < max(2, 2 * sum(threads.values())):
                        point = queue.pop(0)
                        # A point run alone gets every core of its machine, as in a local sweep.
                        future = self._submit(point, source, checkpoints if _sends_checkpoints(point) else None,
                                              None if len(points) == 1 else threads_per_host(threads))
                        running[future] = point
                        finished.add(future)
                except (OSError, TimeoutError) as err:
                    if isinstance(err, ClusterError):
                        raise
                    raise ClusterError(f"lost the Dask scheduler at {self.address} during the sweep ({err}); the "
                                       "finished points are kept: run the same command again to resume.") from err
                future = next(finished)
                point = running.pop(future)
                result = _outcome(future)
                future.release()
                done(point, self._record(point.folder, result))
                # The task is over, so no attempt of it reads its Variable again: free it on the scheduler now.
                Variable(self._variables.pop(future.key), self.client).delete()
        finally:  # Ctrl-C, or an error in done(): no point keeps running for nobody
            if running:
                self.client.cancel(list(running), force=True)

    def _submit(self, point: sweeps.Point, source: bytes, checkpoints: Mapping[str, bytes] | None,
                host_threads: Mapping[str, int] | None):
        from distributed import Variable

        (point.folder / "error.txt").unlink(missing_ok=True)  # a failure of an earlier call
        attempts = f"kdlab-attempts-{uuid.uuid4().hex}"  # the workers that started the point (run_point)
        key = f"kdlab-point-{point.name}-{uuid.uuid4().hex[:8]}"
        Variable(attempts, self.client).set([])
        self._variables[key] = attempts
        # Resolved here: a worker would read a relative folder against its own working directory.
        return self.client.submit(run_point, point.notebook.name, source, point.parameters,
                                  point_dir=str(point.folder.resolve()), shared=self.shared_dir is not None,
                                  checkpoints=checkpoints, host_threads=host_threads, attempts=attempts,
                                  version=self.version, key=key, pure=False)

    def _record(self, pdir: Path, result: Mapping) -> str | None:
        """Write what a worker sent back into ``pdir``; returns the error line, or None."""
        checkpoints = pdir.parent / "checkpoints"
        for name, data in result.get("checkpoints", {}).items():
            if not (checkpoints / _safe(name)).exists():  # never over a teacher already there, as locally
                atomic_write(checkpoints / _safe(name), lambda fh, data=data: fh.write(data), mode="wb")
        if self.shared_dir is None:
            deliver(result.get("files", {}), pdir)
        if result["error"] is not None and not (pdir / "error.txt").exists():  # a fault of the cluster's
            atomic_write(pdir / "error.txt", lambda fh: fh.write(result["error"] + "\n"))
        return result["error"]

    def close(self) -> None:
        from distributed import Variable

        try:
            for name in self._variables.values():  # the points still running when the sweep stopped
                Variable(name, self.client).delete()
        finally:
            self._variables.clear()
            self.client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sends_checkpoints(point: sweeps.Point) -> bool:
    """True when ``point`` uses the sweep's own checkpoint folder (the default); a folder
    the user named is used as it is, on the workers' file system."""
    return point.parameters.get("checkpoint_dir") == str((point.folder.parent / "checkpoints").resolve())


def _outcome(future) -> dict:
    """The worker's result, or a failed result saying why the cluster produced none."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as err:  # the scheduler's own limit (distributed.scheduler.allowed-failures) came first
        return {"error": f"WorkerDied: the workers running this point died and the scheduler gave up on it ({err})"}
    except Exception as err:  # noqa: BLE001 - any other fault of the cluster is recorded like a failed notebook
        from .runner import failure
        return {"error": f"cluster: {failure(err)}"}


def _safe(name: str) -> str:
    """A relative path sent by a worker, refused if it would leave the point's folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ClusterError(f"a worker sent back a file named {name!r}, outside the point's folder; refused.")
    return str(path)


def deliver(files: Mapping[str, bytes], folder: Path) -> None:
    """Write ``files`` (relative path -> bytes) into ``folder``, each atomically and
    ``metrics.json`` last: a point counts as finished only once everything else is there."""
    for name in sorted(files, key=lambda n: n == "metrics.json"):
        atomic_write(folder / _safe(name), lambda fh, data=files[name]: fh.write(data), mode="wb")


def _files(folder: Path, leave_out: Sequence[str] = ()) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in leave_out}


# --- on the workers ------------------------------------------------------------------------------

def _worker_versions(dask_worker=None) -> dict:
    from . import __version__
    return {"kdlab": __version__, "threads": dask_worker.state.nthreads}


def _read_probe(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def threads_per_host(threads: Mapping[str, int]) -> dict[str, int]:
    """``{host: worker threads on it}`` from ``{worker address: threads}`` (Client.nthreads())."""
    from distributed.comm import get_address_host

    per_host: dict[str, int] = {}
    for address, n in threads.items():
        host = get_address_host(address)
        per_host[host] = per_host.get(host, 0) + n
    return per_host


def point_environment(points_on_machine: int | None) -> dict[str, str]:
    """The environment of a point's process on a machine whose workers run up to
    ``points_on_machine`` points at once: each kernel gets an equal share of its cores
    (None: a point that runs alone, whose torch takes as many threads as it picks).

    Why: the Dask nanny starts workers with ``OMP_NUM_THREADS=1`` (and MKL's, OpenBLAS's)
    for numpy tasks, which the kernels would inherit: one thread per notebook on a
    many-core machine. Those values are replaced; a value the user set is kept. The share
    counts every worker on the machine (``dask worker --nworkers 4`` starts four), as
    ``-j`` does for a local sweep.
    """
    import dask

    nanny = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    base = {k: v for k, v in os.environ.items() if not (k in sweeps.THREAD_VARIABLES and v == str(nanny.get(k)))}
    return sweeps.point_environment(None if points_on_machine is None else sweeps.threads_per_job(points_on_machine),
                                    base)


def _cancelled(worker, key) -> bool:
    """Whether the client no longer wants the task ``key`` (cancelled, or the client went away)."""
    task = worker.state.tasks.get(key)
    return task is None or task.state in ("cancelled", "released", "forgotten")


def run_point(notebook_name: str, source: bytes, parameters: dict, *, point_dir: str, shared: bool,
              checkpoints: Mapping[str, bytes] | None, host_threads: Mapping[str, int] | None, attempts: str,
              version: str) -> dict:
    """Run one sweep point on this worker; returns ``{"error", "files", "checkpoints", "worker"}``.

    The notebook runs in a scratch folder, with ``output_dir`` there (and ``checkpoint_dir``
    too when ``checkpoints`` are sent), in a process of its own (:func:`point_process`).
    ``files`` is what the point wrote, for the client to write into its folder; with
    ``shared`` this worker writes them into ``point_dir`` itself and sends none back.
    """
    from distributed import Variable, get_worker

    from . import __version__

    worker = get_worker()
    key = worker.get_current_task()
    started = Variable(attempts).get(timeout=30)
    if len(started) > RETRIES:
        return {"error": f"WorkerDied: the workers running this point died {len(started)} times "
                         f"({', then '.join(started)}); it was retried {RETRIES} time(s) on another worker and is "
                         "not tried again in this sweep (re-run the sweep to try it again)"}
    Variable(attempts).set([*started, worker.address])
    if __version__ != version:  # a worker that joined after the client checked the others
        return {"error": f"VersionMismatch: worker {worker.address} has kdlab {__version__}, this sweep {version}"}
    from distributed.comm import get_address_host

    # host_threads: {host: worker threads}, None for a point run alone. A worker that joined
    # after the submission is missing from it: then its own threads count.
    on_machine = None if host_threads is None else host_threads.get(get_address_host(worker.address),
                                                                      worker.state.nthreads)
    scratch = Path(tempfile.mkdtemp(prefix="kdlab-point-"))
    try:
        notebook = scratch / "notebook" / notebook_name
        notebook.parent.mkdir()
        notebook.write_bytes(source)
        folder = scratch / "point"
        params = {**parameters, "output_dir": str(folder)}
        if checkpoints is not None:
            params["checkpoint_dir"] = str(scratch / "checkpoints")
            deliver(checkpoints, scratch / "checkpoints")
        write_json(folder / "parameters.json", params)
        process = interrupts.start_process([sys.executable, "-c", _POINT_CODE, str(notebook), str(folder),
                                            str(os.getpid())], env=point_environment(on_machine))
        try:
            while process.poll() is None:
                if _cancelled(worker, key):
                    return {"error": "cancelled: the sweep was stopped"}  # the finally stops the process
                time.sleep(POLL_S)
        finally:
            interrupts.stop_processes([process])
        error = sweeps.point_error(folder, process.returncode)
        files = _files(folder, leave_out=["parameters.json"])  # the client's holds the client's paths
        new = {}
        if checkpoints is not None:
            new = {n: d for n, d in _files(scratch / "checkpoints").items() if n not in checkpoints}
        result = {"error": error, "checkpoints": new, "worker": worker.address}
        if not shared:
            result["files"] = files
        elif not _cancelled(worker, key):
            deliver(files, Path(point_dir))
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# The point's process imports this module by name (see kdlab.sweeps for why not `python -m`).
_POINT_CODE = "import sys; from kdlab.cluster import point_process; sys.exit(point_process(*sys.argv[1:]))"


def point_process(notebook: str, folder: str, worker_pid: str) -> int:
    """The body of a point's process on a worker: :func:`kdlab.sweeps.point_process`, which
    also stops its kernel on SIGTERM, and a watch on the worker: if the worker process dies
    (killed, out of memory), the point's kernel is killed, the scratch folder that
    :func:`run_point` made (``folder``'s parent) removed, and the process exits, so no orphan
    goes on computing a point that Dask has already given to another worker."""
    def watch(pid: int) -> None:
        while os.getppid() == pid:
            time.sleep(POLL_S)
        interrupts.stop_kernels()
        shutil.rmtree(Path(folder).parent, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, args=(int(worker_pid),), name="kdlab-watch-worker", daemon=True).start()
    return sweeps.point_process(notebook, folder)
