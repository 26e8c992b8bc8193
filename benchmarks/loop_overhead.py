"""Where fit's own overhead goes: a bare loop, then fit's per-batch pieces added one at a time.

    python benchmarks/loop_overhead.py                       # the 800-800 MLP, 25 rounds of 3 epochs
    python benchmarks/loop_overhead.py --model cnn --rounds 8 --epochs 1   # the CNN, as in docs/BENCHMARKS.md

Every contender trains on the mnist-5k train split (3,600 images) in batches of 128 with the
fused AdamW step, without validation, and alternates with the others round by round:

  bare:          randperm batches from the whole split as one float tensor, nothing else
                 (the bare loop of loop_throughput.py);
  base:          the same, drawing batches through ``Split.batches`` with denormals flushed, as fit does;
  + schedule:    base, setting the learning rate of fit's default schedule before every step;
  + objective:   base, with the loss from the ``CrossEntropy`` objective (an nn.Module) and its logs;
  + statistics:  base, keeping fit's per-batch loss and accuracy (``train._EpochStats``);
  + dropout:     base, with fit's per-epoch dropout seeding;
  + snapshot:    base, with fit's per-epoch copy of the weights (kept to recover from a non-finite loss);
  all pieces:    base with every piece above;
  fit:           ``kdlab.train.fit`` on the train split (the rest: argument checks, the class check,
                 the optimizer built afresh, the History). Its time outside its epochs (the call's
                 wall time less the epochs' own ``seconds``) is printed below the table.

Ratios are against *base*: the geometric mean of the paired per-round ratios with a 95%
interval. The pieces are fit's private helpers, so the contenders do what fit does, not a copy.
"""

import contextlib
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kdlab  # noqa: E402
from common import alternate, machine, median, parser, positive_int, ratio_ci, table  # noqa: E402
from kdlab import train  # noqa: E402

PIECES = ("schedule", "objective", "statistics", "dropout", "snapshot")


def make_loop(model: torch.nn.Module, split, epochs: int, batch_size: int, *, fit_data: bool,
              pieces: tuple[str, ...] = (), layout: torch.memory_format = torch.contiguous_format):
    """One contender: a training loop over ``split`` with the named pieces of fit switched on.
    ``fit_data``: draw batches through ``Split.batches`` with denormals flushed (else: the bare loop)."""
    device = torch.device("cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    objective = kdlab.objectives.CrossEntropy()
    config = train.TrainConfig()
    n, steps = len(split), math.ceil(len(split) / batch_size)
    x_all, y_all = split.inputs(), split.y
    generator = torch.Generator()

    def batches(epoch):
        if not fit_data:
            return ((x_all[idx].contiguous(memory_format=layout), y_all[idx], None)
                    for idx in torch.randperm(n).split(batch_size))
        generator.manual_seed(epoch)
        return ((b.x, b.y, b) for b in split.batches(batch_size, shuffle=True, generator=generator, normalized=x_all,
                                                     memory_format=layout))

    def run() -> int:
        with kdlab.devices.flush_denormals(fit_data):
            last_good = train._snapshot(model) if "snapshot" in pieces else None
            for epoch in range(epochs):
                model.train()
                stats = train._EpochStats(steps, device) if "statistics" in pieces else None
                seeded = (train._dropout_seeded(epoch, device) if "dropout" in pieces else contextlib.nullcontext())
                with seeded:
                    for i, (x, y, batch) in enumerate(batches(epoch)):
                        if "schedule" in pieces:
                            train._set_lr(opt, train._lr_at(epoch * steps + i, epochs * steps, 1e-3, config, steps))
                        logits = model(x)  # (B, K)
                        if "objective" in pieces:
                            loss, logs = objective(logits, batch)
                        else:
                            loss = F.cross_entropy(logits, y)
                            logs = {"ce": loss.detach()}
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        if "objective" in pieces:
                            logs.update(objective.after_step(logits.detach(), batch))
                        if stats is not None:
                            stats.add(loss, logits, y, logs)
                if stats is not None:
                    stats.first_non_finite(), stats.means()  # fit reads them back once an epoch
                if last_good is not None:
                    last_good = train._snapshot(model, into=last_good)
        return epochs * n
    return run


def main(argv=None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    p.add_argument("--rounds", type=positive_int, default=25)
    p.add_argument("--epochs", type=positive_int, default=3)
    args = p.parse_args(argv)
    ds = kdlab.data.load("mnist-5k", seed=0)
    split, rounds, epochs = ds.train, args.rounds, args.epochs
    if args.quick:
        split, rounds, epochs = split.subset(torch.arange(256)), 2, 1
    kwargs = {"hidden": (800, 800)} if args.model == "mlp" else {}

    build = lambda: kdlab.models.create(args.model, num_classes=10, input_shape=ds.input_shape, seed=0, **kwargs)
    # Every contender trains in fit's memory layout (channels_last for the CNN where that pays).
    layout = (torch.channels_last if kdlab.devices.channels_last_for(build(), torch.device("cpu"))
              else torch.contiguous_format)

    def loop(fit_data: bool, pieces: tuple[str, ...] = ()):
        return make_loop(build().to(memory_format=layout), split, epochs, 128, fit_data=fit_data, pieces=pieces,
                         layout=layout)

    contenders = {"bare": loop(False), "base": loop(True)}
    for piece in PIECES:
        contenders[f"+ {piece}"] = loop(True, (piece,))
    contenders["all pieces"] = loop(True, PIECES)
    fit_model = build()
    outside = []  # per fit call: seconds spent outside its epochs, share of the call

    def fit() -> int:
        t0 = time.perf_counter()
        history = kdlab.train.fit(fit_model, split, epochs=epochs, lr=1e-3, batch_size=128, device="cpu",
                                  progress=False)
        wall = time.perf_counter() - t0
        extra = wall - sum(record["seconds"] for record in history.records)
        outside.append((extra, extra / wall))
        return epochs * len(split)
    contenders["fit"] = fit
    for run in contenders.values():  # warm-up: allocator, kernels, first-call costs
        run()
    outside.clear()  # the warm-up call's first-time costs are not fit's
    rates = alternate(contenders, rounds)
    rows = [[name, f"{median(r):,.0f}", ratio_ci(r, rates["base"])] for name, r in rates.items()]
    plural = "s" if epochs > 1 else ""
    out = (f"### fit's loop, piece by piece ({args.model}, {rounds} rounds of {epochs} epoch{plural})\n\n"
           + table(["contender", "samples/s (median)", "÷ base: geometric mean [95% CI]"], rows)
           + f"\n\nfit's work outside its epochs (argument checks, the class check, a new optimizer, the History): "
             f"{median([e for e, _ in outside]) * 1000:.1f} ms a call, {median([f for _, f in outside]):.1%} of it "
             "(medians)."
           + f"\n\nMachine: {machine()}. mnist-5k train split ({len(split)} images), batch 128, fused AdamW "
             f"(lr 1e-3), no validation, memory layout {str(layout).removeprefix('torch.')}.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
