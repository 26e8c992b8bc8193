"""The standard torchvision datasets, read from their on-disk files as uint8 arrays.

kdlab reads the files itself, in the formats torchvision stores them, and uses
torchvision only to download them (and only when ``download=True``):

* MNIST          ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
* Fashion-MNIST  ``<root>/FashionMNIST/raw/`` (same idx files)
* CIFAR-10       ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
* CIFAR-100      ``<root>/cifar-100-python/{train,test,meta}``

Reading them directly (rather than through torchvision's classes, which verify
md5 sums of the archives) lets the tests exercise this exact code on small
fixture files written in the real formats.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from .errors import DataCorruptError, DatasetNotFoundError, ParameterError

STANDARD = ("mnist", "fashion-mnist", "cifar10", "cifar100")
OFFLINE = ("digits", "mnist-5k")

_IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                    "Bag", "Ankle boot"]


def _missing(name: str, root: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {name!r} was not found under root {str(root)!r} ({what} is missing) and download=False. "
        f"Get it with kdlab.data.load({name!r}, download=True), which downloads it into {str(root)!r}; "
        f"or use one of the offline datasets that need no download: {', '.join(map(repr, OFFLINE))}.")


def _corrupt(name: str, root: Path, problem: str) -> DataCorruptError:
    return DataCorruptError(
        f"dataset {name!r} under {str(root)!r} is corrupted: {problem}. Delete its folder and download it "
        f"again with kdlab.data.load({name!r}, download=True).")


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): a big-endian header of magic
    ``0x0000 08 <ndim>`` (uint8 data) and ``ndim`` int32 sizes, then the bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path.name}: not a uint8 idx file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path.name}: header truncated")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(f"{path.name}: holds {len(raw) - header} data bytes, the header promises {expected} "
                         "(truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable for torch


def _load_idx_dataset(name: str, root: Path) -> dict:
    folder = root / _IDX_FOLDERS[name] / "raw"
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _find(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find(folder, f"{prefix}-labels-idx1-ubyte")
        if images is None or labels is None:
            raise _missing(name, root, f"{folder}/{prefix}-*-ubyte")
        try:
            x, y = read_idx(images), read_idx(labels)
        except (ValueError, OSError, EOFError) as err:  # gzip raises OSError/EOFError on bad data
            raise _corrupt(name, root, str(err)) from err
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise _corrupt(name, root, f"{prefix} images have shape {x.shape} but labels {y.shape}")
        arrays[f"x_{split}"] = np.ascontiguousarray(x[:, None])  # (N, 1, 28, 28)
        arrays[f"y_{split}"] = y.astype(np.int64)
    arrays["class_names"] = [str(i) for i in range(10)] if name == "mnist" else list(_FASHION_CLASSES)
    return arrays


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="bytes")


def _load_cifar(name: str, root: Path) -> dict:
    folder = root / _CIFAR_FOLDERS[name]
    if name == "cifar10":
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta_file, names_key, label_key = "batches.meta", b"label_names", b"labels"
    else:
        files = {"train": ["train"], "test": ["test"]}
        meta_file, names_key, label_key = "meta", b"fine_label_names", b"fine_labels"
    for fname in files["train"] + files["test"] + [meta_file]:
        if not (folder / fname).exists():
            raise _missing(name, root, str(folder / fname))
    try:
        arrays = {}
        for split, fnames in files.items():
            xs, ys = [], []
            for fname in fnames:
                batch = _unpickle(folder / fname)
                data = np.asarray(batch[b"data"], dtype=np.uint8)
                xs.append(data.reshape(-1, 3, 32, 32))  # rows are channel-major: R plane, G plane, B plane
                ys.append(np.asarray(batch[label_key], dtype=np.int64))
            arrays[f"x_{split}"] = np.ascontiguousarray(np.concatenate(xs))
            arrays[f"y_{split}"] = np.concatenate(ys)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(folder / meta_file)[names_key]]
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise _corrupt(name, root, f"{type(err).__name__}: {err}") from err
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise _corrupt(name, root, f"{split} has {len(x)} images but {len(y)} labels")
    arrays["class_names"] = names
    return arrays


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd  # imported here: only the download path needs it

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10,
           "cifar100": tvd.CIFAR100}[name]
    for train in (True, False):
        cls(root=str(root), train=train, download=True)


def load_arrays(name: str, root: str | Path, download: bool = False) -> dict:
    """Return ``{"x_train", "y_train", "x_test", "y_test", "class_names"}``: images as
    uint8 ``(N, C, H, W)`` arrays, labels as int64. Touches the network only when
    ``download=True`` and the files are missing."""
    if name not in STANDARD:
        raise ParameterError(f"name={name!r} is not a dataset kdlab knows; accepted: "
                             f"{', '.join(map(repr, OFFLINE + STANDARD))}.")
    root = Path(root)
    loader = _load_idx_dataset if name in _IDX_FOLDERS else _load_cifar
    try:
        arrays = loader(name, root)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(name, root)
        arrays = loader(name, root)
    k = len(arrays["class_names"])
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() >= k):
            raise _corrupt(name, root, f"{split} labels range over [{y.min()}, {y.max()}] but there are {k} classes")
    return arrays
