"""The torchvision dataset readers, on fixture files in the real on-disk formats.

The writers (idx files, CIFAR-10/100 python pickles) are in ``tests/fixtures.py``;
nothing here downloads anything.
"""

import gzip
import pickle
import socket
import struct

import numpy as np
import pytest

import kdlab
from kdlab import tvdata
from kdlab.errors import DataCorruptError, DatasetNotFoundError, ParameterError

from .fixtures import write_cifar10, write_cifar100, write_mnist

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_datasets_load_exactly_what_was_written(tmp_path, name, folder, compress):
    written = write_mnist(tmp_path, folder=folder, compress=compress)
    assert (tmp_path / folder / "raw" / ("train-images-idx3-ubyte" + (".gz" if compress else ""))).exists()
    arrays = tvdata.load_arrays(name, tmp_path)
    assert arrays["x_train"].shape == (20, 1, 28, 28) and arrays["x_test"].shape == (10, 1, 28, 28)
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_test"].dtype == np.uint8
    assert arrays["y_train"].dtype == np.int64 and arrays["y_test"].dtype == np.int64
    np.testing.assert_array_equal(arrays["x_train"][:, 0], written["train"][0])
    np.testing.assert_array_equal(arrays["x_test"][:, 0], written["t10k"][0])
    assert arrays["x_train"][3, 0, 5, 17] == written["train"][0][3, 5, 17]
    np.testing.assert_array_equal(arrays["y_train"], written["train"][1])
    np.testing.assert_array_equal(arrays["y_test"], written["t10k"][1])
    assert arrays["class_names"] == ([str(i) for i in range(10)] if name == "mnist" else FASHION)


def test_fashion_class_names_match_torchvision():
    import torchvision.datasets

    assert tvdata._FASHION_CLASSES == list(torchvision.datasets.FashionMNIST.classes) == FASHION


def test_cifar10_channel_order_and_batches(tmp_path):
    written = write_cifar10(tmp_path)
    arrays = tvdata.load_arrays("cifar10", tmp_path)
    assert arrays["x_train"].shape == (20, 3, 32, 32) and arrays["x_train"].dtype == np.uint8
    assert arrays["x_test"].shape == (6, 3, 32, 32)
    assert arrays["y_train"].dtype == np.int64
    data, labels = written["train"][1]  # the second batch file holds images 4..7
    # A CIFAR row is the 1024 red values, then green, then blue, each row-major.
    assert arrays["x_train"][4, 1, 2, 3] == data[0, 1024 + 2 * 32 + 3]
    assert arrays["x_train"][5, 2, 31, 0] == data[1, 2048 + 31 * 32]
    assert arrays["x_train"][6, 0, 0, 31] == data[2, 31]
    assert arrays["y_train"][4:8].tolist() == labels
    assert arrays["y_train"].tolist() == [v for _, batch in written["train"] for v in batch]
    test_data, test_labels = written["test"]
    np.testing.assert_array_equal(arrays["x_test"].reshape(6, 3072), test_data)
    assert arrays["y_test"].tolist() == test_labels
    assert arrays["class_names"] == CIFAR10


def test_cifar100_uses_fine_labels_and_meta_names(tmp_path):
    written = write_cifar100(tmp_path)
    arrays = tvdata.load_arrays("cifar100", tmp_path)
    assert arrays["x_train"].shape == (8, 3, 32, 32) and arrays["x_test"].shape == (4, 3, 32, 32)
    assert arrays["x_train"].dtype == np.uint8 and arrays["y_train"].dtype == np.int64
    data, fine = written["train"]
    assert arrays["x_train"][2, 2, 10, 20] == data[2, 2048 + 10 * 32 + 20]
    assert arrays["x_train"][7, 0, 31, 31] == data[7, 1023]
    assert arrays["y_train"].tolist() == fine  # the fine labels, not the coarse ones
    assert arrays["y_test"].tolist() == written["test"][1]
    assert arrays["class_names"] == [f"class{i}" for i in range(100)]


