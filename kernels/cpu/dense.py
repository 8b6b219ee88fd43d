"""Dense layer on the CPU: x @ W and x.T @ dz in SIMD registers (:mod:`.gemm_simd`) or through
BLAS, whichever :mod:`.gemm_choice` measured faster for the shape on this machine; dz @ W.T
through BLAS; every GEMM split over the Numba threads, bias + activation fused. Arrays that
are not C-contiguous take BLAS for every product.

Same signatures as :mod:`fastnn.kernels.reference.dense`; ``act`` is a fusable
:class:`~fastnn.kernels.contract.Activation`.
"""
from numba import njit

from .activations import IDENTITY, act_backward, bias_act
from .common import scale_or_zero
from .gemm_choice import FORWARD, WEIGHT_GRAD, layer_plan, use_blas
from .gemm_simd import gemm_rows
from .parallel import parts, pgemm


@njit(cache=True)
def _forward(x, w, b, out, code, n_parts, blas):
    if blas:
        pgemm(False, False, 1.0, x, w, 0.0, out, n_parts)
    else:
        gemm_rows(False, 1.0, x, w, 0.0, out, n_parts)
    bias_act(out, b, code)


@njit(cache=True)
def _backward(x, w, dz, dx, dw, db, beta, n_parts, blas):
    if blas:
        pgemm(True, False, 1.0, x, dz, beta, dw, n_parts)
    else:
        gemm_rows(True, 1.0, x, dz, beta, dw, n_parts)
    n, f = dz.shape
    scale_or_zero(db, beta)
    for i in range(n):
        for j in range(f):
            db[j] += dz[i, j]
    if dx is not None:
        pgemm(False, True, 1.0, dz, w, 0.0, dx, n_parts)


def dense_forward(x, w, b, out):
    """out = x @ w + b (one GEMM, then the bias in one pass)."""
    p = parts()
    _forward(x, w, b, out, IDENTITY, p, use_blas(FORWARD, x.shape[0], w.shape[1], w.shape[0],
                                                   x.itemsize, p))


def dense_act_forward(x, w, b, out, act):
    """out = act(x @ w + b): one GEMM, then bias and activation in one pass."""
    p = parts()
    _forward(x, w, b, out, int(act), p, use_blas(FORWARD, x.shape[0], w.shape[1], w.shape[0],
                                                   x.itemsize, p))


def dense_backward(x, w, dy, dx, dw, db, accumulate=False):
    """dw (+)= x.T @ dy, db (+)= sum(dy), dx = dy @ w.T (skipped when dx is None)."""
    p = parts()
    _backward(x, w, dy, dx, dw, db, 1.0 if accumulate else 0.0, p,
              use_blas(WEIGHT_GRAD, w.shape[0], w.shape[1], x.shape[0], x.itemsize, p))


def dense_act_backward(x, w, y, dy, dz, dx, dw, db, act, accumulate=False):
    """dz = dy * act'(.) in one pass over y, then :func:`dense_backward` with dz."""
    act_backward(y, dy, dz, int(act))
    dense_backward(x, w, dz, dx, dw, db, accumulate)


def dense_gemm_plan(batch_size, n_in, n_out, dtype, parts):
    """The contract's ``dense_gemm_plan``: :func:`.gemm_choice.layer_plan` (bit 0: x @ W
    through BLAS, bit 1: x.T @ dz through BLAS; otherwise the SIMD kernel) for GEMMs split
    over ``parts`` threads."""
    return layer_plan(int(batch_size), int(n_in), int(n_out), dtype, int(parts))
