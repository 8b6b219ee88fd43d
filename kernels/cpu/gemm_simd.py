"""GEMM in SIMD registers for the skinny products of dense layers: c = alpha * op(a) @ b + beta * c.

``op(a)`` is ``a`` (M, K) or, with ``transa``, ``a.T`` for ``a`` (K, M); ``b`` is (K, N) and
``c`` (M, N), C-contiguous, ``c`` writeable and not overlapping ``a`` or ``b``; shapes that do
not match raise ValueError. The output is cut into blocks of 8 rows x 2 vectors of columns
(32 floats / 16 doubles) whose 16 accumulators stay in registers while k runs: per k, 2 vector
loads of b's row, 8 broadcasts of op(a) and 16 fused multiply-adds (see :mod:`.simd`). Column
tails are masked loads and stores (nothing past a row is touched); row tails repeat the last
row and drop it. Blocks go to the Numba threads as whole row blocks or, when c has more column
strips than row blocks, as column strips (each thread then keeps its strip of b in cache
across the row blocks).

Used for x @ W and x.T @ dz (with SGD folded in: alpha = -lr, beta = 1) of the shapes where
:mod:`.gemm_choice` measures it faster than BLAS; dz @ W.T, whose b would be W's columns,
stays in BLAS (:func:`.parallel.pgemm`). With AVX-512 the skinny products of batch 32 took
0.46-0.77x the time of OpenBLAS's Haswell kernels (the workplace pins OpenBLAS to those;
``benchmarks/gemm_shapes.py``); without it (AVX2: the 16 accumulators of 64 bytes need 32
of its 16 registers) 1.7-3x, and on big products (batch 128+, 1024 units) 2-5x everywhere.
"""
from numba import njit, prange
from numba.extending import overload

from .parallel import SPLIT_MIN_WORK, chunk, pgemm
from .simd import vfma, vlanes, vload_n, vscale, vstore_n, vzero

__all__ = ["gemm_simd", "gemm_rows"]

_MR = 8       # rows of c per register block (x 2 vectors of columns)


@njit(cache=True, inline="always")
def _store_row(crow, n0, lanes, n1, n2, u, v, alpha, beta):
    """crow[n0:n0 + n1] and crow[n0 + lanes:...+ n2] = alpha * (u, v) + beta * their old values
    (beta 0: the old values are not read, so NaNs there do not survive)."""
    u = vscale(u, alpha)
    v = vscale(v, alpha)
    if beta != 0:
        u = vfma(u, beta, vload_n(crow, n0, n1))
        v = vfma(v, beta, vload_n(crow, n0 + lanes, n2))
    vstore_n(crow, n0, u, n1)
    vstore_n(crow, n0 + lanes, v, n2)


@njit(cache=True)
def _block(transa, alpha, a, b, beta, c, m0, n0):
    """Rows m0 .. m0 + 7 and columns n0 .. n0 + 2 * lanes - 1 of c (clipped to c's shape)."""
    m_dim, n_dim = c.shape
    lanes = vlanes(b)
    n1 = min(lanes, n_dim - n0)
    n2 = min(lanes, max(n_dim - n0 - lanes, 0))
    last = m_dim - 1
    r0, r1, r2, r3 = min(m0, last), min(m0 + 1, last), min(m0 + 2, last), min(m0 + 3, last)
    r4, r5, r6, r7 = min(m0 + 4, last), min(m0 + 5, last), min(m0 + 6, last), min(m0 + 7, last)
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = vzero(b)
    a40 = a41 = a50 = a51 = a60 = a61 = a70 = a71 = vzero(b)
    for k in range(b.shape[0]):
        brow = b[k]
        v0 = vload_n(brow, n0, n1)
        v1 = vload_n(brow, n0 + lanes, n2)
        if transa:
            ak = a[k]
            s0, s1, s2, s3, s4, s5, s6, s7 = ak[r0], ak[r1], ak[r2], ak[r3], ak[r4], ak[r5], \
                ak[r6], ak[r7]
        else:
            s0, s1, s2, s3 = a[r0, k], a[r1, k], a[r2, k], a[r3, k]
            s4, s5, s6, s7 = a[r4, k], a[r5, k], a[r6, k], a[r7, k]
        a00, a01 = vfma(a00, s0, v0), vfma(a01, s0, v1)
        a10, a11 = vfma(a10, s1, v0), vfma(a11, s1, v1)
        a20, a21 = vfma(a20, s2, v0), vfma(a21, s2, v1)
        a30, a31 = vfma(a30, s3, v0), vfma(a31, s3, v1)
        a40, a41 = vfma(a40, s4, v0), vfma(a41, s4, v1)
        a50, a51 = vfma(a50, s5, v0), vfma(a51, s5, v1)
        a60, a61 = vfma(a60, s6, v0), vfma(a61, s6, v1)
        a70, a71 = vfma(a70, s7, v0), vfma(a71, s7, v1)
    rows = min(_MR, m_dim - m0)
    _store_row(c[m0], n0, lanes, n1, n2, a00, a01, alpha, beta)
    if rows > 1:
        _store_row(c[m0 + 1], n0, lanes, n1, n2, a10, a11, alpha, beta)
    if rows > 2:
        _store_row(c[m0 + 2], n0, lanes, n1, n2, a20, a21, alpha, beta)
    if rows > 3:
        _store_row(c[m0 + 3], n0, lanes, n1, n2, a30, a31, alpha, beta)
    if rows > 4:
        _store_row(c[m0 + 4], n0, lanes, n1, n2, a40, a41, alpha, beta)
    if rows > 5:
        _store_row(c[m0 + 5], n0, lanes, n1, n2, a50, a51, alpha, beta)
    if rows > 6:
        _store_row(c[m0 + 6], n0, lanes, n1, n2, a60, a61, alpha, beta)
    if rows > 7:
        _store_row(c[m0 + 7], n0, lanes, n1, n2, a70, a71, alpha, beta)


