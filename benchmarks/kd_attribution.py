"""Where a distillation epoch's extra time goes: CE, CE with the teacher-logit lookup, KD.

    python benchmarks/kd_attribution.py [--quick]

The 800-800 MLP, trained 2 epochs first, then copied: every contender starts each round
from the same weights (unlike distill_overhead.py, where each contender keeps training its
own model), so the comparison is of the objective alone. Contenders, alternating:
  CE           plain cross-entropy (fit's default objective);
  CE + lookup  cross-entropy through an objective that owns a Teacher with cached logits and
               asks it for every batch's logits (``self.teacher.logits(batch)``), then ignores them;
  KD forward, CE gradient  cross-entropy's loss and gradient, plus the soft term
               (``losses.kd_loss``) computed on the side, without autograd, and logged:
               KD's forward work without its backward;
  KD           ``objectives.Distillation`` (T = 4, alpha = 0.9) on the same cached logits:
               ``losses.kd_loss`` in plain autograd, the path fit trains with.
3 epochs per round, validation only after the last (``TrainConfig(evaluate_every=3)``); the
teacher is the kit's CNN, untrained, its logits computed once (``kdlab.teacher.Teacher``).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, machine, median, parser, ratio_stats, table  # noqa: E402

import kdlab  # noqa: E402
from kdlab.objectives import Distillation, Objective, as_teacher  # noqa: E402
from kdlab.teacher import Teacher  # noqa: E402
from kdlab.train import TrainConfig  # noqa: E402


class CEWithLookup(Objective):
    """Cross-entropy that asks its teacher for the batch's logits, and ignores them."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = as_teacher(teacher)

    def forward(self, student_logits, batch):
        self.teacher.logits(batch)
        loss = F.cross_entropy(student_logits.float(), batch.y)
        return loss, {"ce": loss.detach()}


class CEPlusKDForward(CEWithLookup):
    """Cross-entropy, plus the distillation soft term computed without autograd and logged."""

    def forward(self, student_logits, batch):
        teacher_logits = self.teacher.logits(batch)
        with torch.no_grad():
            kd = kdlab.losses.kd_loss(student_logits, teacher_logits, 4.0, check=False)
        loss = F.cross_entropy(student_logits.float(), batch.y)
        return loss, {"kd": kd, "ce": loss.detach()}


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    ds = kdlab.data.load("mnist-5k", seed=0)
    if args.quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    epochs, rounds = (1, 1) if args.quick else (3, 9)
    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    # One Teacher with the logits computed once, shared by every contender that looks them up.
    cached = Teacher(teacher, logits=kdlab.inference.predict_logits(teacher, ds.train))
    start = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
    kdlab.train.fit(start, ds, epochs=1 if args.quick else 2, progress=False, device="cpu")

    def contender(objective):
        def run():
            model = copy.deepcopy(start)
            kdlab.train.fit(model, ds, objective=objective, epochs=epochs, progress=False, device="cpu",
                            config=TrainConfig(evaluate_every=epochs))
            return epochs * len(ds.train)
        return run
    contenders = {"CE": contender(None), "CE + lookup": contender(CEWithLookup(cached)),
                  "KD forward, CE gradient": contender(CEPlusKDForward(cached)),
                  "KD": contender(Distillation(cached, temperature=4.0, alpha=0.9))}
    for run in contenders.values():
        run()
    rates = alternate(contenders, rounds)
    steps = epochs * -(-len(ds.train) // 128)
    ms = lambda name: 1000 * epochs * len(ds.train) / median(rates[name])  # noqa: E731
    rows = [[name, f"{ms(name):.0f}", ratio_stats(rates["CE"], rates[name]),
             f"{1000 * (ms(name) - ms('CE')) / steps:+.0f}"] for name in contenders]
    out = (f"### A distillation epoch, attributed ({epochs} epochs from the same weights, {rounds} rounds)\n\n"
           + table(["contender", "ms per round", "time ÷ CE (median, min–max)", "µs per step more than CE"], rows)
           + f"\n\nMachine: {machine()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
