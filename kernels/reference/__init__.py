"""Plain-NumPy reference of every fastnn op: the oracle for tests and the baseline for benchmarks.

Written for clarity, not speed. Every function writes into the output buffers it is given
(``out=``, ``dx=``, ``dw=`` ...) and returns nothing, unless it is a loss, which returns the
loss as a Python float. The accelerated backends (``kernels/cpu``, ``kernels/cuda``) expose
the same functions with the same signatures (written down in :mod:`fastnn.kernels.contract`),
in modules of the same topic names:

* :mod:`.memory` - empty, zeros, to_device, to_host, copy_into, take_rows
* :mod:`.dense` - the dense layer, plain and with a fused activation
* :mod:`.activations` - element-wise and row-wise activations, ``ACTIVATIONS`` (the fusable ones)
* :mod:`.losses` - losses (class-weighted with ``weight=``) and count_correct
* :mod:`.conv` - im2col / col2im, convolution (plain and fused) and pooling
* :mod:`.conv_variants` - dilated / grouped, transposed, locally connected and tiled
  convolution, LP pooling
* :mod:`.regularization` - dropout and batch normalization
* :mod:`.recurrent` - RNN, LSTM and GRU unrolled over a sequence (BPTT), the embedding lookup
* :mod:`.optimizers` - the update rules and the helpers of clipping and max-norm

Conventions
-----------
* Rows are samples: ``x`` is ``(N, features)``; images are ``(N, C, H, W)``.
* Dense weight ``w`` is ``(in_features, out_features)``, bias ``b`` is ``(out_features,)``.
* Gradients of parameters are written (``accumulate=False``) or added (``accumulate=True``).
* Losses are averaged over the ``N`` samples of the batch; the gradient they write is the
  gradient of that average.
* Activation backward functions get the activation's *output* ``y`` (and its input ``x``
  where the derivative needs it), the gradient ``dy`` w.r.t. the output, and write ``dx``.
* ``act`` arguments are :class:`fastnn.kernels.contract.Activation` members.
"""
from .. import contract as _contract
from ..contract import ThreadPool
from .activations import (ACTIVATIONS, identity_backward, identity_forward, leaky_relu_backward,
                          leaky_relu_forward, log_softmax_backward, log_softmax_forward,
                          maxout_backward, maxout_forward, prelu_backward, prelu_forward,
                          relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                          softmax_backward, softmax_forward, tanh_backward, tanh_forward)
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
from .recurrent import (embedding_backward, embedding_forward, recurrent_backward,
                        recurrent_forward)
from .optimizers import (adadelta_step, adagrad_step, adam_step, renorm_units, rmsprop_step,
                         scale_inplace, sgd_step, sum_of_squares)
from .regularization import (batchnorm_backward, batchnorm_forward_eval, batchnorm_forward_train,
                             dropout_backward, dropout_forward, dropout_mask)

NAME = "numpy"
HOST_ARRAYS = True
THREAD_POOL = ThreadPool.BLAS
COMPILED_EPOCH_LOSSES = frozenset()


def check_available():
    """The reference runs wherever NumPy imports: nothing to check."""


__all__ = [op for op in _contract.OPS if op not in _contract.OPTIONAL_OPS]
"""Every op of this backend: the contract's, in its order, less the optional compiled epoch."""
