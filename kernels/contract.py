"""The backend contract: what every kernel module (``reference``, ``cpu``, ``cuda``) provides.

A backend is a module with every op below, with the same signature (names, order and
defaults of the parameters), and the capability attributes of :data:`CAPABILITIES`. The model
layer (``fastnn``) reaches a backend only through ``fastnn.backend.get_backend`` and calls
nothing else of it. ``tests/test_contract.py`` checks every available backend against this
file, signature by signature, and reports the ops a backend takes from the reference.

Conventions of every op
-----------------------
* Arrays are C-contiguous, float32 or float64 (one dtype per call; integer arrays are int64
  labels/indices or intp argmax buffers), host ``numpy.ndarray`` on host backends and device
  arrays on ``cuda`` (``HOST_ARRAYS`` False).
* Rows are samples: ``(N, F)`` or images ``(N, C, H, W)``. Dense weight ``(F_in, F_out)``,
  conv weight ``(F, C, kh, kw)``.
* **Buffer ownership**: the caller (a layer, a loss, an optimizer) allocates every output
  and work buffer, once per shape, with the backend's own ``empty``/``zeros``, and owns it.
  An op writes its outputs and returns None; losses and reductions return a Python scalar.
  Parameter gradients are written, or added to when ``accumulate=True``. Nothing is
  allocated per call on the accelerated backends except where an op's docstring says so.
* Activation codes are :class:`Activation` members (ints), loss codes :class:`Loss`
  members, so the compiled loops of every backend branch on the same numbers.
* Errors: kernels raise only ``ValueError``/``TypeError`` for arrays they cannot take;
  checking user input is the model layer's job (at fit/predict/load).
"""
import collections
import enum
import inspect

import numpy as np


class Activation(enum.IntEnum):
    """The activations that fuse into a Dense or Conv2D kernel (``act`` arguments)."""
    IDENTITY = 0
    RELU = 1
    SIGMOID = 2
    TANH = 3

    @classmethod
    def of(cls, value):
        """``Activation`` from a member, its code or its lower-case name ("relu")."""
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown fusable activation {value!r}; choose one of "
                                 f"{[m.name.lower() for m in cls]}") from None
        return cls(value)


class Loss(enum.IntEnum):
    """The losses a compiled training epoch computes inside its loop (``loss_code``)."""
    CROSS_ENTROPY = 0
    MSE = 1
    BCE_WITH_LOGITS = 2


class Cell(enum.IntEnum):
    """The recurrent cells of ``recurrent_forward`` / ``recurrent_backward`` (``cell``), with
    PyTorch's gates in PyTorch's order: RNN (1 gate), LSTM (i, f, g, o), GRU (r, z, n)."""
    RNN_TANH = 0
    RNN_RELU = 1
    LSTM = 2
    GRU = 3

    @property
    def gates(self):
        """G: the number of gates (weight_ih is (F, G*H))."""
        return {Cell.LSTM: 4, Cell.GRU: 3}.get(self, 1)

    def work_width(self, hidden):
        """Width of the ``gates`` buffer the forward keeps for the backward: H for the RNN,
        4H for the LSTM (i, f, g, o) and the GRU (r, z, n and the n gate's h' W_hn + b_hn)."""
        return hidden if self.gates == 1 else 4 * hidden


class ThreadPool(str, enum.Enum):
    """Which thread pool does a backend's parallel work (see ``fastnn.kernels.threads``)."""
    BLAS = "blas"       # OpenBLAS's own threads (NumPy code; cuda's host-side work)
    NUMBA = "numba"     # Numba's threads split the work; OpenBLAS runs on one thread


CAPABILITIES = {
    "NAME": "the backend's name in the registry: 'numpy', 'cpu' or 'cuda'",
    "HOST_ARRAYS": "True when arrays are numpy.ndarray (to_device/to_host are the identity)",
    "THREAD_POOL": "a ThreadPool: the pool made active before its kernels run",
    "COMPILED_EPOCH_LOSSES": "frozenset of Loss codes compiled_epoch_steps handles "
                             "(empty: no compiled epoch; the model layer runs layer by layer)",
    "check_available": "callable raising BackendUnavailableError with the reason when the "
                       "backend cannot run on this machine",
}
"""Declared attributes of every backend module (not probed with getattr): name -> meaning."""


# =========================================================================== arrays


def empty(shape, dtype):
    """A new uninitialised array of ``shape`` and ``dtype`` on this backend (allocates)."""


