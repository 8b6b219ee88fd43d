"""CUDA backend: Numba CUDA kernels on device arrays.

Every function of :mod:`fastnn.kernels.reference` with the same signature; arrays in and out
are Numba device arrays (``empty``/``zeros``/``to_device`` make them, ``to_host`` copies back).
Parameters, gradients, optimizer state and activations stay on the device during ``fit``; the
data go to the device once, the shuffled order once per epoch, and each loss or metric copies
back one scalar.

Modules: :mod:`.memory` (allocation, copies, the batch gather), :mod:`.gemm` (tiled GEMM with a
fused epilogue; the dense layer), :mod:`.reduce` (per-channel reductions), :mod:`.elementwise`
(activations, dropout), :mod:`.losses` (fused losses and metrics), :mod:`.optimizers`,
:mod:`.conv` (convolution and pooling), :mod:`.normalization` (batch normalization),
:mod:`.common` (launch geometry and shared device functions).

Launches per training step of the MLP ``Dense+ReLU, Dense+ReLU, Dense`` (784-400-100-10) with
cross-entropy and SGD, in the Python loop of :mod:`fastnn.plan` (``GenericEpoch``): **17**

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

``check_available`` raises :class:`fastnn.errors.BackendUnavailableError` when numba.cuda
cannot run kernels (no GPU, no driver) and the simulator (``NUMBA_ENABLE_CUDASIM=1``) is off.
Any reference op added later without a CUDA kernel falls back to the reference on host copies
(listed in ``HOST_FALLBACKS``), so the backend stays complete.
"""
import functools
import inspect

import numpy as np

from fastnn.errors import BackendUnavailableError

from .. import reference as _reference
from .common import SIM, is_device_array
from .conv import (avgpool2d_backward, avgpool2d_forward, col2im, conv2d_backward,  # noqa: F401
                   conv2d_forward, im2col, maxpool2d_backward, maxpool2d_forward)
from .elementwise import (dropout_backward, dropout_forward, identity_backward,  # noqa: F401
                          identity_forward, leaky_relu_backward, leaky_relu_forward,
                          log_softmax_backward, log_softmax_forward,
                          maxout_backward, maxout_forward, prelu_forward,
                          relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                          softmax_backward, softmax_forward, tanh_backward, tanh_forward)
from .gemm import dense_act_backward, dense_act_forward, dense_backward, dense_forward  # noqa: F401
from .losses import (bce_with_logits_loss, count_correct, cross_entropy_loss,  # noqa: F401
                     mse_loss, nll_loss, weighted_cross_entropy_loss, weighted_nll_loss)
from .memory import copy_into, empty, take_rows, to_device, to_host, zeros  # noqa: F401
from .normalization import (batchnorm_backward, batchnorm_forward_eval,  # noqa: F401
                            batchnorm_forward_train)
from .optimizers import adagrad_step, adam_step, rmsprop_step, scale_inplace, sgd_step  # noqa: F401
from .reduce import prelu_backward, renorm_units, sum_of_squares  # noqa: F401

ACTIVATIONS = {name: (globals()[name + "_forward"], globals()[name + "_backward"])
               for name in _reference.ACTIVATIONS}
"""The fusable activations, as in the reference: name -> (forward, backward)."""

conv2d_needs_cols = _reference.conv2d_needs_cols      # im2col + batched GEMM: always
conv2d_act_forward, conv2d_act_backward = _reference._fused_conv_act(
    conv2d_forward, conv2d_backward, ACTIVATIONS)


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


HOST_FALLBACKS = sorted(
    name for name, obj in vars(_reference).items()
    if inspect.isfunction(obj) and obj.__module__ == _reference.__name__
    and not name.startswith("_") and name not in globals())
"""Reference ops without a CUDA kernel yet, served by :func:`_host_fallback`."""

globals().update({name: _host_fallback(getattr(_reference, name)) for name in HOST_FALLBACKS})
