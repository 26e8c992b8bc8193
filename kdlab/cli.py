"""The ``kdlab`` command line (also ``python -m kdlab``): run, sweep, report, book, list, classroom.

    kdlab run [NOTEBOOK ...] [-p NAME VALUE ...] [-f params.yaml] [--smoke] [--out DIR]
    kdlab run --resume RUN_DIR
    kdlab sweep NOTEBOOK -p temperature 1 2 4 8 -p seed 0 1 2 [-j N] [--smoke] [--out DIR] [--metric NAME]
                [--scheduler tcp://HOST:PORT [--shared-dir DIR]]
    kdlab report RUN_DIR [--baseline NAME=VALUE] [--metric NAME ...]
    kdlab book [RUN_DIR] [--out DIR] [--force]
    kdlab list
    kdlab classroom release OUT [NOTEBOOK ...] [--no-execute]
    kdlab classroom grade SUBMISSIONS [--out grades.csv] [--timeout S] [-j N] [--notebooks NB ...] [--force]

``run`` shows one progress bar over the notebooks' cells, then one line per notebook
with its time and headline result (or ``FAILED`` and why); ``book`` renders a run
(default: the newest) as a static website (:mod:`kdlab.book`). ``classroom release``
writes the student and instructor versions of the notebooks, ``classroom grade`` grades a
class's submissions into a CSV file and a feedback page per student (:mod:`kdlab.classroom`).

Bad input (an unknown parameter, a value of the wrong type or out of range, a missing
notebook, an empty grid) stops with ``kdlab: error: ...`` and exit code 2 before
anything runs; so does ``book`` without a run folder, or with a book already there.

Ctrl-C stops ``run`` and ``sweep`` cleanly with one line (what finished, what did not,
and the command that resumes) and exit code 130; a second Ctrl-C stops at once
(:mod:`kdlab.interrupts`). ``report`` writes a page to share (:mod:`kdlab.report`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import book, interrupts, lab, report, runner, sweeps
from .errors import KdlabError


def _read_yaml(path: str | None) -> dict:
    if path is None:
        return {}
    import yaml

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"parameter file {path!r} does not exist.")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise KdlabError(f"parameter file {path!r} must hold a mapping of NAME: VALUE, got {type(data).__name__}.")
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdlab", description="Run kdlab's notebooks as experiments.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute notebooks (default: the whole numbered sequence) into a new run folder")
    run.add_argument("notebooks", nargs="*", help="notebook paths or names (e.g. 04 or 04_student_comparison)")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a parameter in every notebook that declares it (value read as YAML)")
    run.add_argument("-f", "--file", help="YAML file of NAME: VALUE parameters")
    run.add_argument("--smoke", action="store_true", help="smoke mode: seconds per notebook, on digits "
                     "(also when KDLAB_SMOKE=1)")
    run.add_argument("--out", help="parent folder of the new run folder (default: runs/, or $KDLAB_RUNS)")
    run.add_argument("--resume", metavar="RUN_DIR", help="run, in RUN_DIR, the notebooks of that run that did not "
                     "finish (after Ctrl-C or a failure), with its own parameters")

    sw = sub.add_parser("sweep", help="run one notebook over a grid of parameters, resumably")
    sw.add_argument("notebook")
    sw.add_argument("-p", "--param", nargs="+", action="append", default=[], metavar="NAME VALUE",
                    help="a swept parameter and its values: -p temperature 1 2 4")
    sw.add_argument("-f", "--file", help="YAML file: fixed parameters (scalars) and swept ones (lists)")
    sw.add_argument("-j", "--jobs", type=int, default=1, help="points run in parallel (default 1)")
    sw.add_argument("--smoke", action="store_true", help="smoke mode (also when KDLAB_SMOKE=1)")
    sw.add_argument("--out", help="parent folder of the sweep folder (default: runs/, or $KDLAB_RUNS)")
    sw.add_argument("--metric", help="metric for the summary figure (default: distilled_accuracy if present)")
    sw.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the points on this Dask scheduler's workers "
                    "(default: $KDLAB_SCHEDULER; needs kdlab[cluster], see kdlab.cluster)")
    sw.add_argument("--shared-dir", metavar="DIR", help="with --scheduler: a folder every worker sees at the same "
                    "path; the sweep folder goes there and the workers write into it (default: results are sent back)")

    rep = sub.add_parser("report", help="render a run or sweep folder as report.html (one self-contained page) "
                         "and report.md")
    rep.add_argument("run_dir")
    rep.add_argument("--baseline", action="append", metavar="NAME=VALUE",
                     help="compare every setting of a sweep with this one, paired by seed (e.g. temperature=1)")
    rep.add_argument("--metric", action="append", default=[], metavar="NAME",
                     help="a metric to show (repeat for several; default: the notebook's main results)")

    bk = sub.add_parser("book", help="render a run's executed notebooks as a static HTML site (default: <run>/book)")
    bk.add_argument("run_dir", nargs="?", help="run folder (default: the newest run-* under runs/, or $KDLAB_RUNS)")
    bk.add_argument("--out", help="folder for the site (default: RUN_DIR/book)")
    bk.add_argument("--force", action="store_true", help="replace a book already in that folder")

    sub.add_parser("list", help="show the notebooks and their parameters")

    room = sub.add_parser("classroom", help="student and instructor versions of the notebooks, for a class")
    room_sub = room.add_subparsers(dest="classroom_command", required=True)
    rel = room_sub.add_parser("release", help="write OUT/student/, OUT/instructor/ (solutions, hidden tests) and "
                              "OUT/README.md; each instructor notebook is first run in smoke mode")
    rel.add_argument("out", metavar="OUT", help="a new or empty folder")
    rel.add_argument("notebooks", nargs="*", help="only these notebooks (e.g. 01 03; default: all)")
    rel.add_argument("--no-execute", action="store_true",
                     help="skip the smoke-mode run that proves every check passes with the solutions")
    gr = room_sub.add_parser("grade", help="grade SUBMISSIONS/<student>/<notebook>.ipynb into a CSV file and a "
                             "feedback page per student; each submission runs in its own process and folder")
    gr.add_argument("submissions", metavar="SUBMISSIONS", help="a folder with one folder per student")
    gr.add_argument("--out", default="grades.csv", help="the CSV file to write (default grades.csv); the feedback "
                    "pages go to <its name>_feedback/")
    gr.add_argument("--timeout", type=float, default=None, metavar="S",
                    help="seconds each notebook may run before it is stopped (default 300)")
    gr.add_argument("-j", "--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    gr.add_argument("--notebooks", nargs="+", metavar="NB", help="the notebooks every student should hand in "
                    "(e.g. 03 08; default: every course notebook found in any student's folder)")
    gr.add_argument("--force", action="store_true", help="replace an existing --out file and its feedback pages")
    return parser


def _list() -> None:
    notebooks = runner.sequence()
    if not notebooks:
        print(f"no numbered notebooks found in {runner.notebook_dir()}")
    for nb in notebooks:
        print(nb.name)
        for name, spec in runner.inspect_parameters(nb).items():
            print(f"    {name:<22} {spec['type'].__name__:<6} {spec['default']!r:<22} {spec['help']}")


def _classroom(args) -> int:
    from . import classroom  # imported here: only this command needs it
    from .classroom.release import ReleaseError

    if args.classroom_command == "grade":
        options = {} if args.timeout is None else {"timeout": args.timeout}
        classroom.grade(Path(args.submissions), Path(args.out), notebooks=args.notebooks, jobs=args.jobs,
                        force=args.force, **options)
        return 0  # a class is graded whatever its submissions do; what happened is in the CSV file
    try:
        out = classroom.release(Path(args.out), args.notebooks or None, execute=not args.no_execute)
    except ReleaseError as err:
        print(f"kdlab: release failed, nothing was written: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out / 'student'}, {out / 'instructor'} and {out / 'README.md'}")
    return 0


def _out(args) -> Path:
    return Path(args.out) if args.out else lab.runs_root()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            _list()
            return 0
        if args.command == "classroom":
            return _classroom(args)
        if args.command == "report":
            md, html_path = report.write(Path(args.run_dir), baseline=args.baseline, metrics_=args.metric)
            print(f"wrote {md} and {html_path}")
            return 0
        if args.command == "book":
            index = book.build(Path(args.run_dir) if args.run_dir else None, Path(args.out) if args.out else None,
                               force=args.force)
            print(f"wrote {index}")
            return 0
        if args.command == "run" and args.resume:
            if args.notebooks or args.param or args.file or args.smoke or args.out:
                raise KdlabError("--resume RUN_DIR takes no notebooks, parameters, --smoke or --out: they come from "
                                 "RUN_DIR/run.json.")
            folder, ok = runner.resume_run(Path(args.resume))
            print(f"run folder: {folder}\nas a website: kdlab book {folder}   (or: make book)")
            return 0 if ok else 1
        if args.command == "run":
            notebooks = [runner.resolve_notebook(n) for n in args.notebooks] or runner.sequence()
            if not notebooks:
                raise FileNotFoundError(f"no numbered notebooks found in {runner.notebook_dir()}.")
            params = _read_yaml(args.file)
            params.update({name: runner.parse_value(value) for name, value in args.param})
            folder, ok = runner.run_notebooks(notebooks, params, smoke=lab.smoke_mode(args.smoke), out=_out(args),
                                              argv=["kdlab", *argv])
            print(f"run folder: {folder}\nas a website: kdlab book {folder}   (or: make book)")
            return 0 if ok else 1
        # sweep
        notebook = runner.resolve_notebook(args.notebook)
        grid, fixed = {}, {}
        for name, value in _read_yaml(args.file).items():
            (grid if isinstance(value, list) and not isinstance(runner.inspect_parameters(notebook).get(
                name, {}).get("default"), list) else fixed)[name] = value
        for name, *values in args.param:
            grid[name] = [runner.parse_value(v) for v in values]
        if args.jobs < 1:
            raise KdlabError(f"-j/--jobs={args.jobs} must be at least 1.")
        scheduler, pool = args.scheduler or os.environ.get("KDLAB_SCHEDULER"), None
        if scheduler or args.shared_dir:  # a Dask cluster runs the points (kdlab.cluster)
            from . import cluster  # imported here: it needs the optional kdlab[cluster] extra
            pool = cluster.connect(scheduler, shared_dir=args.shared_dir, jobs=args.jobs, out=args.out)
        # The shared folder as the cluster resolved it: the points' folders are sent to workers with another cwd.
        out = pool.shared_dir if pool and pool.shared_dir else _out(args)
        try:
            folder, failed = sweeps.sweep(notebook, grid, fixed, smoke=lab.smoke_mode(args.smoke), out=out,
                                          jobs=args.jobs, metric=args.metric, argv=["kdlab", *argv],
                                          executor=pool.run_points if pool else None)
        finally:
            if pool:
                pool.close()
        print(f"sweep folder: {folder}")
        return 1 if failed else 0
    except (KdlabError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"kdlab: error: {err}", file=sys.stderr)
        return 2
    except interrupts.Interrupted as stop:  # Ctrl-C while notebooks ran: what finished, and how to resume
        print(f"\nkdlab: {stop}", file=sys.stderr)
        # Everything is written; Python's own shutdown can still take seconds (torch, zmq), and
        # another Ctrl-C then should not print a traceback from deep inside it.
        interrupts.exit_quietly_on_interrupt()
        return interrupts.EXIT_STATUS
    except KeyboardInterrupt:  # Ctrl-C before any notebook ran, or while a report or a book was written
        print("\nkdlab: interrupted; no notebook was running.", file=sys.stderr)
        return interrupts.EXIT_STATUS


if __name__ == "__main__":
    sys.exit(main())
