"""How the cpu backend's layers use several cores: Numba's thread pool, BLAS single-threaded.

Layer by layer, OpenBLAS runs on one thread (the model layer calls
:func:`fastnn.kernels.threads.use_backend` before the cpu backend works); work is split into
one chunk per Numba thread with ``prange``, and a GEMM that is big enough is split into
blocks of its output, one per thread, each a single-threaded BLAS call. Two pools
(OpenBLAS's and Numba's) active on a small machine make each one's idle threads spin while
the other works; that cost 10x on LeNet-5 with 2 cores.
The compiled epoch (:mod:`.compiled_epoch`) works the same way: its x @ W and x.T @ dz are
the SIMD GEMM's blocks (:mod:`.gemm_simd`) or ``pgemm``'s, whichever :mod:`.gemm_choice`
measured faster for the shape, split over Numba's threads; its dz @ W.T is ``pgemm``.
"""
from numba import njit, prange

from ..threads import numba_threads
from .blas import gemm

__all__ = ["parts", "chunk", "aligned_bound", "pgemm", "SPLIT_MIN_WORK", "ALIGN"]

SPLIT_MIN_WORK = 600_000   # M * N * K below which splitting a GEMM costs more than it saves
                           # (32 x 120 x 84: 6.3 us as one call, 6.6 us split in two)
ALIGN = 16                # split the output at multiples of 16 columns / rows (SIMD width)


def parts(items=None):
    """Chunks to split work into: one per Numba thread (at most ``items``). Only the count:
    making Numba's pool the one that works (OpenBLAS on one thread) is the model layer's job
    (:func:`fastnn.kernels.threads.use_backend` with this backend's ``THREAD_POOL``)."""
    n = numba_threads()
    return n if items is None else max(1, min(n, items))


@njit(cache=True, inline="always")
def chunk(items, t, n_parts):
    """[start, stop) of chunk ``t`` of ``n_parts`` over ``items`` items."""
    return items * t // n_parts, items * (t + 1) // n_parts


@njit(cache=True, inline="always")
def aligned_bound(size, t, n_parts):
    """Start of part ``t`` of ``n_parts`` over ``size`` items, at a multiple of ALIGN
    (``size`` for t >= n_parts): the cuts of :func:`pgemm` and of the recurrent dw_hh."""
    if t >= n_parts:
        return size
    return min(size, (size * t // n_parts + ALIGN // 2) // ALIGN * ALIGN)


@njit(cache=True, parallel=True)
def _split_rows(transa, transb, alpha, a, b, beta, c, n_parts):
    m = c.shape[0]
    for t in prange(n_parts):
        lo, hi = aligned_bound(m, t, n_parts), aligned_bound(m, t + 1, n_parts)
        if transa:
            gemm(transa, transb, alpha, a[:, lo:hi], b, beta, c[lo:hi])
        else:
            gemm(transa, transb, alpha, a[lo:hi], b, beta, c[lo:hi])


@njit(cache=True, parallel=True)
def _split_cols(transa, transb, alpha, a, b, beta, c, n_parts):
    n = c.shape[1]
    for t in prange(n_parts):
        lo, hi = aligned_bound(n, t, n_parts), aligned_bound(n, t + 1, n_parts)
        if transb:
            gemm(transa, transb, alpha, a, b[lo:hi], beta, c[:, lo:hi])
        else:
            gemm(transa, transb, alpha, a, b[:, lo:hi], beta, c[:, lo:hi])


@njit(cache=True)
def pgemm(transa, transb, alpha, a, b, beta, c, n_parts):
    """:func:`~fastnn.kernels.cpu.blas.gemm` split over ``n_parts`` threads.

    The output ``c`` (M, N) is cut into ``n_parts`` blocks of rows (of columns when M is under
    16 rows a part), at multiples of 16, each computed by one single-threaded BLAS call on its
    own thread; every element is computed as by one call. Rows split better on every shape
    measured, even at M = 32: (32 x 400) @ (400 x 100) 17.4 us in rows, 21.6 us in columns,
    24.4 us as one call; a weight gradient (400 x 100, K = 32) 17.3, 38.9 and 21.4 us. Small
    products (M * N * K < ``SPLIT_MIN_WORK``) and ``n_parts`` 1 run as one call.
    """
    m, n = c.shape
    k = a.shape[0] if transa else a.shape[1]
    if n_parts < 2 or m * n * k < SPLIT_MIN_WORK:
        gemm(transa, transb, alpha, a, b, beta, c)
    elif m >= ALIGN * n_parts:
        _split_rows(transa, transb, alpha, a, b, beta, c, n_parts)
    else:
        _split_cols(transa, transb, alpha, a, b, beta, c, n_parts)
