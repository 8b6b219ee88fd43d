"""CUDA backend: Numba CUDA kernels on device arrays.

Every op of :mod:`fastnn.kernels.contract` with the contract's signature; arrays in and out are
Numba device arrays (``empty``/``zeros``/``to_device`` make them, ``to_host`` copies back).
Parameters, gradients, optimizer state and activations stay on the device during ``fit``; the
data go to the device once, the shuffled order once per epoch, and each loss or metric copies
back one scalar.

Modules, by topic with the same names as the reference's and the cpu backend's:
:mod:`.memory` (allocation, copies, the batch gather), :mod:`.dense` (the dense layer, plain
and with a fused activation), :mod:`.activations` (element-wise, row-wise and grouped
activations, PReLU's slope gradient), :mod:`.losses` (fused losses, class-weighted or not, and
count_correct), :mod:`.conv` (convolution, plain and fused, and pooling), :mod:`.conv_variants`
(grouped, dilated, transposed, locally connected and tiled convolution, LP pooling;
direct kernels),
:mod:`.regularization` (dropout, batch normalization), :mod:`.recurrent` (RNN, LSTM
and GRU, T + 1 launches forward and 2T + 4 backward, and the embedding), :mod:`.optimizers` (the fused updates,
the clipping and max-norm helpers). Private helpers: :mod:`.common` (launch geometry, flat
views, the activation device functions, the block reduction), :mod:`.gemm` (the tiled GEMM
with a fused epilogue, used by dense and conv), :mod:`.reduce` (the per-channel layout and
the bias-gradient sums).

Launches per training step of the MLP ``Dense+ReLU, Dense+ReLU, Dense`` (784-400-100-10) with
cross-entropy and SGD, in the Python loop of :mod:`fastnn.epochs` (``LoopEpoch``): **17**

* 3 gathers of the batch (inputs, targets, labels; the shuffled order is uploaded once per epoch),
* 3 forward GEMMs, each with bias and activation fused into its epilogue,
* 1 fused softmax + cross-entropy (loss, gradient and the reduction; one scalar copied back),
* 1 count of correct predictions (one scalar copied back),
* 8 backward: per layer one launch for dz = dy * act'(y) together with the bias gradient, one
  GEMM for the weight gradient, one GEMM for the input gradient (not for the first layer),
* 1 fused optimizer update over the flat parameter buffer.

Each further hidden layer adds 4. With a ``Flatten`` in front (``fastnn.models.mlp``) it is 18:
``Sequential`` then asks the first Dense for its input gradient, which only the Flatten
receives. The two scalar copies per step are the only points where the host waits for the
device. (Measured by ``tests/test_cuda.py::test_launches_per_training_step``.)

``check_available`` raises :class:`fastnn.kernels.errors.BackendUnavailableError` when
numba.cuda cannot run kernels (no GPU, no driver) and the simulator (``NUMBA_ENABLE_CUDASIM=1``)
is off. Any contract op added later without a CUDA kernel falls back to the reference on host
copies (listed in ``HOST_FALLBACKS``, empty today), so the backend stays complete.
"""
import functools
import inspect

import numpy as np

from .. import contract
from .. import reference as _reference
from ..contract import ThreadPool
from ..errors import BackendUnavailableError
from .activations import (identity_backward, identity_forward, leaky_relu_backward,
                          leaky_relu_forward, log_softmax_backward, log_softmax_forward,
                          maxout_backward, maxout_forward, prelu_backward, prelu_forward,
                          relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                          softmax_backward, softmax_forward, tanh_backward, tanh_forward)
from .common import SIM, is_device_array
from .conv import (avgpool2d_backward, avgpool2d_forward, col2im, conv2d_act_backward,
                   conv2d_act_forward, conv2d_backward, conv2d_forward, conv2d_needs_cols, im2col,
                   maxpool2d_backward, maxpool2d_forward)
from .conv_variants import (col2im_dilated, conv2d_ex_backward, conv2d_ex_forward,
                            conv_transpose2d_backward, conv_transpose2d_forward, im2col_dilated,
                            locally_connected2d_backward, locally_connected2d_forward,
                            lppool2d_backward, lppool2d_forward, tiled_conv2d_backward,
                            tiled_conv2d_forward)
from .dense import dense_act_backward, dense_act_forward, dense_backward, dense_forward
from .losses import bce_with_logits_loss, count_correct, cross_entropy_loss, mse_loss, nll_loss
from .memory import copy_into, empty, take_rows, to_device, to_host, zeros
from .optimizers import (adadelta_step, adagrad_step, adam_step, renorm_units, rmsprop_step,
                         scale_inplace, sgd_step, sum_of_squares)
from .recurrent import (embedding_backward, embedding_forward, recurrent_backward,
                        recurrent_forward)
from .regularization import (batchnorm_backward, batchnorm_forward_eval, batchnorm_forward_train,
                             dropout_backward, dropout_forward, dropout_mask)

NAME = "cuda"
HOST_ARRAYS = False
THREAD_POOL = ThreadPool.BLAS          # the host side is NumPy; the kernels run on the device
COMPILED_EPOCH_LOSSES = frozenset()    # no compiled epoch: the model layer runs layer by layer


def check_available():
    """Raise BackendUnavailableError with the reason when CUDA kernels cannot run here."""
    if SIM:
        return
    try:
        from numba import cuda
        ok = cuda.is_available()
        reason = None if ok else cuda.cuda_error()
    except Exception as exc:          # a broken driver or toolkit must not crash the caller
        ok, reason = False, exc
    if not ok:
        detail = str(reason).strip().splitlines()[0] if reason else "no CUDA GPU was found"
        raise BackendUnavailableError(
            f"backend 'cuda' needs an NVIDIA GPU with a working CUDA driver ({detail}); use "
            f"backend 'cpu', or set NUMBA_ENABLE_CUDASIM=1 before numba is imported to run the "
            f"CUDA kernels in Numba's (slow) simulator")


# --------------------------------------------------------------------------- host fallbacks


def _host_fallback(fn):
    """``fn`` (a reference op) on host copies of its device-array arguments; the arguments it
    changed are copied back. Slow (a transfer per argument), but correct."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = inspect.signature(fn).bind(*args, **kwargs).arguments
        host, before = dict(bound), {}
        for name, value in bound.items():
            if is_device_array(value):
                host[name] = value.copy_to_host()
                before[name] = host[name].copy()
        result = fn(**host)
        for name, old in before.items():
            if not np.array_equal(host[name], old, equal_nan=old.dtype.kind == "f"):
                bound[name].copy_to_device(host[name])
        return result

    return wrapper


HOST_FALLBACKS = sorted(name for name in contract.OPS
                        if name not in contract.OPTIONAL_OPS and name not in globals())
"""Contract ops without a CUDA kernel yet, served by :func:`_host_fallback` (none today)."""

globals().update({name: _host_fallback(getattr(_reference, name)) for name in HOST_FALLBACKS})

__all__ = [name for name in contract.OPS if name not in contract.OPTIONAL_OPS]
"""Every op of this backend (the ops of the contract, less the optional compiled epoch)."""
