"""The torchvision dataset readers, on fixture files in the real on-disk formats."""

import socket

import numpy as np
import pytest

import kdlab
from kdlab import tvdata
from kdlab.errors import DataCorruptError, DatasetNotFoundError, ParameterError

from .fixtures import write_cifar10, write_cifar100, write_mnist


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_datasets_load_exactly_what_was_written(tmp_path, name, folder, compress):
    written = write_mnist(tmp_path, folder=folder, compress=compress)
    arrays = tvdata.load_arrays(name, tmp_path)
    assert arrays["x_train"].shape == (20, 1, 28, 28) and arrays["x_train"].dtype == np.uint8
    assert arrays["y_train"].dtype == np.int64
    np.testing.assert_array_equal(arrays["x_train"][:, 0], written["train"][0])
    np.testing.assert_array_equal(arrays["y_test"], written["t10k"][1])
    assert len(arrays["class_names"]) == 10
    assert arrays["class_names"][9] == ("9" if name == "mnist" else "Ankle boot")


def test_cifar10_channel_order_and_batches(tmp_path):
    written = write_cifar10(tmp_path)
    arrays = tvdata.load_arrays("cifar10", tmp_path)
    assert arrays["x_train"].shape == (20, 3, 32, 32)
    assert arrays["x_test"].shape == (6, 3, 32, 32)
    data, labels = written["train"][1]  # the second batch file holds images 4..7
    # A CIFAR row is the 1024 red values, then green, then blue, each row-major.
    assert arrays["x_train"][4, 1, 2, 3] == data[0, 1024 + 2 * 32 + 3]
    assert arrays["x_train"][5, 2, 31, 0] == data[1, 2048 + 31 * 32]
    assert arrays["y_train"][4:8].tolist() == labels
    assert arrays["class_names"][0] == "airplane" and len(arrays["class_names"]) == 10


def test_cifar100_uses_fine_labels(tmp_path):
    written = write_cifar100(tmp_path)
    arrays = tvdata.load_arrays("cifar100", tmp_path)
    assert arrays["x_train"].shape == (8, 3, 32, 32)
    assert arrays["y_test"].tolist() == written["test"][1]
    assert len(arrays["class_names"]) == 100


def test_public_load_splits_a_standard_dataset(tmp_path):
    write_mnist(tmp_path, n_train=200, n_test=30)
    ds = kdlab.data.load("mnist", root=tmp_path, seed=1)
    assert len(ds.test) == 30 and len(ds.train) + len(ds.val) == 200
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.train.augment == "shift"


def test_cifar_gets_crop_and_flip(tmp_path):
    write_cifar10(tmp_path, per_batch=20)
    ds = kdlab.data.load("cifar10", root=tmp_path)
    assert ds.train.augment == "crop_flip" and ds.input_shape == (3, 32, 32)


@pytest.mark.parametrize("name", tvdata.STANDARD)
def test_missing_files_say_how_to_download_and_name_offline_datasets(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as info:
        kdlab.data.load(name, root=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert name in message and "download=True" in message and "'digits'" in message and "'mnist-5k'" in message


def test_missing_files_never_touch_the_network(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(DatasetNotFoundError):
        kdlab.data.load("cifar10", root=tmp_path)


def test_truncated_idx_file_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataCorruptError, match="truncated") as info:
        kdlab.data.load("mnist", root=tmp_path)
    assert isinstance(info.value, ValueError) and "download=True" in str(info.value)


def test_bad_magic_number_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataCorruptError, match="magic"):
        tvdata.load_arrays("mnist", tmp_path)


def test_garbage_cifar_pickle_is_reported_as_corrupt(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataCorruptError, match="cifar10"):
        tvdata.load_arrays("cifar10", tmp_path)


def test_unknown_name_lists_choices():
    with pytest.raises(ParameterError, match="'mnist-5k'"):
        tvdata.load_arrays("imagenet", ".")
    with pytest.raises(ValueError, match="'cifar100'"):
        kdlab.data.load("imagenet")
