"""Running a trained model over a split: logits in eval mode, without gradients.

``predict_logits(model, split)`` gives ``(N, K)`` logits; ``predict_augmented_logits``
gives ``(N, A, K)``, the logits of every augmented copy of every image, which lets a
distillation objective look a teacher's answer up instead of running the teacher on
each augmented batch (:mod:`kdlab.teacher`). Why the batch size and memory format
are chosen as they are: docs/BENCHMARKS.md, section 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from . import devices, validate
from .data import Split
from .errors import IncompatibleModelError


def eval_batch_size(device: torch.device) -> int:
    """Inference batch size when none is given: 1,024 on a GPU; 256 on the CPU, where
    larger batches of images no longer fit the caches."""
    return 256 if device.type == "cpu" else 1024


@contextlib.contextmanager
def memory_format(model: nn.Module, channels_last: bool) -> Iterator[None]:
    """``model`` in the channels_last memory format inside the block, and as it was after it,
    so that evaluating a model never changes its layout behind the caller's back."""
    if not channels_last:
        yield
        return
    before = [p.stride() for p in model.parameters() if p.dim() == 4]
    model.to(memory_format=torch.channels_last)
    changed = before != [p.stride() for p in model.parameters() if p.dim() == 4]
    try:
        yield
    finally:
        if changed:
            model.to(memory_format=torch.contiguous_format)


def output_classes(model: nn.Module, split: Split, device: torch.device, role: str = "model") -> int:
    """Run two images of ``split`` through ``model`` on ``device`` (only those two are moved) and
    return its number of outputs, turning shape errors into a message that names the model
    and the split's input shape."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(split.inputs(torch.arange(min(2, len(split)), device=split.device)).to(device))
    except RuntimeError as err:
        raise IncompatibleModelError(
            f"{role} {type(model).__name__} cannot take inputs of shape {tuple(split.x.shape[1:])}: {err}. "
            "Build it with input_shape=ds.input_shape.") from err
    finally:
        model.train(was_training)
    if out.dim() < 2:
        raise IncompatibleModelError(f"{role} {type(model).__name__} returns shape {tuple(out.shape)}; "
                                     "expected logits of shape (batch, num_classes), or (batch, length, vocabulary) "
                                     "for text.")
    return int(out.shape[-1])


def validate_classes(model: nn.Module, split: Split, num_classes: int | None, device: torch.device,
                  role: str = "model") -> int:
    """The model's number of outputs, checked against ``num_classes`` (when known) and
    against the split's largest label."""
    k = output_classes(model, split, device, role)
    if num_classes is not None and k != num_classes:
        raise IncompatibleModelError(f"{role} {type(model).__name__} outputs {k} logits but the data has "
                                     f"{num_classes} classes; build it with num_classes={num_classes}.")
    if len(split) and int(split.y.max()) >= k:
        raise IncompatibleModelError(f"{role} {type(model).__name__} outputs {k} logits but split "
                                     f"{split.name!r} has label {int(split.y.max())}; build it with "
                                     f"num_classes={int(split.y.max()) + 1} or more.")
    return k


def predict_logits(model: nn.Module, split: Split, *, batch_size: int | None = None,
                   device: torch.device | None = None, amp: bool = False) -> torch.Tensor:
    """Float32 logits ``(N, K)`` of ``model`` on ``split`` (eval mode, no grad), on ``device``;
    ``(N, L, V)`` for a language model on a text split.

    ``batch_size=None`` picks :func:`eval_batch_size`. A convolutional model runs in
    channels_last where that pays (:func:`kdlab.devices.channels_last_for`), and is
    left in the memory format it came in."""
    if not isinstance(model, nn.Module):
        raise validate.ParameterTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(split, Split):
        raise validate.ParameterTypeError(f"split must be a kdlab Split (such as ds.test), got {type(split).__name__}.")
    device = device or next(model.parameters()).device
    batch_size = eval_batch_size(device) if batch_size is None else validate.integer("batch_size", batch_size, low=1)
    split = split.to(device)
    if len(split) == 0:
        return torch.empty(0, 0, device=device)
    use_cl = devices.channels_last_for(model, device)
    layout = torch.channels_last if use_cl else torch.contiguous_format
    was_training = model.training
    model.eval()
    out = []
    try:
        # Converted outside inference_mode: weights made inside it could not be trained afterwards.
        with memory_format(model, use_cl), torch.inference_mode(), devices.autocast(device, amp):
            for batch in split.batches(batch_size, memory_format=layout):
                out.append(model(batch.x).float())  # (b, K) or (b, L, V)
    finally:
        model.train(was_training)
    logits = torch.cat(out)
    if logits.dim() < 2:
        raise IncompatibleModelError(f"model {type(model).__name__} returns shape {tuple(logits.shape)}; "
                                     "expected logits of shape (batch, num_classes).")
    if int(split.y.max()) >= logits.shape[-1]:
        raise IncompatibleModelError(f"model {type(model).__name__} outputs {logits.shape[-1]} logits but split "
                                     f"{split.name!r} has label {int(split.y.max())}; build the model with "
                                     "num_classes=ds.num_classes.")
    return logits


def predict_augmented_logits(model: nn.Module, split: Split, *, batch_size: int | None = None,
                             device: torch.device | None = None, amp: bool = False) -> torch.Tensor:
    """Float32 logits ``(N, A, K)`` of ``model`` on every augmented copy of every image of
    ``split`` (``A = split.num_augmentations``): entry ``[i, a]`` is what the model says
    about image ``i`` under augmentation ``a`` (see :meth:`kdlab.data.Split.apply_augmentation`)."""
    device = device or next(model.parameters()).device
    split = split.to(device)
    out = []
    for a in range(split.num_augmentations):
        which = torch.full((len(split),), a, dtype=torch.long, device=device)
        shifted, _ = split.apply_augmentation(split.x, aug=which)
        out.append(predict_logits(model, Split(shifted, split.y, split.mean, split.std, name=split.name),
                                  batch_size=batch_size, device=device, amp=amp))
    return torch.stack(out, dim=1)
