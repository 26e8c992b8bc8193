"""Choosing the device, and the GPU-only speed settings that go with it.

``device="auto"`` picks CUDA, then Apple's MPS, then the CPU. The environment
variable ``KDLAB_DEVICE`` overrides ``"auto"`` (CI sets ``KDLAB_DEVICE=cpu``).
Asking for a device that is not there is an error, never a silent fallback,
because a learner who asked for the GPU wants to know it is not being used.
"""

from __future__ import annotations

import os

import torch

from .errors import DeviceUnavailableError, ParameterTypeError

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
