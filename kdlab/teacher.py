"""A trained teacher's logits, served to an objective one batch at a time.

An objective that learns from a teacher (:class:`kdlab.objectives.Distillation`, say)
holds a :class:`Teacher`. ``fit`` calls :meth:`Teacher.prepare` once, before the first
step; after that :meth:`Teacher.logits` answers for each batch, in one of four ways:

* **given**: logits the caller computed once (``logits=``), looked up by example;
* **cached**: computed once on the training split when inputs are not augmented, ``(N, K)``;
* **cached per augmentation**: computed once on each of the split's ``A`` augmented
  copies, ``(N, A, K)``, when that costs no more teacher passes than training would
  (``A <= epochs``) and fits in 1 GiB;
* **online**: the teacher runs on every (augmented) batch.

All four give the teacher's answer on exactly the images the student sees (tested).
The teacher stays in ``eval()`` mode and runs without gradients; run online, a
convolutional teacher is put in the channels_last layout where that pays, and left so. A cache is kept for
later ``fit`` calls on the same split while the teacher's weights stay the same, so an
objective shared by several seeds computes it once.
"""

from __future__ import annotations

import torch
from torch import nn

from . import devices, inference
from .data import Batch, Split
from .errors import ParameterError, ParameterTypeError

CACHE_LIMIT_BYTES = 2**30  # a per-augmentation cache larger than this runs the teacher online instead


def _fingerprint(model: nn.Module) -> list[float]:
    # One number per tensor: enough to notice that the teacher was trained further.
    with torch.no_grad():
        return [float(p.double().sum()) for p in model.state_dict().values() if p.is_floating_point()]


class Teacher:
    """Serves ``model``'s logits to an objective.

    Args:
        model: the trained teacher.
        logits: optional precomputed logits on the training split: ``(N, K)`` from
            :func:`kdlab.inference.predict_logits`, or ``(N, A, K)`` from
            :func:`kdlab.inference.predict_augmented_logits` when training with ``augment=True``.
            Row ``i`` must belong to training image ``i``.
        cache: ``None`` decides as described in the module docstring; ``True`` always
            caches (per augmentation when training with ``augment=True``); ``False`` runs
            the teacher on every batch.
    """

    def __init__(self, model: nn.Module, *, logits: torch.Tensor | None = None, cache: bool | None = None):
        if not isinstance(model, nn.Module):
            raise ParameterTypeError(f"teacher must be a torch.nn.Module (a trained model), got {type(model).__name__}.")
        if logits is not None and not isinstance(logits, torch.Tensor):
            raise ParameterTypeError(f"logits must be a tensor or None, got {type(logits).__name__}.")
        if cache is not None and not isinstance(cache, bool):
            raise ParameterTypeError(f"cache must be True, False or None, got {cache!r}.")
        self.model = model
        self.given = logits
        self.cache = cache
        self.mode = "not prepared"  # after prepare: "given", "cached", "cached per augmentation" or "online"
        self._table: torch.Tensor | None = None  # (N, K) or (N, A, K)
        self._key: tuple | None = None  # what the table was computed for
        self._last: tuple[Batch | None, torch.Tensor | None] = (None, None)
        self._amp = False
        self._per_augmentation = False
        self._layout = torch.contiguous_format

    def prepare(self, split: Split, *, augment: bool, epochs: int, device: torch.device, amp: bool = False,
                num_classes: int | None = None) -> None:
        """Ready the teacher for training on ``split`` (called by ``fit`` once, before the first step)."""
        self.model.to(device).eval()
        inference.validate_classes(self.model, split, num_classes, device, role="teacher")
        self._amp = amp
        self._last = (None, None)
        n, a = len(split), split.num_augmentations if augment else 1
        self._per_augmentation = a > 1  # a table, given or cached, is then (N, A, K)
        if self.given is not None:
            # (N, K); (N, L, V) for text; (N, A, K) per augmentation.
            expected = (n, *split.y.shape[1:], num_classes) if a == 1 else (n, a, num_classes)
            if num_classes is None:
                expected = expected[:-1] + (self.given.shape[-1],)
            if tuple(self.given.shape) != expected:
                how = "predict_logits(teacher, ds.train)" if a == 1 else "predict_augmented_logits(teacher, ds.train)"
                raise ParameterError(f"teacher logits have shape {tuple(self.given.shape)}; with augment={augment} "
                                     f"and this training split they must be {expected}, from kdlab.inference.{how}.")
            self._table, self.mode = self.given.to(device=device, dtype=torch.float32), "given"
            return
        key = (split.x, augment, str(device), amp, _fingerprint(self.model))
        if self._key is not None and self._key[0] is key[0] and self._key[1:] == key[1:]:
            return  # the cache (or the online choice) from the last call still holds
        fits = n * a * (num_classes or 1) * 4 <= CACHE_LIMIT_BYTES
        use_cache = self.cache if self.cache is not None else (a == 1 or (a <= epochs and fits))
        if not use_cache:
            self._table, self.mode = None, "online"
            if devices.channels_last_for(self.model, device):
                self.model.to(memory_format=torch.channels_last)
                self._layout = torch.channels_last
        elif a == 1:
            self._table, self.mode = inference.predict_logits(self.model, split, device=device, amp=amp), "cached"
        else:
            self._table = inference.predict_augmented_logits(self.model, split, device=device, amp=amp)
            self.mode = "cached per augmentation"
        self._key = key

    def logits(self, batch: Batch) -> torch.Tensor:
        """The teacher's float32 logits ``(B, K)`` on the images of ``batch`` (``(B, L, V)`` on text)."""
        if batch is self._last[0]:  # an objective that asks twice per batch pays once
            return self._last[1]
        if self.mode == "not prepared":
            raise ParameterError("the teacher has not been prepared; fit calls Teacher.prepare before training.")
        if self._table is None:
            with torch.no_grad(), devices.autocast(batch.x.device, self._amp):
                out = self.model(batch.x.contiguous(memory_format=self._layout)).float()
        elif not self._per_augmentation:
            out = self._table[batch.idx]  # (B, K), or (B, L, V) for text
        else:
            out = self._table[batch.idx, batch.aug]  # (B, K): each image's own augmentation
        self._last = (batch, out)
        return out

    def __repr__(self) -> str:
        return f"Teacher({type(self.model).__name__}, mode={self.mode!r})"
