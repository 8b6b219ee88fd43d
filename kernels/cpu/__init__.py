"""CPU backend: Numba kernels calling BLAS directly, fused and allocation-free.

Ops without an accelerated kernel here fall back to the NumPy reference, so the backend is
always complete; the tests check every op here against the reference.

Threads: the parallel work is Numba's and BLAS runs single-threaded (see :mod:`.parallel`),
layer by layer and in the compiled dense-stack epoch (:mod:`.mlp`) alike. Convolutions of
stride 1 and the dense layers' x @ W and x.T @ dz run in SIMD registers (:mod:`.simd`).
"""
from ..reference import *  # noqa: F401,F403  (fallbacks; overridden below)
from .conv import (avgpool2d_backward, avgpool2d_forward, col2im, conv2d_act_backward,  # noqa: F401
                   conv2d_act_forward, conv2d_backward, conv2d_forward, conv2d_needs_cols, im2col,
                   maxpool2d_backward, maxpool2d_forward)
from .dense import dense_act_backward, dense_act_forward, dense_backward, dense_forward  # noqa: F401
from .elementwise import (bce_with_logits_loss, count_correct, cross_entropy_loss,  # noqa: F401
                          log_softmax_backward, log_softmax_forward, mse_loss, nll_loss,
                          relu_backward, relu_forward, sigmoid_backward, sigmoid_forward,
                          softmax_backward, softmax_forward, take_rows, tanh_backward, tanh_forward)
from .optimizers import (adagrad_step, adam_step, renorm_units, rmsprop_step,  # noqa: F401
                         scale_inplace, sgd_step, sum_of_squares)
from .compiled_epoch import dense_stack_steps  # noqa: F401
from .regularization import (batchnorm_backward, batchnorm_forward_eval,  # noqa: F401
                             batchnorm_forward_train, dropout_backward, dropout_forward,
                             weighted_cross_entropy_loss, weighted_nll_loss)

THREAD_POOL = "numba"   # read by fastnn.threads.use_backend
