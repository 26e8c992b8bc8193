"""Time to lesson: wall time and peak memory of every numbered notebook and of the smoke test suite.

    python benchmarks/time_to_lesson.py [--quick] [--lessons] [--suite] [--only 01 04 ...] [--keep DIR]

Each notebook runs at its default parameters with papermill, in a subprocess, into
a temporary folder (its own checkpoint folder, so notebook 01 trains the teacher
that 02-04 use, as a learner's first pass would). Peak memory is the largest total
resident set size of the process tree (papermill and the kernel), sampled every
0.2 s. --quick runs the notebooks in smoke mode instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, parser, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def measure(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, int]:
    """Run ``cmd``; return (seconds, peak RSS of the process tree in GiB, exit code)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    stderr = proc.stderr.read()
    if proc.returncode:
        print(stderr[-3000:], file=sys.stderr)
    return time.perf_counter() - t0, peak / 2**30, proc.returncode


# The run-time budgets the issues set, on the 2-core CPU at default parameters.
BUDGETS = {("01", "02", "03", "04"): 20.0, ("05", "06"): 15.0, ("07", "08", "09"): 20.0}


def lessons(quick: bool, keep: str | None = None, only: list[str] | None = None) -> str:
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if nb.name[:2] in only]
    rows, total, seconds_of = [], 0.0, {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = keep or scratch
        for nb in notebooks:
            out = Path(tmp) / nb.stem
            out.mkdir(parents=True, exist_ok=True)  # papermill does not create the output notebook's folder
            cmd = [sys.executable, "-m", "papermill", str(nb), str(out / nb.name), "-k", "python3", "--no-progress-bar",
                   "-p", "output_dir", str(out), "-p", "checkpoint_dir", str(Path(tmp) / "checkpoints")]
            if quick:
                cmd += ["-p", "smoke", "True"]
            seconds, peak, code = measure(cmd, nb.parent)
            total += seconds
            seconds_of[nb.name[:2]] = seconds
            rows.append([nb.name, f"{seconds / 60:.1f} min ({seconds:.0f} s)", f"{peak:.2f}", "ok" if code == 0 else f"FAILED ({code})"])
    for group, budget in BUDGETS.items():
        if all(n in seconds_of for n in group):
            minutes = sum(seconds_of[n] for n in group) / 60
            rows.append([f"**{group[0]}–{group[-1]} together** (budget {budget:.0f} min)", f"**{minutes:.1f} min**", "",
                         "within budget" if minutes <= budget else "OVER BUDGET"])
    rows.append(["**all**", f"**{total / 60:.1f} min**", "", ""])
    mode = "smoke mode" if quick else "default parameters"
    return (f"### Time to lesson: notebooks at {mode}\n\n" + table(["notebook", "wall time", "peak RSS (GiB)", "status"], rows)
            + f"\n\nMachine: {machine()}.\n")


def suite() -> str:
    cmd = [sys.executable, "-m", "pytest", "tests", "notebooks", "--nbval-lax", "--nbval-current-env",
           "-p", "no:cacheprovider", "-q"]
    seconds, peak, code = measure(cmd, ROOT, env={**os.environ, "KDLAB_SMOKE": "1"})
    return ("### Smoke test suite (`pytest tests notebooks --nbval-lax`, what `make test` runs)\n\n"
            + table(["wall time", "peak RSS (GiB)", "status"],
                    [[f"{seconds / 60:.1f} min ({seconds:.0f} s)", f"{peak:.2f}", "passed" if code == 0 else f"FAILED ({code})"]])
            + f"\n\nMachine: {machine()}.\n")


def main(argv=None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--lessons", action="store_true", help="only the notebooks")
    p.add_argument("--suite", action="store_true", help="only the test suite")
    p.add_argument("--keep", metavar="DIR", help="keep the executed notebooks, metrics and figures in DIR")
    p.add_argument("--only", nargs="+", metavar="NN", help="only these notebook numbers (e.g. 01 04)")
    args = p.parse_args(argv)
    both = not (args.lessons or args.suite)
    parts = []
    if args.lessons or both:
        parts.append(lessons(args.quick, args.keep, args.only))
    if (args.suite or both) and not args.quick:
        parts.append(suite())
    out = "\n".join(parts)
    print(out)
    return out


if __name__ == "__main__":
    main()
