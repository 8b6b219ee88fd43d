"""Tiled shared-memory GEMM with a fused epilogue: the products of the dense layer
(:mod:`.dense`) and of the convolution (:mod:`.conv`).

``gemm(ta, tb, a, b, c, m, n, k, ...)`` computes, for every batch ``z``::

    C[z] = act(alpha * sum_t op(A[g]) @ op(B[g]) + beta * C[z] + bias),   g = z * inner + t

on flat C-contiguous device arrays, with op(X) = X.T when the flag is set. Shapes (per batch):

    op(A): (m, k)   A stored (m, k), or (k, m) with ta
    op(B): (k, n)   B stored (k, n), or (n, k) with tb
    C:     (m, n)   row-major; with beta == 0 its old contents are never read

The transposes are handled by indexing (no transposed copies). A block computes a ``BM x BN``
tile of C, looping over K in steps of ``BK``: it stages the ``BM x BK`` slab of op(A) and the
``BK x BN`` slab of op(B) in shared memory (each loaded along its contiguous axis, so reads are
coalesced whichever operand is transposed), and every thread keeps a ``TM x TN`` register tile
of C (rows ``ty + i * TY``, columns ``tx + j * TX``, so shared reads are conflict-free
broadcasts and stores are coalesced). The epilogue applies alpha, beta, a bias per column
(dense) or per row (convolution) and the activation, in registers, before the single store.

``inner > 1`` sums ``inner`` consecutive batch entries into one C (the weight gradient of a
convolution, summed over images); batch strides of 0 share an operand between batches.
"""
from numba import cuda

from .common import IDENTITY, NUMBA_TYPES, SIM, act_code, act_forward, flat, launch, scalar

# Block tile BM x BN, K step BK, per-thread register tile TM x TN: 16 x 16 = 256 threads on a
# GPU, 2 x 2 in the simulator (where every thread is a Python thread).
BM, BN, BK, TM, TN = (8, 8, 8, 4, 4) if SIM else (64, 64, 16, 4, 4)
TY, TX = BM // TM, BN // TN
NT = TY * TX

NO_BIAS, BIAS_PER_COLUMN, BIAS_PER_ROW = 0, 1, 2

_kernels = {}


def _make_gemm(ta, tb, nbtype):
    """The GEMM kernel for one (transpose A, transpose B, dtype): flags are compile-time."""

    @cuda.jit
    def gemm_kernel(a, a_bs, b, b_bs, c, c_bs, m, n, k, inner, nbatch, alpha, beta,
                    bias, bias_mode, act):
        a_sh = cuda.shared.array((BK, BM), nbtype)      # a_sh[kk, r] = op(A)[row0 + r, k0 + kk]
        b_sh = cuda.shared.array((BK, BN), nbtype)      # b_sh[kk, q] = op(B)[k0 + kk, col0 + q]
        acc = cuda.local.array((TM, TN), nbtype)
        a_reg = cuda.local.array(TM, nbtype)
        b_reg = cuda.local.array(TN, nbtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        row0, col0, z = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN, cuda.blockIdx.z
        zero = nbtype(0)
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = zero
        for t in range(inner):
            g = z * inner + t
            if g >= nbatch:
                break
            a0, b0 = g * a_bs, g * b_bs
            for k0 in range(0, k, BK):
                for e in range(tid, BM * BK, NT):
                    if ta:                       # A stored (k, m): contiguous along the rows of op(A)
                        kk, r = e // BM, e % BM
                    else:                        # A stored (m, k): contiguous along k
                        r, kk = e // BK, e % BK
                    gr, gk = row0 + r, k0 + kk
                    v = zero
                    if gr < m and gk < k:
                        v = a[a0 + gk * m + gr] if ta else a[a0 + gr * k + gk]
                    a_sh[kk, r] = v
                for e in range(tid, BK * BN, NT):
                    if tb:                       # B stored (n, k): contiguous along k
                        q, kk = e // BK, e % BK
                    else:                        # B stored (k, n): contiguous along n
                        kk, q = e // BN, e % BN
                    gq, gk = col0 + q, k0 + kk
                    v = zero
                    if gq < n and gk < k:
                        v = b[b0 + gq * k + gk] if tb else b[b0 + gk * n + gq]
                    b_sh[kk, q] = v
                cuda.syncthreads()
                for kk in range(BK):
                    for i in range(TM):
                        a_reg[i] = a_sh[kk, ty + i * TY]
                    for j in range(TN):
                        b_reg[j] = b_sh[kk, tx + j * TX]
                    for i in range(TM):
                        for j in range(TN):
                            acc[i, j] += a_reg[i] * b_reg[j]
                cuda.syncthreads()
        c0 = z * c_bs
        for i in range(TM):
            r = row0 + ty + i * TY
            if r < m:
                for j in range(TN):
                    q = col0 + tx + j * TX
                    if q < n:
                        v = alpha * acc[i, j]
                        if beta != 0:
                            v += beta * c[c0 + r * n + q]
                        if bias_mode == BIAS_PER_COLUMN:
                            v += bias[q]
                        elif bias_mode == BIAS_PER_ROW:
                            v += bias[r]
                        c[c0 + r * n + q] = act_forward(v, act)

    return gemm_kernel


def gemm(ta, tb, a, b, c, m, n, k, alpha=1.0, beta=0.0, bias=None, bias_mode=NO_BIAS,
         act=IDENTITY, batches=1, a_bs=0, b_bs=0, c_bs=0, inner=1):
    """Launch the GEMM (see the module docstring) on device arrays ``a``, ``b``, ``c``.

    ``batches`` entries g = 0 .. batches - 1 start at ``g * a_bs`` in A and ``g * b_bs`` in B;
    with ``inner == 1`` entry g writes C at ``g * c_bs``; with ``inner > 1`` every run of
    ``inner`` consecutive entries is summed into one C (``ceil(batches / inner)`` of them).
    ``act``: the :class:`~fastnn.kernels.contract.Activation` applied in the epilogue.
    """
    if m == 0 or n == 0:
        return
    af, bf, cf = flat(a), flat(b), flat(c)
    key = (ta, tb, cf.dtype)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = _make_gemm(ta, tb, NUMBA_TYPES[cf.dtype])
    outer = -(-batches // inner)
    grid = (-(-n // BN), -(-m // BM), outer)
    launch(kernel, grid, (TX, TY), af, a_bs, bf, b_bs, cf, c_bs, m, n, k, inner, batches,
           scalar(cf, alpha), scalar(cf, beta), cf if bias is None else flat(bias), bias_mode,
           act_code(act))
