"""Ctrl-C during ``kdlab run`` and ``kdlab sweep``: the first stops cleanly, the second at once.

Who receives a terminal's Ctrl-C (SIGINT goes to the foreground process group):

* ``kdlab`` itself. Nothing else: jupyter_client starts every kernel in a session of its
  own, and a sweep starts every point's process in a session of its own
  (:func:`start_process`), so no child dies halfway with a traceback of its own.
* The notebook runs in a helper thread (:func:`call_in_thread`), never in the main thread:
  there nbclient installs its own SIGINT handler, which shuts the kernel down, and the
  interrupt surfaces as a ``DeadKernelError``, a failed notebook, instead of a stop.

So Ctrl-C raises ``KeyboardInterrupt`` in kdlab's main thread, wherever it is waiting.
The run or the sweep catches it, stops what is running (:func:`stop_kernels`: the kernels
this process started; :func:`stop_processes`: a point's process, which stops its own
kernel), keeps what finished (every result file is written atomically, see
:mod:`kdlab.files`), and raises :class:`Interrupted`, whose message is the one line to
print: what finished, what did not, and the command that resumes.

While it cleans up, a second Ctrl-C kills everything started here and exits with status
130 on the spot (:func:`ctrl_c`, around every run and sweep).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache

#: Exit status after Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2).
EXIT_STATUS = 130
#: Seconds a stopped point's process gets to stop its kernel and exit before it is killed.
GRACE_S = 10.0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run or a sweep cleanly; ``str()`` is the one line to show the user.

    A KeyboardInterrupt, so code that calls :func:`kdlab.sweeps.sweep` from Python stops
    as it would on any other Ctrl-C.
    """


_kernels: weakref.WeakSet = weakref.WeakSet()  # kernel managers created in this process
_processes: set[subprocess.Popen] = set()  # point processes started and not yet reaped
_lock = threading.Lock()


@cache
def kernel_manager_class() -> type:
    """jupyter_client's ``AsyncKernelManager`` (nbclient's default), remembered for
    :func:`stop_kernels`; pass it to papermill as ``kernel_manager_class``."""
    from jupyter_client import AsyncKernelManager

    class KdlabKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            _kernels.add(self)

        async def _async_interrupt_kernel(self):
            # jupyter_client interrupts every kernel before shutting it down. nbclient shuts a
            # kernel down after its last cell, when it has nothing to stop, and a SIGINT that lands
            # while the kernel answers the shutdown request only makes ipykernel log "KeyboardInterrupt
            # caught in kernel." on the terminal. A kernel that does not exit is still killed.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return KdlabKernelManager


def _kill_group(process) -> None:
    """Kill ``process`` and its process group, at once (SIGKILL; on Windows, the process)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if hasattr(os, "killpg"):
            # A kernel or point process leads its own session, so its group is its pid: this
            # also ends whatever it started (data-loader workers, a kernel's subprocesses).
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def stop_kernels() -> int:
    """Kill every kernel this process started that still runs; returns how many.

    A killed kernel leaves no half-written result: notebooks write their files atomically.
    """
    stopped = 0
    for manager in list(_kernels):
        process = getattr(getattr(manager, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:
            _kill_group(process)
            stopped += 1
            with contextlib.suppress(Exception):  # nbclient may not get to it: the process may exit first
                manager.cleanup_connection_file()
    return stopped


def call_in_thread(function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)``, run in a helper thread while this one waits.

    On KeyboardInterrupt in the waiting thread: kill the kernels this process started
    (again, for a kernel that was still starting), wait for the helper thread to notice, and
    re-raise. Exceptions of ``function`` are re-raised here.
    """
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = err

    # daemon: an abandoned helper never keeps the interpreter from exiting.
    thread = threading.Thread(target=target, name="kdlab-notebook", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            # With a timeout, so a signal delivered to another thread is still handled here soon.
            thread.join(0.5)
    except KeyboardInterrupt:
        for _ in range(int(GRACE_S / 0.2)):
            stop_kernels()
            thread.join(0.2)
            if not thread.is_alive():
                break
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def start_process(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start a point's process in a session of its own, out of reach of the terminal's Ctrl-C
    (this process stops it, :func:`stop_processes`); its stdout and stderr are this process's."""
    options = {"start_new_session": True} if os.name == "posix" else {
        "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    process = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                               **options)
    with _lock:
        _processes.add(process)
    return process


def forget_process(process: subprocess.Popen) -> None:
    """``process`` has ended and was reaped: nothing left to stop."""
    with _lock:
        _processes.discard(process)


def stop_processes(processes: Sequence[subprocess.Popen], grace: float = GRACE_S) -> None:
    """Ask point processes to stop (SIGTERM: each kills its kernel and exits, see
    :func:`stop_on_sigterm`); kill those that have not exited after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, OSError):
                process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.wait()
        forget_process(process)


def stop_on_sigterm() -> None:
    """In a point's process: on SIGTERM, kill this process's kernels and exit at once, so
    neither the kernel nor the notebook's error handling writes anything more."""
    def handler(signum, frame):
        stop_kernels()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def stop_everything() -> None:
    """Kill every kernel and point process this process started (the second Ctrl-C)."""
    stop_kernels()
    with _lock:
        processes = list(_processes)
    for process in processes:
        if process.poll() is None:
            _kill_group(process)


@contextlib.contextmanager
def ctrl_c(message: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C within the block: the first raises KeyboardInterrupt, for the block to stop
    cleanly; a second, while it does, kills everything this process started, prints
    ``message()`` (the resume command) and exits with :data:`EXIT_STATUS` at once.

    Outside the main thread (where Python allows no signal handler) the block just runs.
    """
    pressed = 0

    def handler(signum, frame):
        nonlocal pressed
        pressed += 1
        if pressed == 1:
            raise KeyboardInterrupt
        stop_everything()
        with contextlib.suppress(Exception):
            sys.stderr.write(f"\nkdlab: stopped at once (second Ctrl-C). {message()}\n")
            sys.stderr.flush()
        os._exit(EXIT_STATUS)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_quietly_on_interrupt() -> None:
    """From now on, Ctrl-C ends this process at once with :data:`EXIT_STATUS`, silently
    (``kdlab`` calls it after its one line, before Python shuts down)."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(EXIT_STATUS))
