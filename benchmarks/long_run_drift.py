"""Long CPU runs with and without denormal flushing: seconds per fit call as a model trains on.

    python benchmarks/long_run_drift.py [--quick] [--calls N]

Trains the 800-800 MLP on mnist-5k with repeated 3-epoch kdlab.train.fit calls (the
model keeps its weights, as in a benchmark or a notebook that trains on), in two fresh
processes: one as kdlab runs by default (the CPU worker threads flush denormal floats to
zero, see kdlab.devices.flush_denormals_in_workers) and one with KDLAB_KEEP_DENORMALS=1
and fit's own flushing switched off, as fit ran before. Prints each call's wall time. As
the loss nears zero, gradients underflow into denormals, on which the CPU's arithmetic is
microcoded (docs/BENCHMARKS.md, section 1).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, parser, table  # noqa: E402

CHILD = "KDLAB_DRIFT_CHILD"


def child(calls: int, quick: bool) -> None:
    import torch

    import kdlab

    if os.environ.get("KDLAB_KEEP_DENORMALS"):
        kdlab.devices.flush_denormals = lambda enabled=True: contextlib.nullcontext()  # fit's own flushing off
    ds = kdlab.data.load("mnist-5k", seed=0)
    if quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    model = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
    for _ in range(calls):
        t0 = time.perf_counter()
        kdlab.train.fit(model, ds, epochs=3, device="cpu", progress=False)
        print(f"{time.perf_counter() - t0:.3f}", flush=True)


def main(argv=None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=24)
    args = p.parse_args(argv)
    calls = 2 if args.quick else args.calls
    rows = []
    for name, env in (("kdlab default (denormals flushed)", {}), ("denormals kept (as before)", {"KDLAB_KEEP_DENORMALS": "1"})):
        out = subprocess.run([sys.executable, __file__, *(["--quick"] if args.quick else []), "--calls", str(calls)],
                             env={**os.environ, CHILD: "1", **env}, capture_output=True, text=True, check=True)
        times = [float(x) for x in out.stdout.split()]
        first, last = times[: max(1, calls // 6)], times[-max(1, calls // 6):]
        rows.append([name, " ".join(f"{t:.2f}" for t in times), f"{sum(last) / len(last) / (sum(first) / len(first)):.2f}"])
    out = (f"### Seconds per 3-epoch fit call, MLP 800-800 trained on ({calls} calls, one process each)\n\n"
           + table(["setting", "seconds per call, in order", "last sixth ÷ first sixth"], rows)
           + f"\n\nMachine: {machine()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    if os.environ.get(CHILD):
        a = parser("child").parse_args([x for x in sys.argv[1:] if x == "--quick"])
        child(int(sys.argv[sys.argv.index("--calls") + 1]), a.quick)
    else:
        main()