def zeros(shape, dtype):
    """A new zero-filled array (allocates)."""


def to_device(a):
    """Host array -> this backend's array (the same object on host backends)."""


def to_host(a):
    """This backend's array -> host array (the same object on host backends)."""


def copy_into(dst, src):
    """``dst[...] = src``; ``src`` may be a host array."""


def take_rows(a, idx, out):
    """``out[i] = a[idx[i]]``: gather a mini-batch. a (N, ...), idx (B,) int64, out (B, ...)."""


# =========================================================================== dense


def dense_forward(x, w, b, out):
    """``out = x @ w + b``. x (N, I), w (I, O), b (O,), out (N, O) written."""


def dense_backward(x, w, dy, dx, dw, db, accumulate=False):
    """Gradients of ``x @ w + b``: dy (N, O); dx (N, I) written or None;
    dw (I, O), db (O,) written, or added when ``accumulate``."""


def dense_act_forward(x, w, b, out, act):
    """``out = act(x @ w + b)``, ``act`` an :class:`Activation`; shapes as dense_forward."""


def dense_act_backward(x, w, y, dy, dz, dx, dw, db, act, accumulate=False):
    """Backward of dense_act_forward from its output y (N, O): dz (N, O) work buffer
    (receives dy * act'), then as dense_backward."""


# =========================================================================== activations
# forward(x, out): out written, any shape; backward(x, y, dy, dx): from the input x and the
# output y of the forward, dx written (x may be None for the fusable ones).


def identity_forward(x, out):
    """out = x."""


def identity_backward(x, y, dy, dx):
    """dx = dy."""


def sigmoid_forward(x, out):
    """out = 1 / (1 + exp(-x))."""


def sigmoid_backward(x, y, dy, dx):
    """dx = dy * y * (1 - y)."""


def tanh_forward(x, out):
    """out = tanh(x)."""


def tanh_backward(x, y, dy, dx):
    """dx = dy * (1 - y^2)."""


def relu_forward(x, out):
    """out = max(x, 0)."""


def relu_backward(x, y, dy, dx):
    """dx = dy where y > 0, else 0."""


def leaky_relu_forward(x, out, negative_slope=0.01):
    """out = x where x > 0, else negative_slope * x."""


def leaky_relu_backward(x, y, dy, dx, negative_slope=0.01):
    """dx = dy where x > 0, else negative_slope * dy."""


def prelu_forward(x, a, out):
    """out = x where x > 0, else a * x; a (1,) shared or (C,) along axis 1 of x."""


def prelu_backward(x, a, dy, dx, da, accumulate=False):
    """dx written; da (shape of a) = sum of dy * x where x <= 0, written or added."""


def softmax_forward(x, out):
    """Row-wise softmax of (N, K)."""


def softmax_backward(x, y, dy, dx):
    """dx = y * (dy - sum(dy * y)) per row."""


def log_softmax_forward(x, out):
    """Row-wise log-softmax of (N, K)."""


def log_softmax_backward(x, y, dy, dx):
    """dx = dy - exp(y) * sum(dy) per row."""


def maxout_forward(x, out, argmax, pieces):
    """Max over groups of ``pieces`` features: x (N, F * pieces), out (N, F), argmax (N, F)
    intp written (the winner's index in its group, first on ties)."""


def maxout_backward(argmax, dy, dx, pieces):
    """dx (N, F * pieces) written: dy routed to each group's winner, 0 elsewhere."""


# =========================================================================== losses and metrics
# Averaged over the N samples (or, with class weights, the weighted mean); ``grad`` (shape of
# the output) is written with the gradient of that mean; the value is returned as a float.


def mse_loss(a, y, grad):
    """Mean over samples of 1/2 ||y - a||^2. a, y, grad (N, K)."""


def cross_entropy_loss(logits, labels, grad, weight=None):
    """Softmax + NLL of int64 ``labels`` (N,) for logits (N, K); ``weight`` (K,) per-class
    weights (PyTorch's weighted mean) or None."""


def nll_loss(logp, labels, grad, weight=None):
    """NLL of int64 ``labels`` given log-probabilities (N, K); ``weight`` as cross_entropy_loss."""


def bce_with_logits_loss(logits, y, grad):
    """Mean over samples of the summed binary cross-entropy of sigmoid(logits) vs y (N, K)."""


def count_correct(out, labels):
    """Number of rows of out (N, K) whose arg-max equals labels (N,); returns an int."""


