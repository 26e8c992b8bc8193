"""The optimizer step: torch's default AdamW against its foreach and fused kernels.

    python benchmarks/optimizer_step.py [--quick]

Why it matters: for the 800-800 MLP on the CPU the AdamW step is a large share of a
training step (1.3 M parameters, read and written several times per step), and the
default step's ``sqrt`` of the second-moment buffer slows down when that buffer holds
exact zeros, which it does for every weight of a dead ReLU unit. Distilled students
reach such units more often than cross-entropy ones, which made KD epochs look slower
than they are. kdlab.train.fit uses the fused step (see kdlab.train.make_optimizer).

  1. one AdamW step over the MLP 800-800's parameters, gradients dense or with 40% of
     the hidden units' rows exactly zero, for each implementation;
  2. ``Tensor.sqrt`` on an 800 x 800 tensor of normal floats against one of zeros.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, machine, median, parser, ratio_stats, table  # noqa: E402

SHAPES = [(800, 784), (800,), (800, 800), (800,), (10, 800), (10,)]  # the MLP 800-800's parameters


def step_timer(impl: dict, zero_rows: bool, calls: int):
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.05) for s in SHAPES]
    grads = [torch.randn(s, generator=gen) * 1e-3 for s in SHAPES]
    if zero_rows:  # a dead hidden unit gets no gradient in its row of weights, nor in its bias
        for g in grads[:4]:
            g[: int(0.4 * g.shape[0])] = 0.0
    opt = torch.optim.AdamW(params, lr=1e-3, **impl)

    def run():
        for _ in range(calls):
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
        return calls
    return run


def sqrt_timer(x: torch.Tensor, calls: int):
    def run():
        for _ in range(calls):
            x.sqrt()
        return calls
    return run


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    calls, rounds = (2, 1) if args.quick else (40, 7)
    impls = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    rows = []
    for zero_rows in (False, True):
        contenders = {name: step_timer(kw, zero_rows, calls) for name, kw in impls.items()}
        for run in contenders.values():
            run()
        r = alternate(contenders, rounds)
        for name in impls:
            rows.append(["40% zero rows" if zero_rows else "dense", name, f"{1e6 / median(r[name]):,.0f}",
                         ratio_stats(r[name], r["default"])])
    normal = torch.rand(800, 800) + 0.5
    zeros = torch.zeros(800, 800)
    sq = {"normal floats": sqrt_timer(normal, calls * 5), "zeros": sqrt_timer(zeros, calls * 5)}
    for run in sq.values():
        run()
    rs = alternate(sq, rounds)
    out = ("### The AdamW step (µs per step over the MLP 800-800's parameters, median of rounds)\n\n"
           + table(["gradients", "implementation", "µs per step", "speed-up over default (median, min–max)"], rows)
           + "\n\n### `Tensor.sqrt` of an 800 × 800 tensor\n\n"
           + table(["values", "µs per call", "time ÷ normal floats"], [
               [name, f"{1e6 / median(rs[name]):,.0f}", ratio_stats(rs["normal floats"], rs[name])] for name in sq])
           + f"\n\nMachine: {machine()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
