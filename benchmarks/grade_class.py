"""Grading a class: how long ``kdlab classroom grade`` takes on synthetic submissions.

    python benchmarks/grade_class.py [--students 30] [--notebooks 04] [-j 2] [--timeout 120] [--serial] [--keep DIR]

Builds ``SUBMISSIONS/<student>/<notebook>.ipynb`` from the student versions in
``notebooks/`` with a class's usual mix (cycled over the students): full marks, partly
done, empty, one wrong answer; with 6 students or more, also one that hangs (``while True:
pass``, so it costs the whole ``--timeout``) and one whose kernel dies. Then it runs
``kdlab classroom grade SUBMISSIONS --out grades.csv -j N --timeout S`` as an instructor
would, in a subprocess, and prints each submission's seconds (from the grader's log), the
per-kind medians and the total wall time. ``--serial`` also runs ``-j 1`` for comparison.
Prints the exact command, for docs/INSTRUCTORS.md.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REGULAR = ("full", "partial", "full", "wrong", "full", "empty", "partial", "full")
LOG_LINE = re.compile(r"^(?P<student>\S+)/(?P<notebook>\S+): (?P<points>[\d.]+)/(?P<max>[\d.]+) points, "
                      r"(?P<status>.+) \((?P<seconds>\d+) s\)$", re.M)


def kinds(n: int) -> list[str]:
    """The class's mix: REGULAR cycled, with one hanging and one crashing member from 6 students."""
    out = [REGULAR[i % len(REGULAR)] for i in range(n)]
    if n >= 6:
        out[n // 3], out[2 * n // 3] = "hang", "crash"
    return out


def answer(ex, kind: str, position: int) -> str:
    """The answer cell a ``kind`` of student hands in for the exercise at ``position`` (0, 1, ...)."""
    if kind == "empty" or (kind == "partial" and position > 0):
        return ex.stub
    if kind == "wrong" and position == 0:
        return ex.stub.replace("# YOUR CODE HERE", "return None  # a wrong answer" if ex.is_function
                               else "answer = 0  # a wrong answer").replace("\n    raise NotImplementedError", "")
    if kind in ("hang", "crash") and position == 0:
        return ("while True:  # never ends\n    pass" if kind == "hang"
                else "import os\nos.kill(os.getpid(), 9)  # the kernel kills itself")
    return ex.solved_source()


def build(submissions: Path, n: int, stems: list[str]) -> list[str]:
    from kdlab.classroom import cells, exercise

    mix = kinds(n)
    for i, kind in enumerate(mix):
        for stem in stems:
            nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
            position = 0
            for cell in nb.cells:
                found = cells.role(cell)
                if found and found[1] == "answer":
                    cell.source = answer(exercise(found[0]), kind, position)
                    position += 1
            folder = submissions / f"s{i + 1:02d}-{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / f"{stem}.ipynb")
    return mix


def command(jobs: int, timeout: float) -> list[str]:
    return ["kdlab", "classroom", "grade", "SUBMISSIONS", "--out", "grades.csv", "-j", str(jobs), "--timeout",
            f"{timeout:g}"]


def grade(submissions: Path, out: Path, jobs: int, timeout: float) -> tuple[float, str]:
    """Run the command as an instructor would; returns its wall time and what it printed."""
    cmd = [sys.executable, "-m", *command(jobs, timeout)]  # python -m kdlab ...
    cmd[cmd.index("SUBMISSIONS")], cmd[cmd.index("grades.csv")] = str(submissions), str(out)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"kdlab classroom grade failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def report(stdout: str, seconds: float, jobs: int, n_subs: int) -> list[str]:
    """Each submission's seconds, the median per kind of student, and the total."""
    runs = [m.groupdict() for m in LOG_LINE.finditer(stdout)]
    rows = [[r["student"], r["notebook"], r["status"], f"{r['points']}/{r['max']}", r["seconds"]] for r in runs]
    by_kind: dict[str, list[float]] = {}
    for r in runs:
        by_kind.setdefault(r["student"].split("-", 1)[1], []).append(float(r["seconds"]))
    return [table(["student", "notebook", "status", "points", "seconds"], rows), "",
            table(["kind", "submissions", "median s per submission"],
                  [[k, len(v), f"{statistics.median(v):.0f}"] for k, v in sorted(by_kind.items())]), "",
            f"-j {jobs}: {n_subs} submissions graded in {seconds:.0f} s wall "
            f"({seconds / max(1, n_subs):.1f} s per submission)"]


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=30, help="class size (default 30)")
    p.add_argument("--notebooks", nargs="+", default=["04"], help="notebooks each student hands in (default 04)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per notebook (default 120)")
    p.add_argument("--serial", action="store_true", help="also grade with -j 1, for comparison")
    p.add_argument("--keep", help="build the class in this folder and keep it (default: a temporary folder)")
    args = p.parse_args(argv)
    from kdlab.classroom.grade import notebook_stem

    stems = [notebook_stem(n) for n in args.notebooks]
    out_lines = [f"# Grading a class: {args.students} students × {', '.join(stems)}", "", machine(), ""]
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(args.keep or scratch)
        submissions = base / "submissions"
        mix = build(submissions, args.students, stems)
        out_lines.append(f"mix: {', '.join(f'{k} {mix.count(k)}' for k in dict.fromkeys(mix))}")
        n_subs = args.students * len(stems)
        for jobs in ([args.jobs, 1] if args.serial and args.jobs != 1 else [args.jobs]):
            out = base / f"grades-j{jobs}.csv"
            seconds, stdout = grade(submissions, out, jobs, args.timeout)
            out_lines += ["", f"## {' '.join(command(jobs, args.timeout))}", "", *report(stdout, seconds, jobs, n_subs)]
    text = "\n".join(out_lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
