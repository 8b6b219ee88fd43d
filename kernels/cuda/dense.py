"""The dense layer on the device: the tiled GEMM of :mod:`.gemm` with the bias and the
activation fused into its epilogue, and the bias gradient (with the activation's backward fused
into it) from :mod:`.reduce`.

Same signatures as :mod:`fastnn.kernels.reference.dense`; ``act`` is an
:class:`~fastnn.kernels.contract.Activation`. Launches: forward 1; backward 3, or 2 without dx
(the bias sum, one GEMM per product).
"""
from .common import IDENTITY
from .gemm import BIAS_PER_COLUMN, gemm
from .reduce import act_backward_channel_sum, channel_sum


def dense_forward(x, w, b, out):
    """out = x @ w + b: one GEMM launch, the bias added in its epilogue.

    x : (N, in_features); w : (in_features, out_features); b : (out_features,);
    out : (N, out_features).
    """
    dense_act_forward(x, w, b, out, IDENTITY)


def dense_act_forward(x, w, b, out, act):
    """out = act(x @ w + b): one GEMM launch with bias and activation fused into the epilogue."""
    gemm(False, False, x, w, out, x.shape[0], w.shape[1], w.shape[0], bias=b,
         bias_mode=BIAS_PER_COLUMN, act=act)


def dense_backward(x, w, dy, dx, dw, db, accumulate=False):
    """dw (+)= x.T @ dy, db (+)= sum(dy, axis=0), dx = dy @ w.T (skipped when dx is None).

    3 launches (2 without dx): the column sum, and one GEMM for each product.
    """
    channel_sum(dy, db, accumulate)
    _dense_gemms(x, w, dy, dx, dw, accumulate)


def dense_act_backward(x, w, y, dy, dz, dx, dw, db, act, accumulate=False):
    """dz = dy * act'(.) from the output y, db (+)= sum(dz) (one launch for both), then the two
    GEMMs of :func:`dense_backward` with dz. dz has the shape of y."""
    act_backward_channel_sum(y, dy, dz, db, act, accumulate)
    _dense_gemms(x, w, dz, dx, dw, accumulate)


def _dense_gemms(x, w, dz, dx, dw, accumulate):
    n_rows, n_in, n_out = x.shape[0], w.shape[0], w.shape[1]
    # dw (in, out) = x.T @ dz: op(A) = x.T with x stored (N, in) = (k, m)
    gemm(True, False, x, dz, dw, n_in, n_out, n_rows, beta=1.0 if accumulate else 0.0)
    if dx is not None:
        # dx (N, in) = dz @ w.T: op(B) = w.T with w stored (in, out) = (n, k)
        gemm(False, True, dz, w, dx, n_rows, n_in, n_out)
