"""Distillation overhead: what KD costs beyond training the student.

    python benchmarks/distill_overhead.py [--quick]

Student: MLP 800-800; teacher: the kit's CNN, untrained (its forward pass costs the same
as a trained one's).
  1. cached logits: KD epochs (teacher logits computed once, looked up per batch)
     against plain cross-entropy epochs of the same student, with fit's fused AdamW step
     and, for comparison, with torch's default step (what fit used before);
  0. the objective alone on a (128, 10) batch, forward and backward: cross-entropy,
     the op-by-op distillation loss (losses.distillation_loss) and the fused one
     (losses.distillation_terms, used by objectives.Distillation);
  2. augmented inputs: KD with the teacher run online on every shifted batch, KD with
     the per-view logit cache, cross-entropy on the same shifted batches, and the
     teacher's own forward pass over the same number of shifted images.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, machine, median, parser, ratio_stats, table  # noqa: E402

import kdlab  # noqa: E402


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    ds = kdlab.data.load("mnist-5k", seed=0)
    epochs, rounds = (3, 5) if not args.quick else (1, 1)
    if args.quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    n = len(ds.train)
    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    plain_logits = kdlab.train.predict_logits(teacher, ds.train)
    views = kdlab.train.view_logits(teacher, ds.train)
    student = lambda: kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)

    def fit(unfused=False, **kw):
        model = student()

        def run():
            with default_adamw() if unfused else contextlib.nullcontext():
                kdlab.train.fit(model, ds, epochs=epochs, device="cpu", progress=False, **kw)
            return epochs * n
        return run

    def teacher_forward():
        g = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for _ in range(epochs):
                for x, _, _ in ds.train.batches(128, shuffle=True, augment=True, generator=g):
                    teacher(x)
        return epochs * n

    cached = {"CE": fit(), "KD cached": fit(teacher=teacher, teacher_logits=plain_logits),
              "CE, default AdamW": fit(unfused=True),
              "KD cached, default AdamW": fit(unfused=True, teacher=teacher, teacher_logits=plain_logits)}
    augmented = {"CE + shifts": fit(augment=True),
                 "KD online + shifts": fit(teacher=teacher, augment=True, teacher_cache=False),
                 "KD view cache + shifts": fit(teacher=teacher, augment=True, teacher_logits=views),
                 "teacher forward only": teacher_forward}
    for group in (cached, augmented):
        for run in group.values():
            run()
    r1 = alternate(cached, rounds)
    r2 = alternate(augmented, rounds)
    seconds = lambda rates: epochs * n / median(rates) / epochs  # seconds per epoch
    out = ("### Distillation overhead (seconds per epoch, median of rounds)\n\n"
           + table(["setting", "s/epoch", "ratio to its baseline (median, min–max)"], [
               ["CE (baseline)", f"{seconds(r1['CE']):.3f}", "1.00"],
               ["KD, cached teacher logits", f"{seconds(r1['KD cached']):.3f}", ratio_stats(r1["CE"], r1["KD cached"])],
               ["CE, default (unfused) AdamW step (baseline)", f"{seconds(r1['CE, default AdamW']):.3f}", "1.00"],
               ["KD, cached teacher logits, default AdamW step", f"{seconds(r1['KD cached, default AdamW']):.3f}",
                ratio_stats(r1["CE, default AdamW"], r1["KD cached, default AdamW"])],
               ["CE + shifts (baseline)", f"{seconds(r2['CE + shifts']):.3f}", "1.00"],
               ["KD, teacher online on shifted batches", f"{seconds(r2['KD online + shifts']):.3f}",
                ratio_stats(r2["CE + shifts"], r2["KD online + shifts"])],
               ["KD, per-view logit cache", f"{seconds(r2['KD view cache + shifts']):.3f}",
                ratio_stats(r2["CE + shifts"], r2["KD view cache + shifts"])],
               ["teacher forward alone (same shifted images)", f"{seconds(r2['teacher forward only']):.3f}",
                ratio_stats(r2["CE + shifts"], r2["teacher forward only"])],
           ])
           + "\n\nRatios are epoch time divided by the baseline's (so 1.03 means 3% slower). The per-view cache is "
             f"computed once ({ds.train.num_views} views × {n} images) and shared by every run; its one-off cost is "
             "not in the epoch times.\n"
           + f"\nMachine: {machine()}.\n")
    out = objective_only(args.quick) + "\n" + out
    print(out)
    return out


@contextlib.contextmanager
def default_adamw():
    """fit with torch's default (unfused) AdamW step, as kdlab used before it switched to
    the fused one: shows what the switch changed (benchmarks/optimizer_step.py)."""
    make = kdlab.train._make_optimizer

    def unfused(name, params, device, **kw):
        return make(name, params, torch.device("meta"), **kw)  # not cpu/cuda: the default step
    kdlab.train._make_optimizer = unfused
    try:
        yield
    finally:
        kdlab.train._make_optimizer = make


def objective_only(quick: bool) -> str:
    """Forward + backward of the loss alone: what a KD step adds beyond a CE step."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    s = torch.randn(128, 10, generator=gen, requires_grad=True)
    t = torch.randn(128, 10, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    calls = 50 if quick else 2000

    def timed(loss_fn):
        def run():
            for _ in range(calls):
                loss_fn().backward()
            return calls
        return run

    contenders = {"CE": timed(lambda: F.cross_entropy(s, y)),
                  "KD op by op": timed(lambda: kdlab.losses.distillation_loss(s, t, y, 4.0, 0.9)),
                  "KD fused": timed(lambda: kdlab.losses.distillation_terms(s, t, y, 4.0, 0.9)[0])}
    for run in contenders.values():
        run()
    r = alternate(contenders, 3 if quick else 7)
    us = lambda name: 1e6 / median(r[name])
    return ("### The distillation objective alone (forward + backward, batch 128 × 10 classes)\n\n"
            + table(["objective", "µs per call", "time ÷ CE", "time ÷ op-by-op KD"], [
                [name, f"{us(name):.0f}", ratio_stats(r["CE"], r[name]), ratio_stats(r["KD op by op"], r[name])]
                for name in contenders]) + "\n")


if __name__ == "__main__":
    main()
