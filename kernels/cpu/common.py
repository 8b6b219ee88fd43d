"""Small Numba helpers shared by several topic modules of the cpu backend (private)."""
import math

from numba import njit


@njit(cache=True, fastmath=True)
def row_sum(a):
    """Sum of a 1-D array in float64, reassociated (vectorised) by fastmath."""
    acc = 0.0
    for t in range(a.shape[0]):
        acc += a[t]
    return acc


@njit(cache=True, inline="always")
def scale_or_zero(a, beta):
    """a *= beta for beta 1, a = 0 for beta 0 (old NaNs do not survive): the start of a
    gradient that is written (beta 0) or added to (beta 1)."""
    if beta == 0:
        a[...] = 0
    elif beta != 1:
        a *= beta


@njit(cache=True, inline="always")
def exp_shifted(row, out):
    """out[j] = exp(row[j] - max(row)); returns (max(row), sum of out). The stable core of
    softmax, log-softmax and cross-entropy."""
    m = row[0]
    for j in range(1, row.size):
        m = max(m, row[j])
    s = 0.0
    for j in range(row.size):
        e = math.exp(row[j] - m)
        out[j] = e
        s += e
    return m, s
