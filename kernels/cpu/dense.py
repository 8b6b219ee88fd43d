"""Dense layer on the CPU: x @ W and x.T @ dz in SIMD registers (:mod:`.gemm_simd`), dz @ W.T
through BLAS (split over the Numba threads by :func:`~fastnn.kernels.cpu.parallel.pgemm`),
bias + activation fused. Arrays that are not C-contiguous take BLAS for every product.

Same signatures as :mod:`fastnn.kernels.reference.dense`; ``act`` is a fusable
:class:`~fastnn.kernels.contract.Activation`.
"""
from numba import njit

from .activations import IDENTITY, act_backward, bias_act
from .common import scale_or_zero
from .gemm_simd import gemm_rows
from .parallel import parts, pgemm


@njit(cache=True)
def _forward(x, w, b, out, code, n_parts):
    gemm_rows(False, 1.0, x, w, 0.0, out, n_parts)
    bias_act(out, b, code)


@njit(cache=True)
def _backward(x, w, dz, dx, dw, db, beta, n_parts):
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
    _forward(x, w, b, out, IDENTITY, parts())


def dense_act_forward(x, w, b, out, act):
    """out = act(x @ w + b): one GEMM, then bias and activation in one pass."""
    _forward(x, w, b, out, int(act), parts())


def dense_backward(x, w, dy, dx, dw, db, accumulate=False):
    """dw (+)= x.T @ dy, db (+)= sum(dy), dx = dy @ w.T (skipped when dx is None)."""
    _backward(x, w, dy, dx, dw, db, 1.0 if accumulate else 0.0, parts())


def dense_act_backward(x, w, y, dy, dz, dx, dw, db, act, accumulate=False):
    """dz = dy * act'(.) in one pass over y, then :func:`dense_backward` with dz."""
    act_backward(y, dy, dz, int(act))
    dense_backward(x, w, dz, dx, dw, db, accumulate)
