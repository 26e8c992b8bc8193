"""GPU paths: kdlab.train.fit on a CUDA device against a bare loop, and what each fast path buys.

    python benchmarks/gpu_paths.py [--quick] [--device cuda] [--cifar-root DIR]

1. CIFAR-10 ResNet-20 teacher (the kit's CIFAR recipe: SGD+Nesterov, batch 256,
   crop-and-flip on the device). Without a CIFAR-10 download (``--cifar-root``) the
   script writes 50,000 + 10,000 random images in the real cifar-10-python on-disk
   format and loads them through ``kdlab.data.load``: the throughput is that of real
   data (same shapes, same path), the accuracy is meaningless and not reported.
   Contenders, alternating round by round:
     fit            kdlab.train.fit defaults on CUDA: uint8 data on the device, batch
                    augmentation on the device, channels_last, bf16 autocast,
                    cudnn.benchmark, no host sync inside the step;
     fit fp32       the same with TrainConfig(amp=False);
     fit NCHW       the same with TrainConfig(channels_last=False);
     fit compiled   the same with TrainConfig(compile=True) (not in a --quick run on the CPU);
     bare           a hand-written loop with the same fast paths and nothing else.
2. Host syncs: torch.cuda.set_sync_debug_mode counts the synchronising calls in
   one fit epoch; the design allows a constant few per epoch, none per step.
3. mnist-5k (800-800 MLP and the CNN): fit against a bare loop on the GPU, and
   KD with cached teacher logits (objectives.Distillation: losses.kd_loss in plain autograd)
   against plain cross-entropy.

Without CUDA it exits with a message (``--device cpu --quick`` checks that it runs).
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from common import alternate, machine, median, parser, ratio_stats, table  # noqa: E402

import kdlab  # noqa: E402


def synced(device: torch.device, fn):
    """Wrap a contender so its timing covers the GPU work it queued, not only the launches."""
    def run():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        work = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return work
    return run


def bare_loop(model, split, *, device, epochs, batch_size, opt, augment, amp, channels_last):
    """The practical limit: the same data path (uint8 on the device, on-device augmentation,
    channels_last, bf16) with nothing but forward, backward and step."""
    gen = torch.Generator(device=device).manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    n = len(split)

    def run():
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(n, device=device, generator=gen).split(batch_size):
                xb = split.x[idx]
                if augment:
                    xb, _ = split.apply_augmentation(xb, gen)
                xb = split.normalize(xb).contiguous(memory_format=fmt)
                if amp:
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        logits = model(xb)
                else:
                    logits = model(xb)
                loss = F.cross_entropy(logits.float(), split.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return epochs * n
    return run


def cifar_section(args, device) -> tuple[str, dict]:
    quick = args.quick
    if args.cifar_root:
        ds = kdlab.data.load("cifar10", root=args.cifar_root)
        source = f"CIFAR-10 from {args.cifar_root}"
    else:
        from tests.fixtures import write_cifar10

        root = Path(tempfile.mkdtemp(prefix="kdlab-cifar-"))
        per_batch, n_test = (64, 64) if quick else (10_000, 10_000)
        write_cifar10(root, per_batch=per_batch, n_test=n_test)
        ds = kdlab.data.load("cifar10", root=root)
        source = f"random images in the cifar-10-python format ({5 * per_batch:,} train)"
    recipe = kdlab.lab.teacher_recipe("cifar10", smoke=quick)
    epochs, rounds = (1, 1) if quick else (1, 3)
    bs = recipe["batch_size"]
    train = ds.train.to(device)

    def build():
        return kdlab.models.create(recipe["model"], num_classes=10, input_shape=ds.input_shape, seed=0,
                                   **recipe["model_kwargs"]).to(device)

    def fit_contender(**kw):
        model = build()
        config = kdlab.train.TrainConfig(optimizer="sgd", **kw)

        def run():
            kdlab.train.fit(model, train, epochs=epochs, lr=recipe["lr"], batch_size=bs,
                            weight_decay=recipe["weight_decay"], augment=True, device=device, progress=False,
                            config=config)
            return epochs * len(train)
        return run

    gpu = device.type == "cuda"
    bare_model = build().to(memory_format=torch.channels_last if gpu else torch.contiguous_format)
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                               weight_decay=recipe["weight_decay"])
    contenders = {
        "fit": fit_contender(),
        "fit fp32": fit_contender(amp=False),
        "fit NCHW": fit_contender(channels_last=False),
        "fit compiled": fit_contender(compile=True),
        "bare": bare_loop(bare_model, train, device=device, epochs=epochs, batch_size=bs, opt=bare_opt,
                          augment=True, amp=gpu, channels_last=gpu),
    }
    if quick and not gpu:
        # Checking that the script runs needs no compiled ResNet: inductor's C++ build of it took
        # about 30 s of the CPU test suite's 5-minute budget, for a row that means nothing on a CPU.
        del contenders["fit compiled"]
    contenders = {k: synced(device, v) for k, v in contenders.items()}
    for run in contenders.values():  # warm-up: cuDNN autotuning, allocator, lazy init
        run()
    rates = alternate(contenders, rounds)
    rows = [[name, f"{median(r):,.0f}", f"{len(train) / median(r):.2f}",
             f"{recipe['epochs'] * len(train) / median(r):.0f}", ratio_stats(r, rates["bare"])]
            for name, r in rates.items()]
    text = "\n".join([
        f"### CIFAR-10 ResNet-{recipe['model_kwargs'].get('depth', 20)} teacher on {device}",
        "", f"Data: {source}; batch {bs}, SGD+Nesterov, crop+flip on the device; {rounds} rounds of "
        f"{epochs} epoch(s) each, alternating, after one warm-up round.", "",
        table(["contender", "samples/s", "s/epoch", f"s for the {recipe['epochs']}-epoch recipe", "÷ bare"], rows)])
    return text, {"fit_samples_per_s": median(rates["fit"]), "recipe_epochs": recipe["epochs"]}


def sync_section(device) -> str:
    """Count synchronising CUDA calls in whole fit() calls of different lengths
    (set_sync_debug_mode warns on each); the differences give the syncs per epoch and
    per step."""
    if device.type != "cuda":
        return "### Host syncs\n\nSkipped: needs CUDA."
    ds = kdlab.data.load("mnist-5k", seed=0)
    train = ds.train.to(device)
    model = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=0)
    kdlab.train.fit(model, train, epochs=1, augment=True, device=device, progress=False)  # warm-up

    def count(epochs, batch_size):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                kdlab.train.fit(model, train, epochs=epochs, batch_size=batch_size, augment=True, device=device,
                                progress=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message).lower() for w in caught)

    rows, counts = [], {}
    for epochs, bs in [(1, 128), (1, 64), (2, 128)]:
        steps = epochs * -(-len(train) // bs)
        counts[(epochs, bs)] = (count(epochs, bs), steps)
        rows.append([str(epochs), str(bs), str(steps), str(counts[(epochs, bs)][0])])
    (c1, s1), (c_small, s_small), (c2, _) = counts[(1, 128)], counts[(1, 64)], counts[(2, 128)]
    per_step = (c_small - c1) / (s_small - s1)
    per_epoch = c2 - c1
    return "\n".join(["### Host syncs in fit (CNN, mnist-5k train split, augment=True, no validation)", "",
                      "Counted with `torch.cuda.set_sync_debug_mode('warn')` over whole `fit()` calls (setup "
                      "included); halving the batch size doubles the steps, a second epoch adds one epoch.", "",
                      table(["epochs", "batch", "steps", "synchronising calls"], rows), "",
                      f"Per step: {per_step:.2f} syncs; per epoch: {per_epoch} syncs (the once-per-epoch read of "
                      "the loss/accuracy rows and the non-finite check)."])


def limits_section(device) -> str:
    """Is the ResNet-20 step bound by compute or by launching kernels? Time one bare step at
    growing batch sizes, bf16 and fp32: a launch-bound step costs the same at any batch."""
    if device.type != "cuda":
        return "### What limits the ResNet-20 step\n\nSkipped: needs CUDA."
    import time as _time

    rows = []
    for amp in (True, False):
        for bs in (256, 1024, 4096):
            model = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), seed=0, depth=20)
            model = model.to(device, memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            x = torch.randn(bs, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (bs,), device=device)

            def step():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            for _ in range(5):
                step()
            torch.cuda.synchronize()
            n = 20
            t0 = _time.perf_counter()
            for _ in range(n):
                step()
            torch.cuda.synchronize()
            ms = (_time.perf_counter() - t0) / n * 1000
            rows.append(["bf16" if amp else "fp32", str(bs), f"{ms:.2f}", f"{bs / ms * 1000:,.0f}"])
    return "\n".join(["### What limits the ResNet-20 step (bare step, channels_last, random data)", "",
                      "If the time per step hardly grows with the batch, the step is bound by launching "
                      "kernels from Python, not by the GPU's arithmetic.", "",
                      table(["precision", "batch", "ms/step", "samples/s"], rows)])


def mnist_section(args, device) -> str:
    ds = kdlab.data.load("mnist-5k", seed=0)
    if args.quick:
        ds = ds.with_train(ds.train.subset(torch.arange(256)))
    train = ds.train.to(device)
    epochs, rounds = (1, 1) if args.quick else (3, 5)
    gpu = device.type == "cuda"
    rows = []
    for name in ("mlp", "cnn"):
        kwargs = {"hidden": (800, 800)} if name == "mlp" else {}
        build = lambda: kdlab.models.create(name, num_classes=10, input_shape=ds.input_shape, seed=0,
                                            **kwargs).to(device)
        fit_model = build()
        teacher = kdlab.models.create("cnn", num_classes=10, input_shape=ds.input_shape, seed=1).to(device).eval()
        # Computed once, outside the timed epochs, and served by the objective's Teacher.
        kd = kdlab.objectives.Distillation(kdlab.teacher.Teacher(
            teacher, logits=kdlab.inference.predict_logits(teacher, train, device=device)))
        kd_model = build()

        def fit_run(model=fit_model, **kw):
            def run():
                kdlab.train.fit(model, train, epochs=epochs, lr=1e-3, batch_size=128, device=device,
                                progress=False, **kw)
                return epochs * len(train)
            return run

        cl = gpu and name == "cnn"
        bare_model = build().to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        contenders = {
            "fit": fit_run(),
            "fit KD cached": fit_run(kd_model, objective=kd),
            "bare": bare_loop(bare_model, train, device=device, epochs=epochs, batch_size=128,
                              opt=torch.optim.AdamW(bare_model.parameters(), lr=1e-3), augment=False, amp=gpu,
                              channels_last=cl),
        }
        contenders = {k: synced(device, v) for k, v in contenders.items()}
        for run in contenders.values():
            run()
        rates = alternate(contenders, rounds)
        rows.append([name, f"{median(rates['bare']):,.0f}", f"{median(rates['fit']):,.0f}",
                     ratio_stats(rates["fit"], rates["bare"]), ratio_stats(rates["fit"], rates["fit KD cached"])])
    return "\n".join([f"### mnist-5k on {device}", "",
                      f"Batch 128, AdamW; {rounds} rounds of {epochs} epochs, alternating, after a warm-up round. "
                      "fit includes its per-epoch validation.", "",
                      table(["model", "bare samples/s", "fit samples/s", "fit ÷ bare", "KD-cached epoch time ÷ CE"],
                            rows)])


def main(argv=None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick: checks the script runs)")
    p.add_argument("--cifar-root", default="", help="a folder holding cifar-10-batches-py; default: random images")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        text = "## GPU paths\n\nSkipped: CUDA is not available on this machine."
        print(text)
        return text
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    parts = [f"## GPU paths ({name})", "", f"Machine: {machine()}; device: {name}", ""]
    cifar, _ = cifar_section(args, device)
    parts += [cifar, "", limits_section(device), "", sync_section(device), "", mnist_section(args, device)]
    text = "\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    main()
