"""What every CUDA kernel module shares: launch geometry, flat views of device arrays, the
activation device functions and the block reduction.

Written once here so that the GEMM epilogue, the element-wise kernels and the reductions cannot
disagree on what ``act`` code 2 means or on how a grid covers ``n`` elements.

Launch geometry
---------------
On a GPU the 1-D kernels run ``THREADS = 256`` threads per block with grid-stride loops; the
reductions run one block of ``THREADS`` threads per output. Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) every CUDA thread is a Python thread, so the same kernels run with
4 threads per block and at most 2 blocks: the code paths (strided loops, tree reductions,
partial tiles) are the same, only the sizes are smaller.
"""
import math

import numpy as np
from numba import config, cuda, float32, float64

SIM = bool(config.ENABLE_CUDASIM)
"""True when the kernels run in Numba's CUDA simulator instead of on a GPU."""

THREADS = 4 if SIM else 256          # threads per block of 1-D kernels and reductions (power of 2)
COLUMNS = 4 if SIM else 32           # columns per block of the column reductions (THREADS // COLUMNS rows)
MAX_BLOCKS = 2 if SIM else 4096      # 1-D kernels loop over the rest (grid-stride loops)

IDENTITY, RELU, SIGMOID, TANH = 0, 1, 2, 3
ACT_CODES = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}
"""Activation names of ``reference.ACTIVATIONS`` -> the code the kernels branch on."""

NUMBA_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


# --------------------------------------------------------------------------- host side


def is_device_array(a):
    """True for a Numba device array (or the simulator's stand-in), False for host arrays."""
    return not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host")


def flat(a):
    """1-D view (no copy) of a C-contiguous device array ``a``.

    Raises TypeError for a host array (it would be copied to the device behind the caller's
    back on every launch) and ValueError for a non-contiguous view.
    """
    if not is_device_array(a):
        raise TypeError(f"the cuda backend expects device arrays, got {type(a).__name__}; "
                        f"move it with to_device() first")
    if not a.is_c_contiguous():
        raise ValueError(f"the cuda backend expects C-contiguous arrays, got a view of shape "
                         f"{tuple(a.shape)} with strides {tuple(a.strides)}")
    return a.reshape(a.size) if a.ndim != 1 else a


def scalar(a, value):
    """``value`` as a NumPy scalar of ``a``'s dtype, so kernels stay in that precision."""
    return a.dtype.type(value)


def grid_1d(n):
    """(blocks, threads) for a grid-stride loop over ``n`` elements (n >= 1)."""
    return max(1, min(MAX_BLOCKS, -(-n // THREADS))), THREADS


def launch_1d(kernel, n, *args):
    """``kernel[grid_1d(n)](*args)``; nothing is launched when ``n == 0``."""
    if n > 0:
        blocks, threads = grid_1d(n)
        kernel[blocks, threads](*args)


class ScalarResult:
    """A one-element device array that reduction kernels write into, and the host array it is
    copied back to: one small device-to-host copy per loss or metric, nothing allocated."""

    def __init__(self, dtype):
        self.host = np.zeros(1, dtype=dtype)
        self._device = None

    @property
    def device(self):
        if self._device is None:
            self._device = cuda.to_device(self.host)
        return self._device

    def fetch(self):
        self.device.copy_to_host(self.host)
        return self.host[0]


# --------------------------------------------------------------------------- device side


@cuda.jit(device=True)
def act_forward(v, code):
    """The activation ``code`` of one value (sigmoid without overflow for large |v|)."""
    if code == RELU:
        return v if v > 0 else 0.0
    if code == SIGMOID:
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if code == TANH:
        return math.tanh(v)
    return v


@cuda.jit(device=True)
def act_backward(y, dy, code):
    """dy * act'(.) expressed through the activation's output ``y`` (0 where ReLU is off)."""
    if code == RELU:
        return dy if y > 0 else 0.0
    if code == SIGMOID:
        return dy * y * (1.0 - y)
    if code == TANH:
        return dy * (1.0 - y * y)
    return dy


@cuda.jit(device=True)
def block_sum(sh, tx, ty, rx, ry):
    """Column totals of the block's (ry, rx) table ``sh[ty * rx + tx]`` (a shared array; ry a
    power of 2), summed in a fixed tree order. Every thread of the block must call it; each gets
    the total of its column tx. Deterministic: no atomics."""
    s = ry // 2
    while s > 0:
        cuda.syncthreads()
        if ty < s:
            sh[ty * rx + tx] += sh[(ty + s) * rx + tx]
        s //= 2
    cuda.syncthreads()
    return sh[tx]
