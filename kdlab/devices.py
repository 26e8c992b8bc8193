"""Choosing the device, and the speed settings that go with it (:func:`tuned`).

``device="auto"`` picks CUDA, then Apple's MPS, then the CPU. The environment
variable ``KDLAB_DEVICE`` overrides ``"auto"`` (CI sets ``KDLAB_DEVICE=cpu``).
Asking for a device that is not there is an error, never a silent fallback,
because a learner who asked for the GPU wants to know it is not being used.
"""

from __future__ import annotations

import contextlib
import os
import platform
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

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
    ``device``: on CUDA (cuDNN's NHWC kernels), and on x86-64 CPUs with oneDNN, whose
    convolutions work in NHWC (measured: docs/BENCHMARKS.md, section 1; Arm CPUs unmeasured)."""
    if device.type == "cuda":
        return True
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and platform.machine().lower() in ("x86_64", "amd64"))


def channels_last_for(model: nn.Module, device: torch.device) -> bool:
    """Whether to run ``model`` in channels_last on ``device``: a convolutional model where that
    pays (:func:`channels_last_pays`), unless oneDNN's NHWC kernels would break on it.

    oneDNN's 1x1 strided convolution computes wrong weight gradients, hangs or crashes in NHWC
    when the input has fewer channels than its block (8 with AVX2, 16 with AVX-512): oneDNN
    issue #6035. A ResNet narrower than 16 has such a shortcut, so it stays in NCHW on the CPU.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs or not channels_last_pays(device):
        return False
    return device.type != "cpu" or not any(
        c.kernel_size == (1, 1) and c.stride != (1, 1) and c.in_channels < 16 for c in convs)


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


def resolve_amp(amp: bool | None, device: torch.device) -> bool:
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

    Why: late in training some gradients and Adam moments underflow into the denormal
    range, where CPU arithmetic is microcoded and many times slower, and long CPU runs
    slowed down 2x and more (docs/BENCHMARKS.md, section 1). Flushing changes values by
    less than 1.2e-38; GPUs flush by default. ``KDLAB_KEEP_DENORMALS=1`` opts out.
    """
    if not enabled or os.environ.get("KDLAB_KEEP_DENORMALS", "") not in ("", "0"):
        yield
        return
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@dataclass
class Tuning:
    """The speed settings ``fit`` trains with on one device (see :func:`tuned`)."""

    device: torch.device
    amp: bool  # bf16 autocast around the forward pass
    channels_last: bool  # model and inputs in the NHWC memory format
    compiled: bool
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, or its torch.compile'd version

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self):
        """A fresh autocast context for one forward pass (a no-op context without amp)."""
        return autocast(self.device, self.amp)


@contextlib.contextmanager
def tuned(model: nn.Module, device: torch.device, *, amp: bool | None = None, channels_last: bool | None = None,
          compile: bool = False) -> Iterator[Tuning]:
    """Every device-specific speed setting for training ``model`` on ``device``, undone after the block:

    * ``amp``: bf16 autocast (``None``: on CUDA only; :func:`resolve_amp`);
    * ``channels_last``: the NHWC layout for convolutional models (``None``: where it pays and
      is safe, :func:`channels_last_for`); the model is left in it, as inference restores layouts itself;
    * ``compile``: ``torch.compile`` the forward pass, falling back to eager if that fails;
    * ``cudnn.benchmark`` on CUDA (fixed input shapes: cuDNN picks the fastest kernels);
    * denormals flushed to zero on the CPU (:func:`flush_denormals`).
    """
    use_amp = resolve_amp(amp, device)
    if channels_last is None:
        channels_last = channels_last_for(model, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    forward = compiled(model) if compile else model
    cudnn_before = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        with flush_denormals(device.type == "cpu"):
            yield Tuning(device, use_amp, bool(channels_last), bool(compile), forward)
    finally:
        torch.backends.cudnn.benchmark = cudnn_before


def compiled(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)``, falling back to eager with a warning if compiling fails, at
    wrap time or at the first call (where most compile errors surface)."""
    try:
        fast = torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any compile failure means: run eager
        warnings.warn(f"torch.compile failed ({err!r}); training in eager mode.", stacklevel=3)
        return model
    state = {"forward": fast, "checked": False}

    def forward(x: torch.Tensor) -> torch.Tensor:
        if state["checked"]:
            return state["forward"](x)
        try:
            out = state["forward"](x)
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"torch.compile failed at the first step ({type(err).__name__}: {err}); "
                          "training in eager mode.", stacklevel=2)
            state["forward"] = model
            out = model(x)
        state["checked"] = True
        return out

    return forward
