"""CPU backend: Numba kernels calling BLAS directly, fused and allocation-free.

Every op of :mod:`fastnn.kernels.contract` is compiled here, except the host memory ops of
``FROM_REFERENCE``, which are the same on every host backend. The tests check every op here
against the reference. The ops live in topic modules of the same names as the reference's:

* :mod:`.memory`: the gather of a mini-batch's rows;
* :mod:`.dense`: the dense layer, x @ W and x.T @ dz in SIMD registers or through BLAS;
* :mod:`.activations`: the activations, and the fused activation code of dense and conv;
* :mod:`.losses`: the losses and the accuracy count;
* :mod:`.conv`: convolution (direct SIMD kernels or im2col + BLAS) and pooling;
* :mod:`.conv_variants`: dilated, grouped, transposed, locally connected, tiled conv, LP pooling;
* :mod:`.regularization`: dropout and batch normalization;
* :mod:`.recurrent`: the recurrent cells (BPTT in compiled code) and the embedding lookup;
* :mod:`.optimizers`: the fused optimizer updates, the gradient-clipping and max-norm helpers;

and, with no reference twin, :mod:`.compiled_epoch` (the optional op ``compiled_epoch_steps``:
training steps of a dense stack with no Python per step).

Private helpers:

* :mod:`.common`: small shared Numba helpers;
* :mod:`.blas`: BLAS GEMM called from compiled code;
* :mod:`.simd`: vector intrinsics (64-byte vectors as Numba values);
* :mod:`.gemm_simd`: x @ W and x.T @ dz in SIMD registers;
* :mod:`.gemm_choice`: that kernel or BLAS per dense product, measured here (gemm-choice.json);
* :mod:`.conv_direct`: stride-1 convolutions in SIMD registers, without im2col;
* :mod:`.conv_choice`: those kernels or im2col + BLAS per stride-1 conv shape, measured alike;
* :mod:`.parallel`: work split over the threads.

Threads: the parallel work is Numba's and BLAS runs single-threaded (``THREAD_POOL``, see
:mod:`.parallel`), layer by layer and in the compiled epoch alike.
"""
from .. import contract as _contract
from ..contract import Loss, ThreadPool
from ..reference.memory import copy_into, empty, to_device, to_host, zeros
from .activations import (identity_backward, identity_forward, leaky_relu_backward,
                          leaky_relu_forward, log_softmax_backward, log_softmax_forward,
                          maxout_backward, maxout_forward, prelu_backward, prelu_forward,
                          relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                          softmax_backward, softmax_forward, tanh_backward, tanh_forward)
from .compiled_epoch import compiled_epoch_steps
from .conv import (avgpool2d_backward, avgpool2d_forward, col2im, conv2d_act_backward,
                   conv2d_act_forward, conv2d_backward, conv2d_forward, conv2d_needs_cols, im2col,
                   maxpool2d_backward, maxpool2d_forward)
from .conv_variants import (col2im_dilated, conv2d_ex_backward, conv2d_ex_forward,
                            conv_transpose2d_backward, conv_transpose2d_forward, im2col_dilated,
                            locally_connected2d_backward, locally_connected2d_forward,
                            lppool2d_backward, lppool2d_forward, tiled_conv2d_backward,
                            tiled_conv2d_forward)
from .dense import (dense_act_backward, dense_act_forward, dense_backward, dense_forward,
                    dense_gemm_plan)
from .losses import bce_with_logits_loss, count_correct, cross_entropy_loss, mse_loss, nll_loss
from .memory import take_rows
from .optimizers import (adadelta_step, adagrad_step, adam_step, renorm_units, rmsprop_step,
                         scale_inplace, sgd_step, sum_of_squares)
from .recurrent import (embedding_backward, embedding_forward, recurrent_backward,
                        recurrent_forward)
from .regularization import (batchnorm_backward, batchnorm_forward_eval, batchnorm_forward_train,
                             dropout_backward, dropout_forward, dropout_mask)

NAME = "cpu"
HOST_ARRAYS = True
THREAD_POOL = ThreadPool.NUMBA
COMPILED_EPOCH_LOSSES = frozenset({Loss.CROSS_ENTROPY, Loss.MSE, Loss.BCE_WITH_LOGITS})

FROM_REFERENCE = ("empty", "zeros", "to_device", "to_host", "copy_into")
"""The ops this backend takes from the reference (host arrays: the same code)."""


def check_available():
    """Where Numba imports (this package did), the cpu backend runs: nothing to check."""


__all__ = list(_contract.OPS)
"""Every op of this backend: the contract's, in its order, the compiled epoch included."""