# =========================================================================== convolution and pooling
# ``stride``, ``kernel``: pairs (H, W); ``padding``: 4-tuple (top, bottom, left, right) as made
# by fastnn.kernels.geometry.resolve_padding; output sizes by geometry.output_hw.


def conv2d_needs_cols(stride, padding, kernel_size, x_shape=None, out_channels=None, dtype=None):
    """Whether this backend's conv2d kernels use the ``cols``/``dcols`` work buffers for this
    geometry; when False the layer passes None and allocates nothing. Given the batch's
    ``x_shape`` (N, C, H, W), ``out_channels`` and ``dtype`` a backend may decide per shape (the
    cpu backend measures its direct kernels against im2col + BLAS); the kernels then follow the
    same decision when handed the buffers, and run without them when handed None."""


def im2col(x, kh, kw, stride, padding, cols):
    """cols (N, C * kh * kw, OH * OW) written with the windows of x (N, C, H, W)."""


def col2im(cols, kh, kw, stride, padding, dx):
    """Adjoint of im2col: dx (N, C, H, W) written with the folded columns (overlaps add)."""


def conv2d_forward(x, w, b, out, stride, padding, cols):
    """Cross-correlation: x (N, C, H, W), w (F, C, kh, kw), b (F,), out (N, F, OH, OW) written;
    cols: work buffer (or None, see conv2d_needs_cols) handed unchanged to the backward."""


def conv2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """dw, db written or added; dx written or None; dcols scratch shaped like cols."""


def conv2d_act_forward(x, w, b, out, stride, padding, cols, act):
    """out = act(conv2d(x, w) + b), ``act`` an :class:`Activation`."""


def conv2d_act_backward(x, w, y, dy, dz, dx, dw, db, stride, padding, cols, dcols, act,
                        accumulate=False):
    """Backward of conv2d_act_forward from its output y; dz work buffer shaped like y."""


def maxpool2d_forward(x, out, argmax, kernel, stride, padding):
    """Window maxima: out (N, C, OH, OW) and argmax (intp, flat index h * W + w in the plane)."""


def maxpool2d_backward(argmax, dy, dx):
    """dx (N, C, H, W) written: each dy routed to its window's winner, overlaps add."""


def avgpool2d_forward(x, out, kernel, stride, padding):
    """Window means (zero padding counted)."""


def avgpool2d_backward(dy, dx, kernel, stride, padding):
    """dx written: each dy spread evenly over its window, overlaps add."""


# =========================================================================== convolution variants
# ``dilation``: a pair (H, W); a dilated kernel covers d * (k - 1) + 1 positions, so output sizes
# are geometry.output_hw with that covered size. ``cols``: (N, C * kh * kw, OH * OW) as im2col's.


def im2col_dilated(x, kh, kw, stride, padding, dilation, cols):
    """cols (N, C * kh * kw, OH * OW) written with the dilated windows of x (N, C, H, W)."""


def col2im_dilated(cols, kh, kw, stride, padding, dilation, dx):
    """Adjoint of im2col_dilated: dx (N, C, H, W) written (overlaps add)."""


def conv2d_ex_forward(x, w, b, out, stride, padding, dilation, groups, cols):
    """Grouped, dilated cross-correlation: w (F, C / groups, kh, kw), out (N, F, OH, OW)
    written; cols left holding im2col_dilated(x) for the backward."""


def conv2d_ex_backward(x, w, dy, dx, dw, db, stride, padding, dilation, groups, cols, dcols,
                       accumulate=False):
    """dw, db written or added; dx written or None; dcols scratch shaped like cols."""


def conv_transpose2d_forward(x, w, b, out, stride, padding, cols):
    """Transposed convolution: x (N, C, H, W), w (C, O, kh, kw), out (N, O, OH, OW) written;
    padding: the 4-tuple of the convolution mapping out back to x; cols (N, O * kh * kw, H * W)
    work."""


def conv_transpose2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, accumulate=False):
    """dw (C, O, kh, kw), db (O,) written or added; dx written or None; cols work (overwritten)."""


def locally_connected2d_forward(x, w, b, out, stride, cols):
    """Unshared convolution (no padding): w (OH, OW, F, C, kh, kw), b (F, OH, OW),
    out (N, F, OH, OW) written; cols left holding im2col(x)."""


def locally_connected2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """dw, db written or added; dx written or None; dcols scratch shaped like cols."""


