"""Dataset loading: IDX files (MNIST, Fashion-MNIST) and the bundled 8x8 digits.

Images come back as float32 arrays shaped ``(N, 1, H, W)`` scaled to
``[0, 1]``, labels as int64 arrays shaped ``(N,)``.
"""

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import DTypeError, IDXFormatError
from .io import atomic_open

__all__ = [
    "read_idx",
    "write_idx",
    "load_fashion_mnist",
    "load_mnist",
    "load_digits",
    "load_digits_split",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_HINT = "install it with: apt-get install dataset-fashion-mnist, or pass path="

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {(dt.kind, dt.itemsize): code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path):
    """Read one IDX file into a numpy array.

    The file is gunzipped first if its name ends with ``.gz`` or it starts
    with the gzip magic bytes ``1f 8b``.

    Parameters
    ----------
    path : str or os.PathLike
        The IDX file, raw or gzip-compressed.

    Returns
    -------
    numpy.ndarray
        An array with the shape stored in the header and the dtype given by
        the type byte (uint8, int8, int16, int32, float32 or float64), in
        native byte order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    fastnn.errors.IDXFormatError
        If the file is not a valid IDX file (bad magic, unknown type code,
        truncated header or data, extra trailing bytes, corrupt gzip stream).
        The message starts with the file name.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if name.endswith(".gz") or data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXFormatError(f"{name}: corrupt gzip stream: {exc}") from exc

    if len(data) < 4:
        raise IDXFormatError(
            f"{name}: truncated IDX header: need 4 bytes, found {len(data)}")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{name}: not an IDX file: first two bytes must be 0, "
            f"got {data[:2].hex(' ')}")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise IDXFormatError(
            f"{name}: unknown IDX type code 0x{code:02X} "
            f"(expected one of {', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)})")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(
            f"{name}: truncated IDX header: {ndim} dimensions need "
            f"{header_size} bytes, found {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = dtype.itemsize * int(np.prod(shape, dtype=object))
    found = len(data) - header_size
    if found < expected:
        raise IDXFormatError(
            f"{name}: truncated IDX file: header promises {expected} bytes "
            f"of data, found {found}")
    if found > expected:
        raise IDXFormatError(
            f"{name}: extra trailing bytes in IDX file: header promises "
            f"{expected} bytes of data, found {found}")
    flat = np.frombuffer(data, dtype, offset=header_size)
    return flat.astype(dtype.newbyteorder("=")).reshape(shape)


def write_idx(path, array):
    """Write an array as an IDX file, gzip-compressed if `path` ends with ``.gz``.

    The file is written atomically: to a temporary file in the same folder,
    then renamed over `path`.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write.
    array : array_like
        Data of dtype uint8, int8, int16, int32, float32 or float64, any
        shape (each dimension below 2**32).

    Raises
    ------
    fastnn.errors.DTypeError
        If the dtype has no IDX type code.
    ValueError
        If the array has a dimension of 2**32 or more.
    """
    array = np.asarray(array)
    code = _IDX_CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DTypeError(
            f"write_idx: dtype {array.dtype} cannot be stored in IDX; use "
            "uint8, int8, int16, int32, float32 or float64")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: dimension too large for IDX: {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, _IDX_DTYPES[code]).tobytes()
    name = os.fspath(path)
    if name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)

    with atomic_open(name) as f:
        f.write(payload)


def _find_idx(folder, stem, hint):
    """Return the path of ``stem`` or ``stem.gz`` in `folder`."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}: missing {stem}.gz (or {stem}); {hint}")


def _load_pair(folder, prefix, hint):
    """Load ``<prefix>-images-idx3-ubyte`` and ``<prefix>-labels-idx1-ubyte``."""
    images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte", hint)
    labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte", hint)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise IDXFormatError(
            f"{images_path}: expected uint8 images shaped (N, H, W), "
            f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXFormatError(
            f"{labels_path}: expected uint8 labels shaped (N,), "
            f"got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise IDXFormatError(
            f"{labels_path}: labels must be in 0..9, found {labels.max()}")
    n, h, w = images.shape
    x = images.reshape(n, 1, h, w).astype(np.float32)
    x /= 255
    return x, labels.astype(np.int64)


def _load_idx_folder(path, hint):
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: dataset folder not found; {hint}")
    return _load_pair(folder, "train", hint), _load_pair(folder, "t10k", hint)


def load_fashion_mnist(path=None):
    """Load Fashion-MNIST from a folder of IDX files.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each with
        or without a ``.gz`` suffix. Defaults to ``$FASTNN_FASHION_MNIST_DIR``
        if set, else ``/usr/share/datasets/fashion-mnist`` (installed by the
        Debian package ``dataset-fashion-mnist``).

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images float32 shaped (N, 1, 28, 28) in [0, 1] (N = 60000 for train,
        10000 for test); labels int64 shaped (N,) in 0..9.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the files is missing.
    fastnn.errors.IDXFormatError
        If a file is corrupt, the image and label counts differ, or a label
        is outside 0..9.
    """
    if path is None:
        path = os.environ.get("FASTNN_FASHION_MNIST_DIR") or FASHION_MNIST_DIR
    return _load_idx_folder(path, _FASHION_HINT)


def load_mnist(path):
    """Load MNIST (or any dataset in the same IDX layout) from a folder.

    Parameters
    ----------
    path : str or os.PathLike
        Folder with the same four file names as :func:`load_fashion_mnist`.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images float32 shaped (N, 1, H, W) in [0, 1] (H = W = 28 for MNIST);
        labels int64 shaped (N,) in 0..9.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the files is missing.
    fastnn.errors.IDXFormatError
        As for :func:`load_fashion_mnist`.
    """
    return _load_idx_folder(path, "pass the folder holding the IDX files as path=")


def load_digits():
    """Load the bundled 8x8 handwritten digits (1797 samples, 10 classes).

    Returns
    -------
    x : numpy.ndarray
        float32, shape (1797, 1, 8, 8), pixel values in [0, 1].
    y : numpy.ndarray
        int64, shape (1797,), labels in 0..9.
    """
    table = np.loadtxt(Path(__file__).parent / "data" / "digits.csv.gz",
                       delimiter=",", dtype=np.int64, ndmin=2)
    x = table[:, :64].reshape(-1, 1, 8, 8).astype(np.float32)
    x /= 16
    return x, table[:, 64].copy()


def load_digits_split(test_fraction=0.25, seed=0):
    """Load the bundled digits split at random into a train and a test set.

    Parameters
    ----------
    test_fraction : float, default 0.25
        Fraction of the samples put in the test set, strictly between 0 and 1.
    seed : int or None, default 0
        Seed for ``numpy.random.default_rng`` choosing the permutation.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of tuples of numpy.ndarray
        Images float32 shaped (N, 1, 8, 8) in [0, 1], labels int64 shaped (N,);
        the test set holds ``round(1797 * test_fraction)`` samples.
    """
    x, y = load_digits()
    n_test = int(round(len(y) * test_fraction)) if 0 < test_fraction < 1 else 0
    if not 0 < n_test < len(y):
        raise ValueError(
            f"test_fraction must leave both sets non-empty, got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])
