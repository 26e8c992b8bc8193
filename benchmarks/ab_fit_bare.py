"""A direct A/B of fit against the bare loop for one model, alternating rounds.

    python benchmarks/ab_fit_bare.py [cnn|mlp] [rounds] [epochs]

Prints the median time of each contender and its speed relative to the bare loop:
fit on the Dataset (with per-epoch validation), fit on the train split alone (no
validation), and the bare tensor loop of loop_throughput.py.
"""

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kdlab  # noqa: E402


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    name = argv[0] if argv else "cnn"
    rounds = int(argv[1]) if len(argv) > 1 else 3
    epochs = int(argv[2]) if len(argv) > 2 else 2
    ds = kdlab.data.load("mnist-5k", seed=0)
    kwargs = {"hidden": (800, 800)} if name == "mlp" else {}
    build = lambda: kdlab.models.create(name, num_classes=10, input_shape=ds.input_shape, seed=0, **kwargs)
    bare_model = build()
    opt = torch.optim.AdamW(bare_model.parameters(), 1e-3, fused=True)  # the step fit uses
    x_all, y_all = ds.train.inputs(), ds.train.y

    def bare():
        bare_model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(y_all)).split(128):
                loss = F.cross_entropy(bare_model(x_all[idx]), y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    with_val, without_val = build(), build()
    contenders = {"bare": bare,
                  "fit (with validation)": lambda: kdlab.train.fit(with_val, ds, epochs=epochs, device="cpu",
                                                                   progress=False),
                  "fit (train split only)": lambda: kdlab.train.fit(without_val, ds.train, epochs=epochs,
                                                                    device="cpu", progress=False)}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for label, run in contenders.items():
            t0 = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - t0)
    base = statistics.median(times["bare"])
    result = {label: base / statistics.median(t) for label, t in times.items()}
    for label, t in times.items():
        print(f"{label:>24}: {statistics.median(t):.3f} s, speed ÷ bare {result[label]:.3f}")
    return result


if __name__ == "__main__":
    main()
