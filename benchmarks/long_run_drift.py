"""Long CPU runs with and without denormal flushing: seconds per fit call as a model trains on.

    python benchmarks/long_run_drift.py [--quick] [--calls N]

Trains the 800-800 MLP on mnist-5k with repeated 3-epoch kdlab.train.fit calls (the
model keeps its weights, as in a benchmark or a notebook that trains on), in two fresh
processes: one as kdlab runs by default (fit flushes denormal floats to zero on the CPU
while it trains, through kdlab.devices.tuned -> flush_denormals; the setting made in the
main thread reaches torch's worker threads) and one with KDLAB_KEEP_DENORMALS=1, fit's
documented opt-out, as fit ran before it flushed. Prints each call's wall time. As the
loss nears zero, gradients underflow into denormals, on which the CPU's arithmetic is
microcoded (docs/BENCHMARKS.md, section 1).
"""

from __future__ import annotations

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

    # KDLAB_KEEP_DENORMALS=1 (set by main for the second process) makes devices.flush_denormals,
    # which fit enters through devices.tuned, leave the CPU's setting alone.
    ds = kdlab.data.load("mnist-5k", seed=0)
    if quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    model = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
    flushed: list[bool] = []  # read inside fit's training block, after each epoch: what this process measured under
    config = kdlab.train.TrainConfig(callback=lambda record: flushed.append(kdlab.devices.denormals_flushed()))
    for _ in range(calls):
        t0 = time.perf_counter()
        kdlab.train.fit(model, ds, epochs=3, device="cpu", progress=False, config=config)
        print(f"{time.perf_counter() - t0:.3f}", flush=True)
    print("flushed" if all(flushed) else "kept" if not any(flushed) else "mixed", flush=True)


def main(argv=None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=24)
    args = p.parse_args(argv)
    calls = 2 if args.quick else args.calls
    rows = []
    for name, keep in (("kdlab default (denormals flushed)", "0"), ("denormals kept (as before)", "1")):
        out = subprocess.run([sys.executable, __file__, *(["--quick"] if args.quick else []), "--calls", str(calls)],
                             env={**os.environ, CHILD: "1", "KDLAB_KEEP_DENORMALS": keep}, capture_output=True,
                             text=True, check=True)
        *times, during = out.stdout.split()
        times = [float(x) for x in times]
        first, last = times[: max(1, calls // 6)], times[-max(1, calls // 6):]
        drift = sum(last) / len(last) / (sum(first) / len(first))
        rows.append([name, " ".join(f"{t:.2f}" for t in times), f"{drift:.2f}", during])
    out = (f"### Seconds per 3-epoch fit call, MLP 800-800 trained on ({calls} calls, one process each)\n\n"
           + table(["setting", "seconds per call, in order", "last sixth ÷ first sixth",
                    "denormals during fit (checked each epoch)"], rows)
           + f"\n\nMachine: {machine()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    if os.environ.get(CHILD):
        a = parser("child").parse_args([x for x in sys.argv[1:] if x == "--quick"])
        child(int(sys.argv[sys.argv.index("--calls") + 1]), a.quick)
    else:
        main()
