"""Parallel sweeps: kernels that share the cores out against kernels that each take them all.

    python benchmarks/sweep_threads.py [--quick]

Times the issue's example sweep, `kdlab sweep notebooks/04_student_comparison.ipynb
-p temperature 1 4 -p seed 0 1 --smoke`, three ways, alternating round by round:
  -j 2, shared:    kdlab's default: each parallel kernel gets cores / 2 threads
                   (OMP_NUM_THREADS and friends, set by kdlab.sweeps.point_environment);
  -j 2, unshared:  the same with OMP_NUM_THREADS=<cores> preset, so each kernel starts
                   one thread per core, as kdlab did before;
  -j 1:            one point after another.
Each run goes into a new folder, so no point is skipped as already finished.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, parser, table  # noqa: E402

from kdlab.runner import THREAD_VARIABLES, threads_per_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sweep_seconds(jobs: int, preset_threads: bool, values: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(KDLAB_DEVICE="cpu", MPLBACKEND="Agg")
    if preset_threads:
        env.update({k: str(threads_per_job(1)) for k in THREAD_VARIABLES})  # every core, for each kernel
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "kdlab", "sweep", str(ROOT / "notebooks" / "04_student_comparison.ipynb"),
               "-p", "temperature", *values, "-p", "seed", "0", "1", "--smoke", "-j", str(jobs), "--out", out]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    values = ["1"] if args.quick else ["1", "4"]
    contenders = {"-j 2, shared (default)": (2, False), "-j 2, unshared (before)": (2, True), "-j 1": (1, False)}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(1 if args.quick else 2):
        for name, (jobs, preset) in contenders.items():
            times[name].append(sweep_seconds(jobs, preset, values))
    rows = [[name, f"{median(t):.1f}", ", ".join(f"{s:.1f}" for s in t)] for name, t in times.items()]
    out = (f"### Sweep of notebook 04 in smoke mode, {2 * len(values)} points (seconds, wall time)\n\n"
           + table(["how", "median s", "rounds"], rows) + f"\n\nMachine: {machine()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