def tiled_conv2d_forward(x, w, b, out, stride, cols):
    """Tiled convolution (no padding): position (p, q) uses w[p % t, q % t]; w (t, t, F, C, kh,
    kw), b (F,), out (N, F, OH, OW) written; cols left holding im2col(x)."""


def tiled_conv2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """dw, db written or added; dx written or None; dcols scratch shaped like cols."""


def lppool2d_forward(x, out, norm_type, kernel, stride):
    """Power-average pooling (PyTorch's lp_pool2d, no padding): out = (window sum of x^p)^(1/p)."""


def lppool2d_backward(x, y, dy, dx, norm_type, kernel, stride):
    """dx (N, C, H, W) written from the forward's input x and output y."""


# =========================================================================== regularization


def dropout_mask(key, p, mask):
    """Write an inverted-dropout mask: ``mask`` (any shape, contiguous, float) element i gets
    1 / (1 - p) where ``counter_rng.counter_bits(key, i) >= counter_rng.keep_threshold(p)``
    (probability 1 - p) and 0 elsewhere. ``key``: int in [0, 2**63) (the layer draws it from
    the model's stream); the mask depends on (key, p, mask.size) only, the same on every
    backend and at any thread count."""


def dropout_forward(x, mask, out):
    """out = x * mask (mask holds 0 or 1 / (1 - p), from :func:`dropout_mask`)."""


def dropout_backward(mask, dy, dx):
    """dx = dy * mask."""


def batchnorm_forward_train(x, gamma, beta, out, mean, invstd, running_mean, running_var,
                            momentum=0.1, eps=1e-5):
    """Batch statistics per feature of (N, F) / channel of (N, C, H, W): out written, mean and
    invstd (C,) written for the backward, running estimates (C,) updated in place."""


def batchnorm_forward_eval(x, gamma, beta, out, running_mean, running_var, eps=1e-5):
    """out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta."""


def batchnorm_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, accumulate=False):
    """dgamma, dbeta (C,) written or added; dx written or None."""


# =========================================================================== recurrent
# Batch-first sequences x (N, T, F), states (N, T, H); weights as Dense's (PyTorch's
# transposed): w_ih (F, G*H), w_hh (H, G*H), b_ih, b_hh (G*H,) with G = cell.gates.


def recurrent_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, cell,
                      reverse=False):
    """Unroll ``cell`` (a :class:`Cell`) over x from h0 (N, H) and, for the LSTM, c0 (N, H)
    (else None): hs (N, T, H) written with the state after each step, cs (N, T, H) the LSTM's
    cell states (else None), h_last (N, H) the final state (or None), gates
    (N, T, cell.work_width(H)) written for the backward, hw (N, G*H) work. ``reverse``: read
    the steps from T - 1 down to 0 (hs[:, t] is still the state after step t). hs, h_last (and
    the backward's dhs, dh_last) may be views with a unit last stride (one direction's half of
    a bidirectional layer's output)."""


def recurrent_backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih,
                       dw_hh, db_ih, db_hh, dgates, dgh, dh, dc, cell, reverse=False,
                       accumulate=False, add_dx=False):
    """Back-propagation through time of recurrent_forward (its x, h0, c0, hs, cs, gates): dhs
    (N, T, H) the gradient w.r.t. hs or None, dh_last (N, H) w.r.t. the final state or None;
    dx (N, T, F) written (added to when ``add_dx``) or None; dh0, dc0 (N, H) written or None;
    dw_ih, dw_hh, db_ih, db_hh written or added (``accumulate``); work buffers dgates (N, T, G*H), dgh (N, G*H), dh (N, H), dc (N, H)
    (LSTM; else None)."""


def embedding_forward(ids, w, out):
    """out[n, t] = w[ids[n, t]]: ids (N, T) integer ids held in a float array of w's dtype (as
    Sequential passes inputs), w (V, D), out (N, T, D); ids are in [0, V) (checked by the layer)."""


def embedding_backward(ids, dy, dw, accumulate=False):
    """dw (V, D) written or added: row v gets the sum of dy[n, t] (N, T, D) over ids[n, t] == v."""


# =========================================================================== optimizers
# Flat runs of the parameter buffer p, gradient g and state buffers (same length, the
# parameter dtype), updated in place with PyTorch's rule (see fastnn.optim); a state buffer
# an option does not need may be None.


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
             l1=0.0, first_step=False):
    """SGD with momentum / Nesterov / L2 / L1; buf is the momentum buffer."""


