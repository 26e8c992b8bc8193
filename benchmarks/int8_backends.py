"""Int8 on the CPU: torch.ao's deprecated dynamic quantization against torchao's quantize_.

    python benchmarks/int8_backends.py [--quick]

Notebook 09 quantizes the 800-800 MLP with kdlab.compress.quantize_int8, which calls
torch.ao.quantization.quantize_dynamic. torch 2.14 warns that this API is deprecated in favour
of the separate torchao package. This script answers whether switching pays on the CPU:
the MLP is trained briefly on mnist-5k, then float32, torch.ao dynamic int8 and torchao's int8
configs (dynamic activation + int8 weight, and int8 weight-only; whichever the installed
torchao offers) are compared on

* test accuracy on ds.test (and agreement of the predicted classes with float32),
* latency of one batch-256 forward pass on the CPU, eager mode, contenders alternating
  round by round (speed-up = ratio of medians, range of per-round ratios in brackets),
* size of the serialized state_dict (torch.save into memory).

torchao is optional: without it the torchao rows are left out and the script says so
(install it without touching torch: pip install torchao --no-deps).
"""

from __future__ import annotations

import copy
import importlib.metadata
import io
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, best_ratio, machine, median, parser, ratio_stats, table  # noqa: E402

import kdlab  # noqa: E402

BATCH = 256


def _warning_lines(caught) -> list[str]:
    seen = []
    for w in caught:
        line = f"{w.category.__name__}: {str(w.message).strip()}"
        if line not in seen:
            seen.append(line)
    return seen


def train(ds, epochs: int, n: int | None = None) -> tuple[torch.nn.Module, str]:
    """The 800-800 MLP, trained briefly with kdlab.train.fit (plain loop if fit's signature moved);
    on the first n training images only if n is given (--quick)."""
    model = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
    data = ds if n is None else ds.train.subset(torch.arange(n))
    try:
        kdlab.train.fit(model, data, epochs=epochs, progress=False, device="cpu")
        how = f"kdlab.train.fit, {epochs} epochs" + ("" if n is None else f" on {n} images")
    except Exception as exc:  # the fit API is being rewritten; fall back to a bare loop
        model = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(800, 800), seed=0)
        x, y = ds.train.inputs()[:n], ds.train.y[:n]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=g).split(128):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        how = f"bare AdamW loop, {epochs} epochs" + ("" if n is None else f" on {n} images")
        print(f"note: kdlab.train.fit failed ({type(exc).__name__}: {exc}); trained with a bare AdamW loop instead.")
    return model.cpu().eval(), how


def torchao_variants(float_model, sample) -> tuple[dict, str, list[str]]:
    """torchao-quantized copies of float_model: {name: model}, version text, warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import torchao
            from torchao import quantization as tq
        except Exception as exc:
            return {}, f"not usable ({type(exc).__name__}: {exc})", []
        version = getattr(torchao, "__version__", None) or importlib.metadata.version("torchao")
        configs = {}
        # set_inductor_config=False: do not change torch._inductor's global settings (eager mode here).
        if hasattr(tq, "Int8DynamicActivationInt8WeightConfig"):
            configs["torchao int8 dyn-act + int8 weight"] = lambda: tq.Int8DynamicActivationInt8WeightConfig(
                set_inductor_config=False)
        if hasattr(tq, "Int8WeightOnlyConfig"):
            configs["torchao int8 weight-only"] = lambda: tq.Int8WeightOnlyConfig(set_inductor_config=False)
        models = {}
        for name, make in configs.items():
            m = copy.deepcopy(float_model).eval()
            try:
                tq.quantize_(m, make())
                with torch.inference_mode():
                    m(sample)  # fails here, not in the timing loop, if the CPU path is missing
                models[name] = m
            except Exception as exc:
                models[name] = f"failed: {type(exc).__name__}: {exc}"
    return models, version, _warning_lines(caught)


def int8_isa() -> str:
    """The CPU's int8-relevant instruction sets: torchao's CPU int8 matmul (torch._int_mm) is
    fast with AVX512-VNNI or AMX; fbgemm (torch.ao) has AVX2 kernels too."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8") if f in flags]
    return ", ".join(found) or "none of avx2/avx512/vnni/amx"


