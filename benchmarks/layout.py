"""Memory layout and batch size on the CPU: what channels_last and smaller inference batches buy.

    python benchmarks/layout.py [--quick]

1. Training epochs, NCHW against channels_last (model and batches), bare loop with the
   fused AdamW step, alternating: the kit's CNN on mnist-5k (28x28), ResNet-20 on random
   32x32x3 images (CIFAR-shaped), and the smoke-mode CNN on 8x8 digits.
2. Inference of the kit's CNN (untrained; same cost as trained) over the 3,600 mnist-5k
   training images, as kdlab.inference.predict_logits and predict_augmented_logits run it:
   batch size x layout.

These measurements are why fit and kdlab.inference.predict_logits use channels_last for
convolutional models on x86-64 CPUs with oneDNN (kdlab.devices.channels_last_pays) and why
CPU inference uses batches of 256 (kdlab.inference.eval_batch_size).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, machine, median, parser, ratio_stats, table  # noqa: E402

import kdlab  # noqa: E402

CL, NCHW = torch.channels_last, torch.contiguous_format


def training(quick: bool) -> str:
    ds = kdlab.data.load("mnist-5k", seed=0)
    n_mnist = 256 if quick else len(ds.train)
    cases = {
        "CNN, mnist-5k 28x28": (lambda: kdlab.models.create("cnn", num_classes=10, input_shape=(1, 28, 28), seed=0),
                                ds.train.inputs()[:n_mnist], ds.train.y[:n_mnist]),
        "ResNet-20, 32x32x3": (lambda: kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), seed=0),
                               torch.randn(128 if quick else 1024, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                               torch.randint(0, 10, (128 if quick else 1024,), generator=torch.Generator().manual_seed(1))),
        "smoke CNN, digits 8x8": (lambda: kdlab.models.create("cnn", num_classes=10, input_shape=(1, 8, 8), seed=0,
                                                              channels=(8, 16), fc=32),
                                  torch.randn(1280, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                                  torch.randint(0, 10, (1280,), generator=torch.Generator().manual_seed(1))),
    }
    rows = []
    for name, (build, x, y) in cases.items():
        def contender(layout):
            model = build().to(memory_format=layout)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

            def run():
                model.train()
                for idx in torch.randperm(len(y)).split(128):
                    loss = F.cross_entropy(model(x[idx].contiguous(memory_format=layout)), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                return len(y)
            return run
        contenders = {"NCHW": contender(NCHW), "channels_last": contender(CL)}
        for run in contenders.values():
            run()
        rates = alternate(contenders, 1 if quick else 5)
        rows.append([name, f"{median(rates['NCHW']):,.0f}", f"{median(rates['channels_last']):,.0f}",
                     ratio_stats(rates["channels_last"], rates["NCHW"])])
    return ("### Training epochs, NCHW against channels_last (samples/s, bare loop, batch 128)\n\n"
            + table(["model", "NCHW", "channels_last", "channels_last speed-up"], rows) + "\n")


def inference(quick: bool) -> str:
    ds = kdlab.data.load("mnist-5k", seed=0)
    x = ds.train.inputs()[: 512 if quick else None]
    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    nchw, cl = teacher, kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0).eval()
    cl.to(memory_format=CL)

    def contender(model, layout, batch):
        def run():
            with torch.inference_mode():
                for xb in x.split(batch):
                    model(xb.contiguous(memory_format=layout))
            return len(x)
        return run
    settings = [(b, name) for b in (1024, 256, 128) for name in ("NCHW", "channels_last")]
    contenders = {f"{name}, batch {b}": contender(cl if name == "channels_last" else nchw,
                                                  CL if name == "channels_last" else NCHW, b) for b, name in settings}
    for run in contenders.values():
        run()
    rates = alternate(contenders, 1 if quick else 5)
    base = rates["NCHW, batch 1024"]
    rows = [[name, f"{median(r):,.0f}", f"{1000 * len(x) / median(r):.0f}", ratio_stats(r, base)]
            for name, r in rates.items()]
    return (f"### Inference of the CNN teacher over {len(x):,} images (images/s; ms in all)\n\n"
            + table(["layout, batch", "images/s", "ms", "speed-up against NCHW, batch 1024 (as before)"], rows) + "\n")


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    out = training(args.quick) + "\n" + inference(args.quick) + f"\nMachine: {machine()}.\n"
    print(out)
    return out


if __name__ == "__main__":
    main()
