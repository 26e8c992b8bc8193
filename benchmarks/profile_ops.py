"""Per-operator profile of KD with cached logits against plain cross-entropy, under fit.

    python benchmarks/profile_ops.py [--quick] [--default-adamw]

Trains the 800-800 MLP with kdlab.train.fit on mnist-5k, CE and KD (objectives.Distillation
on the cached logits of an untrained CNN teacher: losses.kd_loss in plain autograd) in turn,
twice each: 2 warm-up epochs, then 4 epochs under torch.profiler. Prints the operators
whose self CPU time differs most between the KD and the CE runs. This is how the AdamW
``sqrt`` slow path was found (docs/BENCHMARKS.md, section 2); ``--default-adamw`` profiles
fit with torch's default (unfused) step, as fit ran before, to show it again.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, parser, table  # noqa: E402
from distill_overhead import default_adamw  # noqa: E402

import kdlab  # noqa: E402
from kdlab.objectives import Distillation  # noqa: E402
from kdlab.teacher import Teacher  # noqa: E402


def main(argv=None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--default-adamw", action="store_true", help="profile fit with the default (unfused) AdamW step")
    args = p.parse_args(argv)
    ds = kdlab.data.load("mnist-5k", seed=0)
    warm, epochs = (1, 1) if args.quick else (2, 4)
    if args.quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    logits = kdlab.inference.predict_logits(teacher, ds.train)  # computed once, outside the profiles
    kd = Distillation(Teacher(teacher, logits=logits), temperature=4.0, alpha=0.9)
    runs = {"CE": {}, "KD": dict(objective=kd)}
    times: dict[str, dict[str, float]] = {}
    with default_adamw() if args.default_adamw else contextlib.nullcontext():
        for round_ in (1, 2):
            for name, kw in runs.items():
                model = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
                kdlab.train.fit(model, ds, epochs=warm, device="cpu", progress=False, **kw)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    kdlab.train.fit(model, ds, epochs=epochs, device="cpu", progress=False, **kw)
                times[f"{name} {round_}"] = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
    cols = list(times)
    ops = set().union(*times.values())
    diff = lambda op: sum(times[c].get(op, 0.0) * (1 if c.startswith("KD") else -1) for c in cols)
    top = sorted(ops, key=lambda op: -abs(diff(op)))[:12]
    rows = [[op, *(f"{times[c].get(op, 0.0):.1f}" for c in cols), f"{diff(op) / 2:+.1f}"] for op in top]
    rows.append(["**all operators**", *(f"{sum(times[c].values()):.0f}" for c in cols),
                 f"{sum(diff(op) for op in ops) / 2:+.0f}"])
    step = "default (unfused)" if args.default_adamw else "fit's fused"
    out = (f"### Self CPU time per operator, ms ({epochs} epochs after {warm} warm-up; AdamW step: {step})\n\n"
           + table(["operator", *cols, "KD − CE (mean)"], rows) + f"\n\nMachine: {machine()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