def _py2_cifar_batch(data: np.ndarray, labels: list) -> bytes:
    """A batch pickled the way the real cifar-10-python.tar.gz was (Python 2 cPickle, protocol 2):
    py2 ``str`` keys and payload (BINSTRING), ``numpy.core.multiarray._reconstruct``."""
    def pystr(b: bytes) -> bytes:
        return b"T" + struct.pack("<i", len(b)) + b

    n = data.shape[0]
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + pystr(b"b") + b"\x87R("
             b"K\x01" + b"J" + struct.pack("<i", n) + b"M\x00\x0c\x86"  # version 1, shape (n, 3072)
             b"cnumpy\ndtype\n" + pystr(b"u1") + b"K\x00K\x01\x87R(K\x03" + pystr(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + pystr(data.tobytes()) + b"tb")
    items = b"".join(b"J" + struct.pack("<i", v) + b"a" for v in labels)
    return (b"\x80\x02}(" + pystr(b"batch_label") + pystr(b"training batch") + pystr(b"data") + array
            + pystr(b"labels") + b"]" + items + b"u.")


def test_python2_pickled_batches_as_in_the_real_tarball_load(tmp_path):
    written = write_cifar10(tmp_path)
    data, labels = written["train"][0]
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(_py2_cifar_batch(data, labels))
    assert pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes(),
                        encoding="bytes")[b"labels"] == labels  # control: the crafted file is a valid pickle
    arrays = tvdata.load_arrays("cifar10", tmp_path)
    np.testing.assert_array_equal(arrays["x_train"][:4].reshape(4, 3072), data)
    assert arrays["y_train"][:4].tolist() == labels


def test_public_load_splits_a_standard_dataset(tmp_path):
    write_mnist(tmp_path, n_train=200, n_test=30)
    ds = kdlab.data.load("mnist", root=tmp_path, seed=1)
    assert len(ds.test) == 30 and len(ds.train) + len(ds.val) == 200
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.train.augmentation == "shift"


def test_cifar_gets_crop_and_flip(tmp_path):
    write_cifar10(tmp_path, per_batch=20)
    ds = kdlab.data.load("cifar10", root=tmp_path)
    assert ds.train.augmentation == "crop_flip" and ds.input_shape == (3, 32, 32)


# ----------------------------------------------------------------------------------------------- missing files
@pytest.mark.parametrize("name", tvdata.STANDARD)
def test_missing_files_say_how_to_download_and_name_offline_datasets(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as info:
        kdlab.data.load(name, root=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert name in message and "download=True" in message and "'digits'" in message and "'mnist-5k'" in message
    assert str(tmp_path) in message


@pytest.mark.parametrize("name,writer,victim", [
    ("mnist", write_mnist, "MNIST/raw/t10k-labels-idx1-ubyte"),
    ("cifar10", write_cifar10, "cifar-10-batches-py/data_batch_4"),
    ("cifar100", write_cifar100, "cifar-100-python/meta"),
])
def test_one_missing_file_names_it(tmp_path, name, writer, victim):
    writer(tmp_path)
    tvdata.load_arrays(name, tmp_path)  # control: complete, it loads
    (tmp_path / victim).unlink()
    with pytest.raises(DatasetNotFoundError, match="download=True") as info:
        tvdata.load_arrays(name, tmp_path)
    assert victim.split("/")[-1].split("-")[0] in str(info.value)


@pytest.mark.parametrize("name", tvdata.STANDARD)
def test_missing_files_never_touch_the_network(tmp_path, monkeypatch, name):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(DatasetNotFoundError):
        kdlab.data.load(name, root=tmp_path)
    with pytest.raises(DatasetNotFoundError):
        tvdata.load_arrays(name, tmp_path, download=False)


def test_download_true_fetches_only_missing_files(tmp_path, monkeypatch):
    calls = []

    def fake_download(name, root):
        calls.append(name)
        write_mnist(root, folder="FashionMNIST")

    monkeypatch.setattr(tvdata, "_download", fake_download)
    arrays = tvdata.load_arrays("fashion-mnist", tmp_path, download=True)
    assert calls == ["fashion-mnist"] and arrays["x_train"].shape == (20, 1, 28, 28)
    tvdata.load_arrays("fashion-mnist", tmp_path, download=True)
    assert calls == ["fashion-mnist"]  # present now: no second download


def test_a_failed_download_says_so(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train, download):
            assert download is True and root == str(tmp_path)
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DatasetNotFoundError, match="downloading it failed.*'digits', 'mnist-5k'") as info:
        tvdata.load_arrays("mnist", tmp_path, download=True)
    assert isinstance(info.value.__cause__, RuntimeError)


# ----------------------------------------------------------------------------------------------- corrupt files
def test_truncated_idx_file_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataCorruptError, match="truncated") as info:
        kdlab.data.load("mnist", root=tmp_path)
    assert isinstance(info.value, ValueError) and "download=True" in str(info.value)
    assert "'mnist'" in str(info.value) and "Delete" in str(info.value)


