"""Runs one submission for :mod:`kdlab.classroom.grade`, in a process of its own.

The grader starts ``python path/to/worker.py JOB.json`` in a new process group and kills
that group (and the kernel's) when the notebook runs past its time limit. ``JOB.json``
holds ``notebook`` (the graded form of the submission), ``cwd`` (the kernel's working
folder), ``results`` (a file outside it), ``watch`` (the indices of the test cells) and
``keep`` (characters of a test cell's printed output to keep: its end, where the
autograder's line is).

The worker executes every cell with errors allowed (nbclient) and appends what happened
to ``results`` as JSON lines, one at a time, so that a run killed for time still says how
far it got::

    {"kernel": 4711}                                   the kernel's process id
    {"start": 12}                                      cell 12 started
    {"cell": 12, "error": "NameError: ...", "chars": 80, "stdout": "..."}   it finished
    {"end": "ok" | "died" | "failed", "reason": "...", "chars": 123456}

Outputs are not kept in the notebook: a submission that prints megabytes costs a count,
not memory. The kernel's own stdout and stderr (``os.write(1, ...)``) go to /dev/null.

It is started by path, not with ``python -m``, so that it does not import kdlab and
torch: the kernel imports them; the worker only needs nbformat and nbclient.
"""

import sys
from pathlib import Path

# Run by path, Python puts this folder first on sys.path, where cells.py, release.py and
# the like would shadow any module of the same name the worker's imports look for.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import json  # noqa: E402 - after the sys.path fix above
import subprocess  # noqa: E402
import traceback  # noqa: E402


def _error(content: dict) -> str | None:
    if content.get("status") != "error":
        return None
    return f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"[:500]


def _size(msg: dict) -> int:
    content = msg.get("content", {})
    if msg.get("msg_type") == "stream":
        return len(content.get("text", ""))
    return sum(len(v) for v in content.get("data", {}).values() if isinstance(v, str))


def run(job: dict) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    results = open(job["results"], "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def emit(**record) -> None:
        results.write(json.dumps(record) + "\n")
        results.flush()

    watch, keep = set(job["watch"]), int(job["keep"])
    printed: dict[int, int] = {}  # characters each cell printed
    tails: dict[int, str] = {}  # the end of each test cell's stdout
    current = {"cell": None}

    class Client(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            # Nothing is appended to outs: only counts, and the end of a test cell's stdout.
            printed[cell_index] = printed.get(cell_index, 0) + _size(msg)
            content = msg.get("content", {})
            if cell_index in watch and msg.get("msg_type") == "stream" and content.get("name") == "stdout":
                tails[cell_index] = (tails.get(cell_index, "") + content.get("text", ""))[-keep:]
            return None

    def notebook_started(**_) -> None:
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        if pid is not None:
            emit(kernel=pid)

    def cell_started(cell, cell_index, **_) -> None:
        if cell.get("cell_type") == "code" and cell.get("source", "").strip():
            current["cell"] = cell_index
            emit(start=cell_index)

    def cell_executed(cell, cell_index, execute_reply, **_) -> None:
        record = {"cell": cell_index, "error": _error(execute_reply.get("content", {})),
                  "chars": printed.get(cell_index, 0)}
        if cell_index in watch:
            record["stdout"] = tails.pop(cell_index, "")
        emit(**record)

    try:
        nb = nbformat.read(job["notebook"], as_version=4)
        client = Client(nb, timeout=None, allow_errors=True, kernel_name="python3",
                        resources={"metadata": {"path": job["cwd"]}}, on_notebook_start=notebook_started,
                        on_cell_start=cell_started, on_cell_executed=cell_executed)
        client.execute(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except DeadKernelError:
        emit(end="died", cell=current["cell"], chars=sum(printed.values()))
    except Exception:  # noqa: BLE001 - reported to the grader, which records it for this submission
        emit(end="failed", reason=traceback.format_exc()[-1500:], chars=sum(printed.values()))
    else:
        emit(end="ok", chars=sum(printed.values()))
    finally:
        results.close()


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
