"""Choosing the device, and the GPU-only speed settings that go with it.

``device="auto"`` picks CUDA, then Apple's MPS, then the CPU. The environment
variable ``KDLAB_DEVICE`` overrides ``"auto"`` (CI sets ``KDLAB_DEVICE=cpu``).
Asking for a device that is not there is an error, never a silent fallback,
because a learner who asked for the GPU wants to know it is not being used.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import torch

from .errors import DeviceUnavailableError, ParameterError, ParameterTypeError

CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a
    ``torch.device`` into a ``torch.device`` that exists on this machine."""
    if device is None:
        device = "auto"
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ParameterTypeError(
            f"device must be a string such as {', '.join(map(repr, CHOICES))}, got {device!r}.")
    requested = device
    if device == "auto":
        device = os.environ.get("KDLAB_DEVICE", "").strip() or "auto"
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = device.split(":", 1)[0]
    source = f" (from KDLAB_DEVICE={device!r})" if requested == "auto" else ""
    if kind not in CHOICES[1:]:
        raise DeviceUnavailableError(
            f"device={device!r}{source} is not recognised; accepted: {', '.join(map(repr, CHOICES))} "
            "or 'cuda:N'.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device={device!r}{source} was requested but CUDA is not available on this machine "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
            "Use device='auto' or device='cpu'.")
    if kind == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            f"device={device!r}{source} was requested but Apple MPS is not available here. "
            "Use device='auto' or device='cpu'.")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise DeviceUnavailableError(f"device={device!r}{source} is not a valid torch device: {err}") from err


def describe(device: torch.device) -> str:
    """A human-readable name for reports: ``'cpu (2 threads)'`` or the GPU's name."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def channels_last_pays(device: torch.device) -> bool:
    """Whether convolutional models run faster in the channels_last (NHWC) memory format on
    ``device``: on CUDA (cuDNN's NHWC kernels), and on x86-64 CPUs with oneDNN (mkldnn),
    whose convolutions work in NHWC and reorder an NCHW model's tensors on every call.

    Measured on the reference 2-core Xeon (docs/BENCHMARKS.md, section 1): training epochs
    of the kit's CNN and of ResNet-20 on 32x32 images ran 1.25-1.3x faster, and the
    teacher's logits on 3,600 images 1.5x faster. Only tiny convolutions (the 8x8 smoke-mode
    CNN) ran slower, 0.86x, in runs of a second. Other CPUs (Arm) keep NCHW: unmeasured.
    """
    if device.type == "cuda":
        return True
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and platform.machine().lower() in ("x86_64", "amd64"))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products in hardware (Intel AMX or the
    AVX512-BF16 instructions, read from ``/proc/cpuinfo``; False where that cannot be
    read). Elsewhere torch emulates bf16 on the CPU, which is slower than float32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast(device: torch.device, enabled: bool):
    """The bf16 autocast context for ``device`` (a no-op context when not ``enabled``)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def check_amp(amp: bool | None, device: torch.device) -> bool:
    """Resolve fit's ``amp``: ``None`` means bf16 autocast on CUDA only. ``True`` is
    accepted on CUDA and on CPUs with native bf16 (:func:`cpu_has_native_bf16`); on
    other devices it raises, because emulated bf16 would be slower than float32."""
    if amp is None:
        return device.type == "cuda"
    if not isinstance(amp, bool):
        raise ParameterTypeError(f"amp must be True, False or None, got {amp!r}.")
    if amp and device.type == "cpu" and not cpu_has_native_bf16():
        raise ParameterError("amp=True on the CPU needs native bf16 arithmetic (Intel AMX or AVX512-BF16), "
                             "which this CPU lacks: torch would emulate it, slower than float32. "
                             "Use amp=None (float32 on the CPU).")
    if amp and device.type not in ("cpu", "cuda"):
        raise ParameterError(f"amp=True is supported on CUDA and on CPUs with native bf16; device is "
                             f"{device.type!r}. Use amp=None.")
    return amp


def denormals_flushed() -> bool:
    """Whether the CPU currently flushes denormal floats to zero (``torch.set_flush_denormal``):
    a denormal times one stays a denormal unless it is flushed."""
    return bool(torch.tensor(1e-39, dtype=torch.float32).mul(1.0).item() == 0.0)


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormal floats (magnitude below 1.2e-38) to zero on the CPU inside the block,
    and restore the previous setting after it.

    Why: late in training, when the loss is near zero, some gradients, Adam moments and
    activations underflow into the denormal range, and CPU arithmetic on denormals is
    microcoded: a matrix product of denormals measured 24x slower than of normal floats
    on the reference CPU, and an 800-800 MLP trained on by ``fit`` call after call slowed
    down 2x (2 threads, 70 epochs) to 4.7x (1 thread, 90 epochs); docs/BENCHMARKS.md,
    section 1. The worker threads only get the setting if it is made before they start,
    which is why importing kdlab calls :func:`flush_denormals_in_workers`; this context
    covers the calling thread. Flushing them changes values by less than
    1.2e-38, far below float32 rounding of anything that matters; GPUs and TensorFlow's
    CPU kernels flush by default. No effect on CPUs without the SSE3 DAZ flag.
    """
    if not enabled:
        yield
        return
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def flush_denormals_in_workers() -> bool:
    """Make the CPU's worker threads flush denormals to zero, leaving this thread as it was
    (kdlab calls this on import). Returns whether it could.

    Worker threads copy the setting of the thread that starts them, when they start: so
    this turns flushing on, starts the worker pools with two small parallel operations (an
    elementwise one and a matrix product), and turns it back off here, so that Python's
    own float arithmetic keeps IEEE subnormals. It has no effect on pools that already
    run (torch work done before ``import kdlab``), and none if ``KDLAB_KEEP_DENORMALS`` is
    set to anything but ``""`` or ``"0"``. ``fit`` also flushes in the calling thread while
    it trains (:func:`flush_denormals`)."""
    if os.environ.get("KDLAB_KEEP_DENORMALS", "") not in ("", "0"):
        return False
    with flush_denormals():
        x = torch.ones(256, 256)
        (x * 2.0).sum()  # the intra-op pool (elementwise kernels)
        (torch.ones(1 << 20) * 2.0).sum()
        x @ x  # the BLAS pool (matrix products)
        return denormals_flushed()  # False on CPUs that cannot flush
