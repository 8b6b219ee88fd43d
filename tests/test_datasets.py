import gzip
import os

import numpy as np
import pytest

from fastnn.datasets import (
    load_digits,
    load_digits_split,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)
from fastnn.errors import IDXFormatError

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------- round trip

@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 5), (2, 1, 3, 2)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 50).astype(dtype)
    path = tmp_path / f"data-idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert os.listdir(tmp_path) == [path.name]  # no temp file left behind


def test_round_trip_empty_and_big_endian(tmp_path):
    write_idx(tmp_path / "empty", np.zeros((0, 28, 28), np.uint8))
    assert read_idx(tmp_path / "empty").shape == (0, 28, 28)
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    write_idx(tmp_path / "big", big)
    np.testing.assert_array_equal(read_idx(tmp_path / "big"), big)


def test_gzip_detected_by_magic_without_suffix(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(10, dtype=np.uint8))
    os.rename(tmp_path / "a.gz", tmp_path / "a")
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), np.arange(10))


def test_header_layout(tmp_path):
    write_idx(tmp_path / "f", np.array([[1, 2, 3]], np.uint8))
    raw = (tmp_path / "f").read_bytes()
    assert raw == bytes([0, 0, 8, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3])


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "f", np.zeros(3, np.int64))
    assert not os.listdir(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope.gz")


# ---------------------------------------------------------------- corruption

def _valid_bytes():
    return bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


CORRUPTIONS = {
    "truncated data": (_valid_bytes()[:-1], "truncated IDX file"),
    "extra bytes": (_valid_bytes() + b"\0", "extra trailing bytes"),
    "bad magic": (b"\1\0" + _valid_bytes()[2:], "not an IDX file"),
    "bad type": (bytes([0, 0, 7]) + _valid_bytes()[3:], "unknown IDX type code 0x07"),
    "truncated header": (_valid_bytes()[:9], "truncated IDX header"),
    "tiny": (b"\0\0", "truncated IDX header"),
    "empty": (b"", "truncated IDX header"),
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
@pytest.mark.parametrize("compress", [False, True])
def test_corrupt_file(tmp_path, what, compress):
    data, message = CORRUPTIONS[what]
    name = "broken-idx3-ubyte" + (".gz" if compress else "")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IDXFormatError, match=message) as info:
        read_idx(path)
    assert name in str(info.value)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("payload", [
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"garbage garbage garbage",  # bad deflate
    gzip.compress(_valid_bytes())[:-6],  # truncated stream
    gzip.compress(_valid_bytes())[:-4] + b"\0\0\0\0",  # wrong length trailer
    b"\x1f\x8b",  # magic only
])
def test_corrupt_gzip(tmp_path, payload):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(payload)
    with pytest.raises(IDXFormatError, match="corrupt gzip") as info:
        read_idx(path)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_not_gzip_despite_suffix(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(_valid_bytes())
    with pytest.raises(IDXFormatError, match="plain.gz: corrupt gzip"):
        read_idx(path)


# ---------------------------------------------------------------- load_mnist

def _fake_mnist(folder, n_train=5, n_test=3, suffix=".gz", train_labels=None):
    rng = np.random.default_rng(1)
    folder.mkdir(exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = rng.integers(0, 10, n).astype(np.uint8)
        if prefix == "train" and train_labels is not None:
            labels = np.asarray(train_labels, np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_load_mnist(tmp_path, suffix):
    folder = _fake_mnist(tmp_path / "mnist", suffix=suffix)
    (x_train, y_train), (x_test, y_test) = load_mnist(folder)
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    assert y_train.shape == (5,) and y_test.shape == (3,)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    raw = read_idx(folder / f"train-images-idx3-ubyte{suffix}")
    np.testing.assert_allclose(x_train[:, 0] * 255, raw, atol=1e-4)
    np.testing.assert_array_equal(y_train, read_idx(folder / f"train-labels-idx1-ubyte{suffix}"))


def test_load_mnist_mismatched_counts(tmp_path):
    folder = _fake_mnist(tmp_path / "m", train_labels=[1, 2, 3, 4])
    with pytest.raises(IDXFormatError, match="5 images.*4 labels") as info:
        load_mnist(folder)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)


def test_load_mnist_label_out_of_range(tmp_path):
    folder = _fake_mnist(tmp_path / "m", train_labels=[0, 1, 2, 10, 3])
    with pytest.raises(IDXFormatError, match="train-labels-idx1-ubyte.gz.*0..9"):
        load_mnist(folder)


def test_load_mnist_wrong_dtype(tmp_path):
    folder = _fake_mnist(tmp_path / "m")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.int32))
    with pytest.raises(IDXFormatError, match="t10k-labels"):
        load_mnist(folder)


def test_load_mnist_missing_file(tmp_path):
    folder = _fake_mnist(tmp_path / "m")
    os.remove(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(folder)


# ---------------------------------------------------------------- fashion-mnist

def test_fashion_mnist_missing_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTNN_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "absent")


def test_fashion_mnist_missing_file(tmp_path):
    folder = _fake_mnist(tmp_path / "f")
    os.remove(folder / "train-images-idx3-ubyte.gz")
    with pytest.raises(FileNotFoundError,
                       match="train-images-idx3-ubyte.*dataset-fashion-mnist"):
        load_fashion_mnist(folder)


def test_fashion_mnist_env_var(tmp_path, monkeypatch):
    folder = _fake_mnist(tmp_path / "f", n_train=4, n_test=2)
    monkeypatch.setenv("FASTNN_FASHION_MNIST_DIR", str(folder))
    (x_train, _), (x_test, _) = load_fashion_mnist()
    assert len(x_train) == 4 and len(x_test) == 2
    monkeypatch.setenv("FASTNN_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent"):
        load_fashion_mnist()


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR),
                    reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_installed(monkeypatch):
    monkeypatch.delenv("FASTNN_FASHION_MNIST_DIR", raising=False)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


# ---------------------------------------------------------------- digits

def test_load_digits():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_load_digits_split():
    (x_train, y_train), (x_test, y_test) = load_digits_split(0.25, seed=3)
    assert len(x_test) == len(y_test) == round(1797 * 0.25)
    assert len(x_train) + len(x_test) == 1797
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    # train and test together are a permutation of the full set
    x, y = load_digits()
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_test])), np.sort(y))
    again = load_digits_split(0.25, seed=3)
    np.testing.assert_array_equal(again[1][1], y_test)
    other = load_digits_split(0.25, seed=4)
    assert not np.array_equal(other[1][0], x_test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.0001])
def test_load_digits_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(fraction)
