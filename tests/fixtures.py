"""Test helpers: tiny datasets written in torchvision's real on-disk formats (idx files,
CIFAR pickles), and objectives prepared over given teacher logits without a training run."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn


def prepared(make_objective, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None):
    """``make_objective(teacher)`` for a :class:`kdlab.teacher.Teacher` that serves ``teacher_logits``
    ``(B, K)`` as the precomputed logits of a split of B blank 2x2 images, prepared as ``fit``
    prepares it. Returns the objective and a :class:`kdlab.data.Batch` of the whole split, in order."""
    from kdlab.data import Batch, Split
    from kdlab.teacher import Teacher

    n, k = teacher_logits.shape
    labels = torch.zeros(n, dtype=torch.long) if labels is None else labels
    split = Split(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), labels, torch.zeros(1), torch.ones(1))
    teacher = Teacher(nn.Sequential(nn.Flatten(), nn.Linear(4, k)), logits=teacher_logits)
    objective = make_objective(teacher)
    objective.prepare(split, augment=False, epochs=1, device=torch.device("cpu"), amp=False, num_classes=k)
    assert teacher.mode == "given"
    return objective, Batch(split.inputs(), labels, torch.arange(n), torch.zeros(n, dtype=torch.long))


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """An idx file: magic 0x00000800 | ndim, big-endian int32 sizes, then uint8 bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 20, n_test: int = 10, compress: bool = False,
                seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y, compress)
        out[prefix] = (x, y)
    return out


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict:
    """data_batch_1..5, test_batch and batches.meta, as in cifar-10-python.tar.gz."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    out = {"train": []}
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        _pickle(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels,
                                             b"data": data, b"filenames": [b"x.png"] * per_batch})
        out["train"].append((data, labels))
    data = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n_test)]
    _pickle(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
                                    b"filenames": [b"x.png"] * n_test})
    out["test"] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return out


def write_cifar100(root: Path, n_train: int = 8, n_test: int = 4, seed: int = 0) -> dict:
    """train, test and meta, as in cifar-100-python.tar.gz."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        _pickle(folder / split, {b"filenames": [b"x.png"] * n, b"batch_label": split.encode(), b"fine_labels": fine,
                                 b"coarse_labels": [f // 5 for f in fine], b"data": data})
        out[split] = (data, fine)
    _pickle(folder / "meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"super{i}".encode() for i in range(20)]})
    return out


def write_parameterised_notebook(path: Path, parameters: str, body: str) -> Path:
    """Write a two-cell notebook to ``path``: ``parameters`` (tagged for papermill) then ``body``."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path