def adagrad_step(p, g, state_sum, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1):
    """AdaGrad; ``step`` counts from 1."""


def rmsprop_step(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, nesterov=False):
    """RMSProp, centered and with (Nesterov) momentum."""


def adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, step=1, amsgrad=False, decoupled=False):
    """Adam (decoupled=False) or AdamW (True), with AMSGrad; ``step`` counts from 1."""


def adadelta_step(p, g, square_avg, acc_delta, lr, rho=0.9, eps=1e-6, weight_decay=0.0):
    """AdaDelta (PyTorch's Adadelta): square_avg and acc_delta the running averages of g'^2
    and of the squared updates."""


def sum_of_squares(x):
    """sum(x ** 2) of a flat run as a Python float."""


def scale_inplace(x, factor):
    """x *= factor."""


def renorm_units(w, max_norm, unit_axis):
    """Max-norm constraint: each unit along ``unit_axis`` rescaled to norm <= max_norm."""


# =========================================================================== the compiled epoch


def compiled_epoch_steps(layers, data, work, loss_code, first, stop, lr, fold_sgd, stats, parts):
    """Train mini-batches ``first`` .. ``stop - 1`` of a dense stack in compiled code.

    Only on backends whose ``COMPILED_EPOCH_LOSSES`` holds ``loss_code`` (others need not
    define it). ``layers``: array of :data:`COMPILED_LAYER` records, one per Dense layer in
    order; ``data``: :class:`EpochData`; ``work``: :class:`EpochWork` (all made and owned by
    the model layer, once per fit); ``loss_code``: a :class:`Loss`. With ``fold_sgd`` the
    step is plain SGD with rate ``lr`` folded into the weight-gradient GEMMs; otherwise one
    batch per call (``stop == first + 1``) and ``data.grads`` receives its gradients for the
    optimizer. ``stats`` float64 (3,): loss sum, number correct (added to), index of the first
    batch whose loss was not finite or -1 (written; that batch is not applied). ``parts``:
    threads to split the work over.
    """


def dense_gemm_plan(batch_size, n_in, n_out, dtype, parts):
    """How ``compiled_epoch_steps`` computes the GEMMs of a Dense layer (n_in -> n_out) at
    ``batch_size`` rows of ``dtype`` split over ``parts`` threads: an int the model layer stores
    in the layer's ``COMPILED_LAYER.gemm`` when it builds the table, opaque to it (0: the
    backend's default). Only on backends with a compiled epoch; it may measure the candidates
    the first time a shape is asked (the cpu backend: a few milliseconds, then remembered)."""


COMPILED_LAYER = np.dtype([("weight", np.int64), ("bias", np.int64), ("n_in", np.int64),
                           ("n_out", np.int64), ("act", np.int64), ("work", np.int64),
                           ("gemm", np.int64)])
"""One Dense layer of a compiled epoch: offsets of its weight (n_in, n_out) and bias (n_out,)
in the flat parameter and gradient buffers, its sizes, its fused :class:`Activation`, the
offset of its (batch_size, n_out) output and output gradient in ``EpochWork.ws`` / ``dws``,
and its GEMM plan (:func:`dense_gemm_plan`)."""

EpochData = collections.namedtuple("EpochData", ["x", "labels", "targets", "order", "params",
                                                 "grads"])
"""What a compiled epoch trains on: x (N, F) inputs; labels (N,) int64 or empty (0,); targets
(N, K) float or empty (0, 0) (cross-entropy takes labels); order (N,) int64 sample order;
params, grads the model's flat buffers."""

EpochWork = collections.namedtuple("EpochWork", ["ws", "dws", "xb", "lb", "tb"])
"""Work buffers of a compiled epoch: ws, dws (flat, batch_size * sum of n_out) for the layer
outputs and their gradients; xb (batch_size, F), lb (batch_size,) int64, tb (batch_size, K)
the gathered batch."""


OPS = tuple(name for name, obj in list(globals().items())
            if inspect.isfunction(obj) and obj.__module__ == __name__ and not name.startswith("_"))
"""Names of every op of the contract, in the order above."""

OPTIONAL_OPS = ("compiled_epoch_steps", "dense_gemm_plan")
"""Ops a backend provides only when its capabilities say so."""


def signature(name):
    """The contract's ``inspect.Signature`` of op ``name``."""
    return inspect.signature(globals()[name])
