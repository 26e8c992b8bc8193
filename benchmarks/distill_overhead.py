"""Distillation overhead: what KD costs beyond training the student.

    python benchmarks/distill_overhead.py [--quick]

Student: MLP 800-800; teacher: the kit's CNN, untrained (its forward pass costs the same
as a trained one's). Every KD contender trains with ``objectives.Distillation`` (T = 4,
alpha = 0.9), whose per-batch loss is ``losses.kd_loss`` in plain autograd.
  0. the objective alone on a (128, 10) batch, forward and backward: cross-entropy,
     ``losses.distillation_loss`` (the checked, notebook-facing function) and
     ``objectives.Distillation`` as fit calls it (teacher-logit lookup, ``kd_loss`` with
     its checks skipped, cross-entropy, the weighted sum and its logs);
  1. cached logits: KD epochs (the teacher's logits computed once by its
     ``kdlab.teacher.Teacher``, looked up per batch) against plain cross-entropy epochs of
     the same student, with fit's fused AdamW step and, for comparison, with torch's
     default step (what fit used before); every epoch validates, as fit's defaults do
     (benchmarks/kd_overhead.py gives the headline ratio without validation);
  2. augmented inputs: KD with the teacher run online on every shifted batch, KD with
     the per-augmentation logit cache, cross-entropy on the same shifted batches, and the
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
from kdlab.data import Batch, Split  # noqa: E402
from kdlab.objectives import Distillation  # noqa: E402
from kdlab.teacher import Teacher  # noqa: E402


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    ds = kdlab.data.load("mnist-5k", seed=0)
    epochs, rounds = (3, 5) if not args.quick else (1, 1)
    if args.quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    n = len(ds.train)
    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    plain_logits = kdlab.inference.predict_logits(teacher, ds.train)  # (N, K)
    augmented_logits = kdlab.inference.predict_augmented_logits(teacher, ds.train)  # (N, A, K)
    # One objective per setting, shared by its warm-up and every round, as one objective is
    # shared by a notebook's seeds: the logits above are computed once, outside the epochs.
    kd_cached = Distillation(Teacher(teacher, logits=plain_logits), temperature=4.0, alpha=0.9)
    kd_online = Distillation(Teacher(teacher, cache=False), temperature=4.0, alpha=0.9)
    kd_augmented = Distillation(Teacher(teacher, logits=augmented_logits), temperature=4.0, alpha=0.9)
    student = lambda: kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)

    def fit(unfused=False, **kw):
        model = student()

        def run():
            with default_adamw() if unfused else contextlib.nullcontext():
                kdlab.train.fit(model, ds, epochs=epochs, device="cpu", progress=False, **kw)
            return epochs * n
        return run

    # The layout the online Teacher runs its convolutions in (channels_last where that pays).
    layout = torch.channels_last if kdlab.devices.channels_last_pays(torch.device("cpu")) else torch.contiguous_format

    def teacher_forward():
        g = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for _ in range(epochs):
                for batch in ds.train.batches(128, shuffle=True, augment=True, generator=g, memory_format=layout):
                    teacher(batch.x)
        return epochs * n

    cached = {"CE": fit(), "KD cached": fit(objective=kd_cached),
              "CE, default AdamW": fit(unfused=True),
              "KD cached, default AdamW": fit(unfused=True, objective=kd_cached)}
    augmented = {"CE + shifts": fit(augment=True),
                 "KD online + shifts": fit(objective=kd_online, augment=True),
                 "KD augmentation cache + shifts": fit(objective=kd_augmented, augment=True),
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
               ["KD, per-augmentation logit cache", f"{seconds(r2['KD augmentation cache + shifts']):.3f}",
                ratio_stats(r2["CE + shifts"], r2["KD augmentation cache + shifts"])],
               ["teacher forward alone (same shifted images)", f"{seconds(r2['teacher forward only']):.3f}",
                ratio_stats(r2["CE + shifts"], r2["teacher forward only"])],
           ])
           + "\n\nRatios are epoch time divided by the baseline's (so 1.03 means 3% slower). The per-augmentation "
             f"cache is computed once ({ds.train.num_augmentations} augmentations × {n} images, "
             "kdlab.inference.predict_augmented_logits) and shared by every run; its one-off cost is not in the "
             "epoch times.\n"
           + f"\nMachine: {machine()}.\n")
    out = objective_only(args.quick) + "\n" + out
    print(out)
    return out


@contextlib.contextmanager
def default_adamw():
    """fit with torch's default (unfused) optimizer step, as kdlab used before it switched to
    the fused one: shows what the switch changed (benchmarks/optimizer_step.py)."""
    make = kdlab.train.make_optimizer

    def unfused(name, model, *, lr, weight_decay, momentum=0.9, extra=()):
        params = [p for p in model.parameters() if p.requires_grad] + [p for p in extra if p.requires_grad]
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    kdlab.train.make_optimizer = unfused  # fit looks the name up in kdlab.train at each call
    try:
        yield
    finally:
        kdlab.train.make_optimizer = make


def prepared_distillation(teacher_logits: torch.Tensor, labels: torch.Tensor) -> Distillation:
    """``objectives.Distillation`` serving ``teacher_logits`` (B, K) as given logits, prepared as
    fit prepares it, so that calling it on a batch with ``idx = arange(B)`` is fit's per-batch
    objective: the teacher-logit lookup, ``losses.kd_loss``, cross-entropy and the logs."""
    b, k = teacher_logits.shape
    stand_in = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, k))  # never run on the batches
    split = Split(torch.zeros(b, 1, 1, 1, dtype=torch.uint8), labels, torch.zeros(1), torch.ones(1))
    objective = Distillation(Teacher(stand_in, logits=teacher_logits), temperature=4.0, alpha=0.9)
    objective.prepare(split, augment=False, epochs=1, device=torch.device("cpu"), amp=False, num_classes=k)
    return objective


def objective_only(quick: bool) -> str:
    """Forward + backward of the loss alone: what a KD step adds beyond a CE step."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    s = torch.randn(128, 10, generator=gen, requires_grad=True)
    t = torch.randn(128, 10, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    calls = 50 if quick else 2000
    x, idx, aug = torch.zeros(128, 1, 1, 1), torch.arange(128), torch.zeros(128, dtype=torch.long)
    ce_objective = kdlab.objectives.CrossEntropy()
    kd_objective = prepared_distillation(t, y)

    def timed(loss_fn):
        def run():
            for _ in range(calls):
                loss_fn().backward()
            return calls
        return run

    # A new Batch per call, as fit makes one per step (the Teacher answers a repeated batch from memory).
    contenders = {"CE (F.cross_entropy)": timed(lambda: F.cross_entropy(s, y)),
                  "CE, objectives.CrossEntropy (fit's default)": timed(
                      lambda: ce_objective(s, Batch(x, y, idx, aug))[0]),
                  "soft term alone, losses.kd_loss": timed(lambda: kdlab.losses.kd_loss(s, t, 4.0, check=False)),
                  "KD, losses.distillation_loss (checked)": timed(
                      lambda: kdlab.losses.distillation_loss(s, t, y, 4.0, 0.9)),
                  "KD, objectives.Distillation (fit's path)": timed(lambda: kd_objective(s, Batch(x, y, idx, aug))[0])}
    for run in contenders.values():
        run()
    r = alternate(contenders, 3 if quick else 7)
    us = lambda name: 1e6 / median(r[name])  # noqa: E731
    ce, checked = "CE (F.cross_entropy)", "KD, losses.distillation_loss (checked)"
    return ("### The distillation objective alone (forward + backward, batch 128 × 10 classes)\n\n"
            + table(["objective", "µs per call", "time ÷ CE", "time ÷ distillation_loss"], [
                [name, f"{us(name):.0f}", ratio_stats(r[ce], r[name]), ratio_stats(r[checked], r[name])]
                for name in contenders])
            + "\n\nfit trains with the last row: `Distillation.forward` looks the teacher's logits up and calls "
              "`losses.kd_loss` (plain autograd, argument checks made once when the objective is built).\n")


if __name__ == "__main__":
    main()
