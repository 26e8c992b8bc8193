"""Two processes training at once, each with a thread per core: why the test suite sets OMP_WAIT_POLICY.

    python benchmarks/thread_contention.py [--quick]

`make test` runs two pytest workers, and each worker's tests start notebook kernels and
train models. Each of those processes starts one OpenMP thread per core. By default a
waiting OpenMP thread spins for a while before it sleeps, so when two processes share the
cores, each one's spinning threads take the time the other one's working threads need.
This script measures that. One job trains a small CNN on digits four times (2 epochs
each, fit on the CPU), in a fresh process. Every setting runs the job alone, then two
copies at once, in turn, round by round:

  default:          OpenMP's own wait policy, a thread per core;
  passive:          OMP_WAIT_POLICY=PASSIVE: waiting threads sleep at once (conftest.py sets this);
  1 thread each:    OMP_NUM_THREADS=1, the share kdlab's own sweeps give each of two kernels on 2 cores.

The table gives each setting's median and slowest round, and the ratio of the medians of two
at once and alone: with no contention it would be 1, or 2 when the job alone keeps every core
busy. The slowest round matters as much: with the default policy two processes at once run
normally in some rounds and ten times slower in others.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, parser, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

JOB = """
import kdlab
ds = kdlab.data.load("digits", seed=0)
for seed in range({repeats}):
    model = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=seed)
    kdlab.train.fit(model, ds, epochs=2, progress=False, device="cpu")
"""

SETTINGS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "1 thread each": {"OMP_NUM_THREADS": "1"}}


def timed(copies: int, extra: dict, repeats: int) -> float:
    """Seconds until ``copies`` processes running the job at the same moment have all finished."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(extra, KDLAB_DEVICE="cpu")
    code = JOB.format(repeats=repeats)
    t0 = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env) for _ in range(copies)]
    if any(p.wait() for p in processes):
        raise RuntimeError("a training process failed")
    return time.perf_counter() - t0


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    repeats, rounds = (1, 1) if args.quick else (2, 6)
    settings = {"passive": SETTINGS["passive"]} if args.quick else SETTINGS  # --quick: the script runs, that is all
    seconds = {(name, copies): [] for name in settings for copies in (1, 2)}
    for _ in range(rounds):
        for name, extra in settings.items():
            for copies in (1, 2):
                seconds[name, copies].append(timed(copies, extra, repeats))
    rows = [[name, f"{median(seconds[name, 1]):.1f} ({max(seconds[name, 1]):.1f})",
             f"{median(seconds[name, 2]):.1f} ({max(seconds[name, 2]):.1f})",
             f"{median(seconds[name, 2]) / median(seconds[name, 1]):.2f}"] for name in settings]
    out = ("### Two training processes at once (seconds: median of rounds (slowest round), process start "
           "included)\n\n"
           + table(["setting", "alone", "two at once", "two at once ÷ alone (medians)"], rows)
           + f"\n\n{rounds} rounds; the job: {repeats} × fit of the CNN on digits for 2 epochs. "
             f"Machine: {machine()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
