"""Notebook 12's speeds: generation with and without the KV cache, and training characters per second.

    python benchmarks/lm_throughput.py [--quick] [--device cpu]

Setting (the defaults of notebook 12): the ``pydoc`` corpus in windows of 64 characters; the
teacher transformer (d_model 128, 4 layers), the transformer student (d_model 60, 2 layers) and
the GRU student (hidden 128).

* **Generation**: each model continues 16 prompts of 8 characters to a full window (57 new
  characters each), sampling at T = 1 with one seeded generator, through its decoding state
  (the KV cache; a GRU's hidden state) and by running the whole prefix at every step. Both
  write the same text (tests/test_language.py); the table gives characters per second.
* **Training**: one ``fit`` epoch (no validation split) over 512 training windows (--quick:
  64), batch 32: the teacher and the GRU with cross-entropy; the transformer student with each
  objective of the notebook: cross-entropy, forward KL and reverse KL from cached teacher
  logits (one objective per method, shared by every round, so the cache is computed once, in
  the warm-up round), and on-policy distillation. Characters per second count every position
  trained on; the ratio is against the student's cross-entropy epoch.

Every contender runs once to warm up, then the contenders alternate round by round
(benchmarks/common.py): ratios are ratios of medians, with the range of per-round ratios.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, machine, median, parse_with_device, ratio_stats, table  # noqa: E402

import kdlab  # noqa: E402
from kdlab import lm  # noqa: E402
from kdlab.objectives import Distillation, ReverseKL  # noqa: E402


def main(argv=None) -> str:
    args, device = parse_with_device(__doc__.splitlines()[0], argv, "cpu (default) or cuda (bf16 autocast, as fit uses there)")
    rounds, windows = (2, 64) if args.quick else (5, 512)
    ds = kdlab.data.load("pydoc", context=64)
    train = ds.train.subset(torch.linspace(0, len(ds.train) - 1, windows).round().long())
    make = {
        "teacher": lambda: kdlab.models.create("transformer", num_classes=ds.num_classes, input_shape=ds.input_shape,
                                               seed=0),
        "transformer student": lambda: kdlab.models.create("transformer", num_classes=ds.num_classes,
                                                           input_shape=ds.input_shape, d_model=60, n_layers=2, seed=0),
        "GRU student": lambda: kdlab.models.create("gru", num_classes=ds.num_classes, input_shape=ds.input_shape,
                                                   hidden_size=128, seed=0),
    }
    models = {name: build().to(device) for name, build in make.items()}
    out = [f"## Language models: generation and training speed ({'quick' if args.quick else 'full'})", "",
           f"Machine: {machine()}; device {kdlab.devices.describe(device)}. Command: "
           f"`python benchmarks/lm_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(), ""]

    # --- generation: KV cache against the whole prefix at every step ----------------------------
    prompt = ds.val.x[:16, :8].to(device)
    new = 64 + 1 - 8

    def writer(model, cache):
        def go():
            lm.generate(model, prompt, new, generator=torch.Generator(device).manual_seed(0), use_cache=cache)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return prompt.shape[0] * new
        return go

    rows = []
    for name, model in models.items():
        contenders = {"cache": writer(model, True), "no cache": writer(model, False)}
        for go in contenders.values():
            go()  # warm-up
        rates = alternate(contenders, rounds)
        rows.append([name, f"{median(rates['cache']):,.0f}", f"{median(rates['no cache']):,.0f}",
                     ratio_stats(rates["cache"], rates["no cache"])])
    out += [f"Generation: 16 prompts × {new} new characters, characters per second (median of {rounds} rounds).", "",
            table(["model", "KV cache", "no cache", "cache ÷ no cache"], rows), ""]

    # --- training: characters per second of one fit epoch ---------------------------------------
    teacher = models["teacher"].eval()  # untrained: its logits cost what a trained teacher's do
    cached = kdlab.teacher.Teacher(teacher)
    objectives = {"cross-entropy": None, "forward KL (cached teacher)": Distillation(cached, 1.0, 1.0),
                  "reverse KL (cached teacher)": ReverseKL(cached, 1.0, 1.0)}

    def trainer(build, objective=None, on_policy=False):
        def go():
            model = build()
            chosen = lm.OnPolicy(cached, model, seed=0) if on_policy else objective
            kdlab.train.fit(model, train, objective=chosen, epochs=1, batch_size=32, device=device, progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return train.num_targets
        return go

    contenders = {"teacher, cross-entropy": trainer(make["teacher"]),
                  "GRU student, cross-entropy": trainer(make["GRU student"])}
    contenders.update({f"student, {what}": trainer(make["transformer student"], objective)
                       for what, objective in objectives.items()})
    contenders["student, on-policy (forward KL)"] = trainer(make["transformer student"], on_policy=True)
    for go in contenders.values():
        go()  # warm-up; the objectives' Teacher computes its cache here
    rates = alternate(contenders, rounds)
    reference = rates["student, cross-entropy"]
    rows = [[name, f"{median(r):,.0f}", ratio_stats(r, reference)] for name, r in rates.items()]
    out += [f"Training: one fit epoch over {windows} windows of 64 characters, batch 32; characters per second "
            f"(median of {rounds} rounds) and the ratio to the transformer student's cross-entropy epoch.", "",
            table(["model, objective", "characters/s", "÷ student CE"], rows), ""]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