@njit(cache=True)
def _blocks(transa, alpha, a, b, beta, c, lo, hi, by_rows):
    """Blocks lo .. hi - 1, numbered row block by row block (``by_rows``) or column strip by
    column strip."""
    width = 2 * vlanes(b)
    m_blocks = (c.shape[0] + _MR - 1) // _MR
    n_blocks = (c.shape[1] + width - 1) // width
    for blk in range(lo, hi):
        if by_rows:
            mb, nb = divmod(blk, n_blocks)
        else:
            nb, mb = divmod(blk, m_blocks)
        _block(transa, alpha, a, b, beta, c, mb * _MR, nb * width)


@njit(cache=True, parallel=True)
def _blocks_parallel(transa, alpha, a, b, beta, c, total, parts, by_rows):
    for t in prange(parts):
        lo, hi = chunk(total, t, parts)
        _blocks(transa, alpha, a, b, beta, c, lo, hi, by_rows)


@njit(cache=True)
def gemm_simd(transa, alpha, a, b, beta, c, parts):
    """c = alpha * op(a) @ b + beta * c (see the module docstring), the blocks split over
    ``parts`` Numba threads when the product is big enough (M * N * K >= SPLIT_MIN_WORK);
    every element is computed the same way whatever the split."""
    m_dim, n_dim = c.shape
    k_dim = b.shape[0]
    k_a, m_a = (a.shape[0], a.shape[1]) if transa else (a.shape[1], a.shape[0])
    if m_a != m_dim or k_a != k_dim or b.shape[1] != n_dim:
        raise ValueError("gemm_simd: shapes of op(a), b and c do not match")
    if m_dim == 0 or n_dim == 0:
        return
    m_blocks = (m_dim + _MR - 1) // _MR
    n_blocks = (n_dim + 2 * vlanes(b) - 1) // (2 * vlanes(b))
    # Threads take whole row blocks when there are more of them (each writes its own rows of
    # c: no cache line shared at the cut, 1.7x on the 400 x 100 weight gradient), else column
    # strips (each reads its own part of b: x @ W with W 784 x 400).
    by_rows = m_blocks >= n_blocks
    if parts < 2 or m_dim * n_dim * k_dim < SPLIT_MIN_WORK:
        _blocks(transa, alpha, a, b, beta, c, 0, m_blocks * n_blocks, by_rows)
    else:
        _blocks_parallel(transa, alpha, a, b, beta, c, m_blocks * n_blocks,
                         min(parts, m_blocks * n_blocks), by_rows)


def gemm_rows(transa, alpha, a, b, beta, c, parts):
    """c = alpha * op(a) @ b + beta * c from compiled code: :func:`gemm_simd` when a, b and c
    are typed C-contiguous (and c writeable), :func:`~.parallel.pgemm` (BLAS, whose checks
    then apply) otherwise, chosen at compile time."""
    raise NotImplementedError("gemm_rows is called from Numba-compiled code only")


@overload(gemm_rows)
def _gemm_rows(transa, alpha, a, b, beta, c, parts):
    if all(getattr(t, "layout", None) == "C" for t in (a, b, c)) and getattr(c, "mutable", False):
        def simd(transa, alpha, a, b, beta, c, parts):
            gemm_simd(transa, alpha, a, b, beta, c, parts)
        return simd

    def blas(transa, alpha, a, b, beta, c, parts):
        pgemm(transa, False, alpha, a, b, beta, c, parts)
    return blas
