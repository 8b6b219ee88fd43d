"""What every CUDA kernel module shares: launch geometry, flat views of device arrays, the
activation device functions and the block reduction.

Written once here so that the GEMM epilogue, the element-wise kernels and the reductions cannot
disagree on what an ``act`` code means (:class:`~fastnn.kernels.contract.Activation`) or on how
a grid covers ``n`` elements.

Launch geometry
---------------
On a GPU the 1-D kernels run ``THREADS = 256`` threads per block with grid-stride loops over at
most ``MAX_BLOCKS`` blocks; a reduction block has ``THREADS`` threads (one output, or
``COLUMNS`` outputs side by side); the GEMM (see :mod:`.gemm`) uses 16 x 16 threads. Under
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) every CUDA thread is a Python thread, so the
same kernels run with 4 threads per block (2 x 2 for the GEMM and the column reductions) and
at most 2 blocks for the 1-D kernels: the code paths (strided loops, several blocks, tree
reductions, partial tiles) are the same, only the sizes are smaller.
"""
import math
import warnings
import weakref

import numpy as np
from numba import config, cuda, float32, float64

from ..contract import Activation

SIM = bool(config.ENABLE_CUDASIM)
"""True when the kernels run in Numba's CUDA simulator instead of on a GPU."""

THREADS = 4 if SIM else 256          # threads per block of 1-D kernels and reductions (power of 2)
COLUMNS = 2 if SIM else 32           # outputs per block of column reductions (THREADS // COLUMNS rows)
MAX_BLOCKS = 2 if SIM else 4096      # 1-D kernels loop over the rest (grid-stride loops)

IDENTITY = int(Activation.IDENTITY)
RELU = int(Activation.RELU)
SIGMOID = int(Activation.SIGMOID)
TANH = int(Activation.TANH)
"""The :class:`~fastnn.kernels.contract.Activation` codes as plain ints, the compile-time
constants the device functions branch on (derived from the enum, never retyped)."""

NUMBA_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


# --------------------------------------------------------------------------- host side


def is_device_array(a):
    """True for a Numba device array (or the simulator's stand-in), False for host arrays."""
    return not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host")


_flat_views = weakref.WeakKeyDictionary()


def flat(a):
    """1-D view (no copy) of a C-contiguous device array ``a``.

    Raises TypeError for a host array (it would be copied to the device behind the caller's
    back on every launch) and ValueError for a non-contiguous view. A view costs more to make
    (~15 us) than many kernels take to run, so the views of long-lived buffers (parameters,
    layer buffers) are made once and kept as long as the array lives.
    """
    if a.__class__ is not np.ndarray:
        try:
            return _flat_views[a]
        except (KeyError, TypeError):     # not seen yet; or unhashable (the simulator's arrays)
            pass
    if not is_device_array(a):
        raise TypeError(f"the cuda backend expects device arrays, got {type(a).__name__}; "
                        f"move it with to_device() first")
    if not a.is_c_contiguous():
        raise ValueError(f"the cuda backend expects C-contiguous arrays, got a view of shape "
                         f"{tuple(a.shape)} with strides {tuple(a.strides)}")
    if a.ndim == 1:
        return a
    view = a.reshape(a.size)
    try:
        _flat_views[a] = view              # the view does not refer to a: no cycle, no leak
    except TypeError:
        pass
    return view


def act_code(act):
    """The int code of an :class:`~fastnn.kernels.contract.Activation` argument (a member or
    its int); ValueError for anything else, so no unknown code reaches a kernel."""
    return int(Activation(act))


def scalar(a, value):
    """``value`` as a NumPy scalar of ``a``'s dtype, so kernels stay in that precision."""
    return a.dtype.type(value)


def grid_1d(n):
    """(blocks, threads) for a grid-stride loop over ``n`` elements (n >= 1)."""
    return max(1, min(MAX_BLOCKS, -(-n // THREADS))), THREADS


_specialised = {}

# Numba warns at every launch of fewer than 128 blocks that the GPU will be under-used. The
# one-block reductions (losses, metrics) and the small grids of small batches are small by
# design, and warnings.warn at every launch costs time: that one advisory is silenced.
warnings.filterwarnings("ignore", message=r"Grid size \d+ will likely result in GPU under-utilization")


def _type_key(a):
    """What Numba's type of a kernel argument depends on, cheaply: dtype, ndim and contiguity of
    an array, the dtype of a NumPy scalar, the length of a tuple, else the Python type."""
    dtype = getattr(a, "dtype", None)
    if dtype is not None:
        ndim = a.ndim
        return (dtype.str, ndim, ndim == 0 or a.is_c_contiguous())
    if type(a) is tuple:
        return (tuple, len(a))
    return type(a)


def launch(kernel, grid, block, *args):
    """``kernel[grid, block](*args)``, with the kernel specialised once per set of argument
    types (:meth:`numba.cuda.dispatcher.CUDADispatcher.specialize`): a specialised kernel skips
    Numba's type inference of every argument at every launch (~10 us per device array, more
    than many of these kernels take to run). The simulator launches the kernel as it is."""
    if SIM:
        kernel[grid, block](*args)
        return
    key = (kernel,) + tuple(_type_key(a) for a in args)
    fast = _specialised.get(key)
    if fast is None:
        try:
            fast = kernel.specialize(*args)
        except Exception:                 # an older or newer numba.cuda: plain launches
            fast = kernel
        _specialised[key] = fast
    fast[grid, block](*args)


def launch_1d(kernel, n, *args):
    """:func:`launch` over a grid-stride loop of ``n`` elements; nothing when ``n == 0``."""
    if n > 0:
        blocks, threads = grid_1d(n)
        launch(kernel, blocks, threads, *args)


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
def larger(a, b):
    """The larger of a and b (b when either is NaN). The builtin max() is not used in kernels:
    in Numba's built-in CUDA target (0.68) it fails to compile for a GPU."""
    return a if a > b else b


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
