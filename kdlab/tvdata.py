"""The standard torchvision datasets, read from their on-disk files as uint8 arrays.

``load_arrays(name, root)`` returns the train and test images of MNIST,
Fashion-MNIST, CIFAR-10 or CIFAR-100 as uint8 ``(N, C, H, W)`` arrays, their labels
as int64 arrays and the class names. It never touches the network unless
``download=True`` *and* the files are missing: kdlab reads the files itself, in the
formats and folders torchvision stores them in, and uses torchvision only to
download them:

* MNIST          ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
* Fashion-MNIST  ``<root>/FashionMNIST/raw/`` (the same four idx files)
* CIFAR-10       ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
* CIFAR-100      ``<root>/cifar-100-python/{train,test,meta}`` (the 100 fine labels are used)

Reading the files directly, rather than through torchvision's classes (which
check md5 sums and raise a bare ``RuntimeError``), gives clear errors and lets the
tests exercise this exact code on small fixture files in the real formats:

* files missing and ``download=False``: ``DatasetNotFoundError`` (a
  ``FileNotFoundError``) saying where kdlab looked, how to download the dataset and
  which datasets need no download;
* files present but unreadable (truncated, wrong magic number, not a CIFAR pickle,
  wrong shapes, labels out of range): ``DataCorruptError`` (a ``ValueError``)
  saying what is wrong and to delete the folder and download again.

CIFAR files are pickles; they are read with an unpickler that builds only numpy
arrays, lists, dicts, bytes and numbers, so a planted file cannot run code.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np

from .errors import DataCorruptError, DatasetNotFoundError, ParameterError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

STANDARD = ("mnist", "fashion-mnist", "cifar10", "cifar100")
OFFLINE = ("digits", "mnist-5k")  # served by kdlab.data without any file; named in error messages

_IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_NUM_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}
# torchvision.datasets.FashionMNIST.classes (kept here so reading never imports torchvision).
_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                    "Bag", "Ankle boot"]
# What reading a damaged file can raise: bad gzip data (OSError, EOFError, zlib.error), bad pickles, bad contents.
_READ_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, AssertionError, RuntimeError,
                EOFError, OSError, zlib.error, pickle.UnpicklingError, UnicodeDecodeError)


def _missing(name: str, root: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {name!r} was not found under root {str(root)!r} ({what} is missing) and download=False. "
        f"Get it with kdlab.data.load({name!r}, download=True), which downloads it into {str(root)!r}; "
        f"or use one of the offline datasets that need no download: {', '.join(map(repr, OFFLINE))}.")


def _corrupt(name: str, root: Path, problem: str) -> DataCorruptError:
    return DataCorruptError(
        f"dataset {name!r} under {str(root)!r} is corrupted: {problem}. Delete its folder and download it "
        f"again with kdlab.data.load({name!r}, download=True).")


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


# --------------------------------------------------------------------------- idx (MNIST, Fashion-MNIST)
def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): a big-endian header of magic
    ``0x0000 08 <ndim>`` (uint8 data) and ``ndim`` int32 sizes, then the bytes.
    Raises ``ValueError`` on a bad magic number or a size that does not match."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] == 0:
        raise ValueError(f"{path.name}: not a uint8 idx file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path.name}: header truncated")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if any(s < 0 for s in shape):
        raise ValueError(f"{path.name}: negative size in header {shape}")
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise ValueError(f"{path.name}: holds {len(raw) - header} data bytes, the header promises {expected} "
                         "(truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable for torch


def _load_idx_dataset(name: str, root: Path) -> dict:
    folder = root / _IDX_FOLDERS[name] / "raw"
    arrays: dict = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _find(folder, f"{prefix}-images-idx3-ubyte")
        labels = _find(folder, f"{prefix}-labels-idx1-ubyte")
        if images is None or labels is None:
            raise _missing(name, root, f"{folder}/{prefix}-*-ubyte")
        try:
            x, y = read_idx(images), read_idx(labels)
        except FileNotFoundError as err:
            raise _missing(name, root, str(err.filename)) from err
        except _READ_ERRORS as err:
            raise _corrupt(name, root, _describe(err)) from err
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise _corrupt(name, root, f"{images.name} holds an array of shape {x.shape}, not (N, 28, 28)")
        if y.ndim != 1 or len(x) != len(y):
            raise _corrupt(name, root, f"{prefix} images have shape {x.shape} but labels {y.shape}")
        arrays[f"x_{split}"] = np.ascontiguousarray(x[:, None])  # (N, 1, 28, 28)
        arrays[f"y_{split}"] = y.astype(np.int64)
    arrays["class_names"] = [str(i) for i in range(10)] if name == "mnist" else list(_FASHION_CLASSES)
    return arrays


# --------------------------------------------------------------------------- CIFAR python pickles
def _latin1(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it to store bytes; nothing else."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refuses to unpickle _codecs.encode({type(text).__name__}, {encoding!r})")
    return codecs.encode(text, "latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Builds only what CIFAR pickles hold: dicts, lists, bytes, numbers and numpy arrays."""

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("_codecs", "encode"): _latin1,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refuses to unpickle {module}.{name}: a CIFAR file holds only arrays, lists and bytes") from None


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        obj = _ArrayUnpickler(fh, encoding="bytes").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name} holds a {type(obj).__name__}, not a dict")
    return {k.encode("latin1") if isinstance(k, str) else k: v for k, v in obj.items()}  # b"data" even if re-pickled