def test_truncated_gzip_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path, folder="FashionMNIST", compress=True)
    labels = tmp_path / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])
    with pytest.raises(DataCorruptError, match="'fashion-mnist'"):
        tvdata.load_arrays("fashion-mnist", tmp_path)


def test_bad_magic_number_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataCorruptError, match="magic"):
        tvdata.load_arrays("mnist", tmp_path)


def test_idx_labels_out_of_range_are_corrupt(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] = 42
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorruptError, match="42"):
        tvdata.load_arrays("mnist", tmp_path)


def test_idx_image_and_label_counts_must_agree(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(struct.pack(">II", 0x0801, 9) + bytes(range(9)))
    with pytest.raises(DataCorruptError, match=r"\(9,\)"):
        tvdata.load_arrays("mnist", tmp_path)


def test_garbage_cifar_pickle_is_reported_as_corrupt(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataCorruptError, match="cifar10") as info:
        tvdata.load_arrays("cifar10", tmp_path)
    assert isinstance(info.value, ValueError) and "download=True" in str(info.value)


@pytest.mark.parametrize("batch,match", [
    ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0, 1, 2, 3]}, "3072"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]}, "4 images"),
    ({b"data": np.zeros((4, 3072), np.uint8)}, "labels"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, "10 classes"),
    ([1, 2, 3], "not a dict"),
])
def test_cifar_batches_with_wrong_contents_are_corrupt(tmp_path, batch, match):
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    with pytest.raises(DataCorruptError, match=match):
        tvdata.load_arrays("cifar10", tmp_path)


def test_cifar100_meta_without_fine_names_is_corrupt(tmp_path):
    write_cifar100(tmp_path)
    with open(tmp_path / "cifar-100-python" / "meta", "wb") as fh:
        pickle.dump({b"coarse_label_names": [b"x"] * 20}, fh, protocol=2)
    with pytest.raises(DataCorruptError, match="fine_label_names"):
        tvdata.load_arrays("cifar100", tmp_path)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_planted_cifar_pickle_does_not_run_code(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    evil.write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": []}, protocol=2))
    with pytest.raises(DataCorruptError, match="refuses to unpickle"):
        tvdata.load_arrays("cifar10", tmp_path)
    assert not marker.exists()
    with open(evil, "rb") as fh:  # control: loaded unsafely, the same file does run code
        pickle.load(fh)
    assert marker.exists()


# ----------------------------------------------------------------------------------------------- bad names
def test_unknown_name_lists_choices():
    with pytest.raises(ParameterError, match="'mnist-5k'") as info:
        tvdata.load_arrays("imagenet", ".")
    assert all(repr(n) in str(info.value) for n in tvdata.STANDARD + tvdata.OFFLINE)
    assert "'imagenet'" in str(info.value)
    with pytest.raises(ValueError, match="'cifar100'"):
        kdlab.data.load("imagenet")


def test_offline_names_are_not_read_from_disk():
    with pytest.raises(ParameterError):
        tvdata.load_arrays("digits", ".")


def test_gzip_helper_roundtrip_is_what_the_fixture_writes(tmp_path):
    """Guards the fixture itself: a gz idx file decompresses to magic 2051 and the sizes written."""
    write_mnist(tmp_path, compress=True)
    raw = gzip.decompress((tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").read_bytes())
    assert struct.unpack(">IIII", raw[:16]) == (2051, 20, 28, 28)
