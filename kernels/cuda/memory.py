"""Device memory: allocation, host <-> device copies, and the mini-batch gather.

Same signatures as :mod:`fastnn.kernels.reference`; arrays are Numba device arrays.
"""
import numpy as np
from numba import cuda

from .common import flat, is_device_array, launch_1d


@cuda.jit
def _fill(out, value):
    """out[:] = value. out: (n,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.size, step):
        out[i] = value


@cuda.jit
def _copy(src, dst):
    """dst[:] = src with a cast to dst's dtype. src, dst: (n,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, dst.size, step):
        dst[i] = src[i]


@cuda.jit
def _gather_rows(a, idx, out, row):
    """out[i, :] = a[idx[i], :] on flat views. a: (N * row,); idx: (n,) int; out: (n * row,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, step):
        i = e // row
        out[e] = a[idx[i] * row + (e - i * row)]


def empty(shape, dtype):
    """Uninitialised device array of ``shape`` and ``dtype``."""
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def zeros(shape, dtype):
    """Zero-filled device array (filled on the device, nothing is copied from the host)."""
    a = empty(shape, dtype)
    d = flat(a)
    launch_1d(_fill, d.size, d, a.dtype.type(0))
    return a


def to_device(a):
    """A device copy of host array ``a`` (C-contiguous); device arrays are returned unchanged."""
    if is_device_array(a):
        return a
    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """A NumPy copy of device array ``a``; host arrays are returned unchanged."""
    if is_device_array(a):
        return a.copy_to_host()
    return a


def copy_into(dst, src):
    """``dst[...] = src`` for a device ``dst``; ``src`` is a host array (broadcast and cast to
    dst's dtype, then one host-to-device copy) or a device array of the same size."""
    if dst.size == 0:
        return
    if is_device_array(src):
        if src.dtype == dst.dtype and tuple(src.shape) == tuple(dst.shape):
            dst.copy_to_device(src)
        else:
            s, d = flat(src), flat(dst)
            if s.size != d.size:
                raise ValueError(f"copy_into: cannot copy {tuple(src.shape)} into {tuple(dst.shape)}")
            launch_1d(_copy, d.size, s, d)
        return
    host = np.empty(dst.shape, dst.dtype)     # a fresh C-contiguous copy: no stride-0 views
    host[...] = src
    dst.copy_to_device(host)


class _IndexUpload:
    """A reused device buffer for index arrays that arrive from the host (one small copy)."""

    def __init__(self):
        self.buf = None

    def __call__(self, idx):
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        if self.buf is None or self.buf.size < idx.size:
            self.buf = cuda.device_array(max(idx.size, 1024), dtype=np.int64)
        view = self.buf[:idx.size]
        if idx.size:
            view.copy_to_device(idx)
        return view


_upload_index = _IndexUpload()


def take_rows(a, idx, out):
    """out[i] = a[idx[i]]: gather the rows of a mini-batch into a reused buffer, one launch.

    a : (N, ...) device array; idx : (n,) integer device array (a host array is copied to the
    device first: one small transfer); out : (n, ...) device array.
    """
    if not is_device_array(idx):
        idx = _upload_index(idx)
    n = len(idx)
    row = out.size // n if n else 0
    launch_1d(_gather_rows, n * row, flat(a), idx, flat(out), row)
