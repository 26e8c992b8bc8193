"""Loop throughput: kdlab.train.fit against a conventional tutorial loop and a bare tensor loop.

    python benchmarks/loop_throughput.py [--quick] [--models mlp cnn] [--rounds N]

Same model, data (mnist-5k train split), batch size (128) and optimizer (AdamW,
lr 1e-3) for all of them:
  conventional: a per-sample Dataset returning PIL -> ToTensor -> Normalize, through a
                DataLoader (num_workers=0, as in most tutorials), default AdamW;
  bare:         the whole split as one float tensor, randperm batches,
                forward/backward/step, nothing else, with the fused AdamW step that fit
                uses: the practical limit, so fit / bare is the loop's own overhead;
  bare, default AdamW: the same bare loop with torch's default (unfused) AdamW step,
                to show how much of fit's lead over the conventional loop is the optimizer;
  bare, channels_last (CNN only): the bare loop with model and batches in the
                channels_last memory format, which fit uses for convolutions where it pays
                (kdlab.devices.channels_last_pays), so fit's own overhead is measured against
                a loop in the same layout;
  bare + validation: the bare loop in fit's layout that also scores the validation split
                after every epoch (loss and accuracy, batches of kdlab.inference.eval_batch_size),
                as a tutorial loop does and as fit does: the same work as fit;
  fit:          kdlab.train.fit, whole epochs including its per-epoch validation,
                history, LR schedule and non-finite checks (progress bar off and on);
  fit, no validation: fit given the training split alone (fit(model, ds.train)), so it
                does the bare loop's work and nothing more; divided by the bare loop in
                fit's memory format, that is the loop's own overhead;
  fit, amp=True: the same with bf16 autocast (TrainConfig(amp=True)), only on CPUs with native bf16 (AMX,
                AVX512-BF16): reduced precision, so a separate column, not "the same model".
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (alternate, best_ratio, machine, median, parser, positive_int, ratio_ci,  # noqa: E402
                    ratio_stats, table)

import kdlab  # noqa: E402


class PILDataset(torch.utils.data.Dataset):
    """The textbook pipeline: one PIL image per __getitem__, converted and normalised per sample."""

    def __init__(self, split):
        from torchvision import transforms

        self.images = split.x[:, 0].numpy()  # (N, 28, 28) uint8
        self.labels = split.y.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(),
                                             transforms.Normalize(split.mean.tolist(), split.std.tolist())])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def make_contenders(model_name: str, ds, epochs: int, batch_size: int = 128):
    kwargs = {"hidden": (800, 800)} if model_name == "mlp" else {}
    build = lambda: kdlab.models.create(model_name, num_classes=10, input_shape=ds.input_shape, seed=0, **kwargs)
    n = len(ds.train)

    conv_model = build()
    conv_opt = torch.optim.AdamW(conv_model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(PILDataset(ds.train), batch_size=batch_size, shuffle=True, num_workers=0)

    def conventional():
        conv_model.train()
        for _ in range(epochs):
            for x, y in loader:
                loss = F.cross_entropy(conv_model(x), y)
                conv_opt.zero_grad()
                loss.backward()
                conv_opt.step()
        return epochs * n

    x_all, y_all = ds.train.inputs(), ds.train.y
    x_val, y_val = ds.val.inputs(), ds.val.y
    eval_batch = kdlab.inference.eval_batch_size(torch.device("cpu"))

    def bare_loop(fused, channels_last=False, validation=False):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        bare_model = build().to(memory_format=layout)
        bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=1e-3, fused=fused)

        def bare():
            for _ in range(epochs):
                bare_model.train()
                for idx in torch.randperm(n).split(batch_size):
                    loss = F.cross_entropy(bare_model(x_all[idx].contiguous(memory_format=layout)), y_all[idx])
                    bare_opt.zero_grad()
                    loss.backward()
                    bare_opt.step()
                if validation:  # what fit records after every epoch
                    bare_model.eval()
                    with torch.no_grad():
                        logits = torch.cat([bare_model(x.contiguous(memory_format=layout))
                                            for x in x_val.split(eval_batch)])
                    float(F.cross_entropy(logits, y_val)), float((logits.argmax(1) == y_val).float().mean())
            return epochs * n
        return bare

    fit_model = build()

    def fit(progress, amp=None, validation=True):
        model = fit_model if amp is None and validation else build()

        def run():
            kdlab.train.fit(model, ds if validation else ds.train, epochs=epochs, lr=1e-3, batch_size=batch_size,
                            device="cpu", progress=progress, config=kdlab.train.TrainConfig(amp=amp))
            return epochs * n
        return run

    contenders = {"conventional": conventional, "bare, default AdamW": bare_loop(None), "bare": bare_loop(True),
                  "fit": fit(False), "fit+bar": fit(True), "fit, no validation": fit(False, validation=False)}
    fit_layout = model_name == "cnn" and kdlab.devices.channels_last_pays(torch.device("cpu"))
    if fit_layout:  # fit trains convolutions in channels_last where that pays; so can a bare loop
        contenders["bare, channels_last"] = bare_loop(True, channels_last=True)
    contenders["bare + validation"] = bare_loop(True, channels_last=fit_layout, validation=True)
    if kdlab.devices.cpu_has_native_bf16():  # opt-in bf16 autocast, where the CPU has it in hardware
        contenders["fit, amp=True"] = fit(False, amp=True)
    return contenders


def main(argv=None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=("mlp", "cnn"), default=["mlp", "cnn"], help="which models")
    p.add_argument("--rounds", type=positive_int, help="rounds per model (default: MLP 15, CNN 7)")
    args = p.parse_args(argv)
    ds = kdlab.data.load("mnist-5k", seed=0)
    if args.quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    # Rounds: enough that the median and the best round settle on this noisy 2-core VM.
    settings = {"mlp": (3, 15), "cnn": (1, 7)} if not args.quick else {"mlp": (1, 1), "cnn": (1, 1)}
    speeds, ratios = [], {}
    for model_name in args.models:
        epochs, rounds = settings[model_name]
        contenders = make_contenders(model_name, ds, epochs)
        for run in contenders.values():  # warm-up: allocator, kernels, first-call costs
            run()
        r = alternate(contenders, args.rounds or rounds)
        label = "MLP 800-800" if model_name == "mlp" else "CNN teacher"
        same_layout = r.get("bare, channels_last", r["bare"])  # the bare loop in fit's memory format
        speeds.append([label, *(f"{median(r[c]):,.0f}" if c in r else "—" for c in (
            "conventional", "bare, default AdamW", "bare", "bare, channels_last", "bare + validation", "fit",
            "fit, no validation", "fit+bar", "fit, amp=True"))])
        for name, a, b in (
                ("fit / bare + validation in fit's layout (the same work: the loop's own overhead)",
                 "fit", r["bare + validation"]),
                ("fit without validation / bare in fit's layout (the same work: the loop's own overhead)",
                 "fit, no validation", same_layout),
                ("fit / bare (fit also validates 400 images an epoch)", "fit", r["bare"]),
                ("fit+bar / bare", "fit+bar", r["bare"]),
                ("fit / conventional", "fit", r["conventional"]),
                ("bare / conventional", "bare", r["conventional"]),
                ("bare default AdamW / conventional", "bare, default AdamW", r["conventional"]),
                ("fit amp=True (bf16) / conventional", "fit, amp=True", r["conventional"])):
            if a in r:
                ratios.setdefault(name, {})[label] = (ratio_ci(r[a], b), ratio_stats(r[a], b), best_ratio(r[a], b))
    labels = [row[0] for row in speeds]
    out = ("### Loop throughput (samples/s, median of rounds)\n\n"
           + table(["model", "conventional", "bare, default AdamW", "bare", "bare, channels_last",
                    "bare + validation", "fit", "fit, no validation", "fit + progress bar", "fit, amp=True (bf16)"],
                   speeds)
           + "\n\n### Ratios: geometric mean of per-round ratios [95% CI]; median ratio (min–max per round); "
             "best rounds\n\n"
           + table(["comparison", *labels],
                   [[name, *("; ".join(cells[label]) if label in cells else "—" for label in labels)]
                    for name, cells in ratios.items()])
           + f"\n\nMachine: {machine()}. mnist-5k train split ({len(ds.train)} images), batch 128, AdamW (lr 1e-3); "
             "fit and bare use the fused AdamW step, the conventional loop and 'bare, default AdamW' torch's default. "
             "fit trains the CNN in channels_last on this machine: "
             f"{kdlab.devices.channels_last_pays(torch.device('cpu'))}; the bare loops marked 'in fit's layout' use "
             "the same memory format. 'fit, amp=True' is the opt-in bf16 autocast, run only on CPUs with native "
             f"bf16 (here: {kdlab.devices.cpu_has_native_bf16()}); every other contender computes in float32.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