def _cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    for key in (b"data", label_key):
        if key not in batch:
            raise ValueError(f"{path.name} has no {key!r} entry (keys: {sorted(map(repr, batch))})")
    data, labels = batch[b"data"], np.asarray(batch[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path.name}: b'data' should be a uint8 (N, 3072) array, got {what}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise ValueError(f"{path.name}: {len(data)} images but labels {labels.dtype} of shape {labels.shape}")
    # A row is the 1024 red values, then the green, then the blue, each a row-major 32x32 plane.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


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
    arrays: dict = {}
    try:
        for split, fnames in files.items():
            batches = [_cifar_batch(folder / fname, label_key) for fname in fnames]
            arrays[f"x_{split}"] = np.ascontiguousarray(np.concatenate([x for x, _ in batches]))
            arrays[f"y_{split}"] = np.concatenate([y for _, y in batches])
        meta = _unpickle(folder / meta_file)
        if names_key not in meta:
            raise ValueError(f"{meta_file} has no {names_key!r} entry")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    except FileNotFoundError as err:
        raise _missing(name, root, str(err.filename)) from err
    except _READ_ERRORS as err:
        raise _corrupt(name, root, _describe(err)) from err
    arrays["class_names"] = names
    return arrays


# --------------------------------------------------------------------------- public
def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd  # imported here: only the download path needs torchvision

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10,
           "cifar100": tvd.CIFAR100}[name]
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision wraps mirror failures
        raise DatasetNotFoundError(
            f"dataset {name!r} is not under {str(root)!r} and downloading it failed ({_describe(err)}). "
            f"Check the internet connection, or use one of the offline datasets that need no download: "
            f"{', '.join(map(repr, OFFLINE))}.") from err


def _check(name: str, root: Path, arrays: dict) -> dict:
    k = _NUM_CLASSES[name]
    if len(arrays["class_names"]) != k:
        raise _corrupt(name, root, f"{len(arrays['class_names'])} class names, expected {k}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or y.dtype != np.int64 or y.ndim != 1 or len(x) != len(y):
            raise _corrupt(name, root, f"{split} images {x.dtype}{x.shape} do not match labels {y.dtype}{y.shape}")
        if len(y) == 0:
            raise _corrupt(name, root, f"the {split} split holds no images")
        if y.min() < 0 or y.max() >= k:
            raise _corrupt(name, root, f"{split} labels range over [{y.min()}, {y.max()}] but there are {k} classes")
    return arrays


def load_arrays(name: str, root: str | Path, download: bool = False) -> dict:
    """Return ``{"x_train", "y_train", "x_test", "y_test", "class_names"}``.

    Images are uint8 ``(N, C, H, W)`` arrays (C=1 for MNIST/Fashion-MNIST, 3 for
    CIFAR), labels int64 ``(N,)``, ``class_names`` a list of ``str`` ("0".."9" for
    MNIST). Touches the network only when ``download=True`` and files are missing.

    Raises ``ParameterError`` for an unknown ``name``, ``DatasetNotFoundError`` when
    the files are missing (and ``download=False``, or the download failed) and
    ``DataCorruptError`` when they cannot be read.
    """
    if name not in STANDARD:
        raise ParameterError(f"name={name!r} is not a dataset kdlab knows; accepted: "
                             f"{', '.join(map(repr, OFFLINE + STANDARD))}.")
    root = Path(root).expanduser()
    loader = _load_idx_dataset if name in _IDX_FOLDERS else _load_cifar
    try:
        arrays = loader(name, root)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(name, root)
        arrays = loader(name, root)
    return _check(name, root, arrays)
