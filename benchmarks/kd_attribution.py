"""Where a distillation epoch's extra time goes: CE, CE with the teacher-logit lookup, KD.

    python benchmarks/kd_attribution.py [--quick]

The 800-800 MLP, trained 2 epochs first, then copied: every contender starts each round
from the same weights (unlike distill_overhead.py, where each contender keeps training its
own model), so the comparison is of the objective alone. Contenders, alternating:
  CE           plain cross-entropy;
  CE + lookup  cross-entropy through an objective that declares uses_teacher, so fit looks
               up the cached teacher logits every batch and ignores them;
  KD ops, CE gradient  cross-entropy's loss and gradient, plus the distillation terms computed
               on the side and thrown away: KD's work without KD's gradient values;
  KD           objectives.Distillation (T = 4, alpha = 0.9) on the same cached logits.
3 epochs per round, validation only after the last; the teacher is the kit's CNN, untrained.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, machine, median, parser, ratio_stats, table  # noqa: E402

import kdlab  # noqa: E402
from kdlab.objectives import Distillation, Objective  # noqa: E402


class CEPlusKDWork(Objective):
    """Cross-entropy, plus the distillation terms computed and discarded."""

    uses_teacher = True

    def forward(self, student_logits, targets, teacher_logits=None, *, inputs=None):
        _, kd, _ = kdlab.losses.distillation_terms(student_logits.detach().requires_grad_(), teacher_logits, targets,
                                                   4.0, 0.9)
        loss = F.cross_entropy(student_logits, targets)
        return loss, {"ce": loss.detach(), "kd": kd}


class CEWithLookup(Objective):
    """Cross-entropy that receives (and ignores) the teacher's logits."""

    uses_teacher = True

    def forward(self, student_logits, targets, teacher_logits=None, *, inputs=None):
        loss = F.cross_entropy(student_logits, targets)
        return loss, {"ce": loss.detach()}


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    ds = kdlab.data.load("mnist-5k", seed=0)
    if args.quick:
        import torch
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    epochs, rounds = (1, 1) if args.quick else (3, 9)
    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    logits = kdlab.train.predict_logits(teacher, ds.train)
    start = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
    kdlab.train.fit(start, ds, epochs=1 if args.quick else 2, progress=False, device="cpu")

    def contender(objective):
        def run():
            model = copy.deepcopy(start)
            kw = {} if objective is None else {"teacher": teacher, "teacher_logits": logits, "objective": objective}
            kdlab.train.fit(model, ds, epochs=epochs, progress=False, device="cpu", evaluate_every=epochs, **kw)
            return epochs * len(ds.train)
        return run
    contenders = {"CE": contender(None), "CE + lookup": contender(CEWithLookup()),
                  "KD ops, CE gradient": contender(CEPlusKDWork()),
                  "KD": contender(Distillation(temperature=4.0, alpha=0.9))}
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