def accuracy(model, x, y) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        pred = torch.cat([model(xb).argmax(1) for xb in x.split(BATCH)])
    return 100.0 * (pred == y).float().mean().item(), pred


def state_bytes(model) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def main(argv=None) -> str:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    quick = args.quick
    ds = kdlab.data.load("mnist-5k", seed=0)
    model, how = train(ds, 1, 1024) if quick else train(ds, 3)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ao_model = kdlab.compress.quantize_int8(model)
    ao_warnings = _warning_lines(caught)

    contenders = {"float32": model, "torch.ao dynamic int8 (quantize_int8)": ao_model}
    tao, tao_version, tao_warnings = torchao_variants(model, ds.test.inputs()[:2])
    failed = {name: m for name, m in tao.items() if isinstance(m, str)}
    contenders.update({name: m for name, m in tao.items() if not isinstance(m, str)})

    x_test, y_test = ds.test.inputs(), ds.test.y
    if quick:  # checks that the script runs, not accuracy
        x_test, y_test = x_test[:BATCH], y_test[:BATCH]
    acc, preds = {}, {}
    for name, m in contenders.items():
        acc[name], preds[name] = accuracy(m, x_test, y_test)

    xb = x_test[:BATCH].contiguous()
    rounds = 1 if quick else 11
    reps = {}

    def timed(m, name):
        def run():
            with torch.inference_mode():
                for _ in range(reps[name]):
                    m(xb)
            return reps[name] * BATCH
        return run
    runs = {name: timed(m, name) for name, m in contenders.items()}
    for name, run in runs.items():  # warm-up, then enough passes for ~0.4 s per contender and round
        reps[name] = 1
        run()
        if quick:
            continue
        reps[name] = 2
        t0 = time.perf_counter()
        run()
        seconds = (time.perf_counter() - t0) / 2
        reps[name] = max(1, min(60, round(0.4 / seconds)))
    rates = alternate(runs, rounds)

    base, ao = rates["float32"], rates["torch.ao dynamic int8 (quantize_int8)"]
    rows = []
    for name, m in contenders.items():
        ms = 1000 * BATCH / median(rates[name])
        agree = 100.0 * (preds[name] == preds["float32"]).float().mean().item()
        rows.append([name, f"{acc[name]:.2f}", f"{acc[name] - acc['float32']:+.2f}", f"{agree:.1f}",
                     f"{ms:.3f}", ratio_stats(rates[name], base), ratio_stats(rates[name], ao),
                     best_ratio(rates[name], ao), f"{state_bytes(m) / 1e6:.2f}"])
    for name, why in failed.items():
        rows.append([name, why, "", "", "", "", "", "", ""])

    out = (f"### Int8 backends on the CPU: MLP 800-800 on mnist-5k ({how}), eager mode\n\n"
           + table(["variant", "test acc %", "Δ acc pp vs fp32", "same class as fp32 %",
                    f"ms / batch {BATCH} (median)", "speed-up vs fp32", "speed-up vs torch.ao",
                    "best rounds vs torch.ao", "state_dict MB"], rows) + "\n")
    if not tao:
        out += (f"\ntorchao: {tao_version or 'not installed'}; only torch.ao was measured "
                "(pip install torchao --no-deps to compare).\n")
    else:
        out += f"\ntorchao {tao_version}.\n"
    if ao_warnings:
        out += "\nWarnings from quantize_int8 (torch.ao):\n" + "".join(f"- {w}\n" for w in ao_warnings)
    if tao_warnings:
        out += "\nWarnings from torchao import / quantize_:\n" + "".join(f"- {w}\n" for w in tao_warnings)
    out += (f"\nLatency: one batch of {BATCH} test images, forward passes per round "
            + ", ".join(f"{n}: {r}" for n, r in reps.items())
            + f"; {rounds} rounds alternating; speed-up = ratio of median rates (per-round range); "
            "best rounds = ratio of each contender's fastest round.\n")
    out += (f"\nMachine: {machine()}, quantized engine {torch.backends.quantized.engine}, "
            f"int8 ISA: {int8_isa()}.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
