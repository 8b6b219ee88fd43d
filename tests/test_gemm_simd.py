"""The SIMD GEMM of the cpu backend (kernels/cpu/gemm_simd.py) against NumPy: every shape tail
(rows past a block of 8, columns past a block of 2 vectors), both orientations of a, alpha and
beta (beta 0 must not read c: NaN there may not survive), one and two thread parts, float32
and float64; and the compile-time choice of BLAS for arrays that are not C-contiguous."""
import numpy as np
import pytest

from support import BACKENDS

pytestmark = pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend unavailable")


def _gemm_simd():
    from fastnn.kernels.cpu.gemm_simd import gemm_simd
    return gemm_simd


# (M, N, K): tails of every size around the 8-row x 32-float block, tiny and MLP-sized products
SHAPES = [(1, 1, 1), (7, 15, 3), (8, 32, 5), (9, 33, 17), (16, 16, 1), (5, 47, 64), (31, 100, 9),
          (32, 400, 784), (784, 400, 32), (84, 10, 120), (3, 65, 0)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("transa", [False, True], ids=["a", "a.T"])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_gemm_simd_matches_numpy(shape, beta, transa, parts, dtype):
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m) if transa else (m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    alpha = -0.7
    expected = alpha * ((a.T if transa else a).astype(np.float64) @ b) + beta * c0
    c = c0.copy() if beta else np.full((m, n), np.nan, dtype)
    _gemm_simd()(transa, alpha, a, b, beta, c, parts)
    tol = 1e-12 * max(k, 1) if dtype == "float64" else 2e-5 * max(k, 1) ** 0.5
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


def test_gemm_simd_touches_nothing_outside_c():
    """c (9 x 37: a row tail and a column tail) sits between guard regions of one buffer:
    the masked tail loads and stores leave the guards as they were, at either thread count."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((9, 4)).astype(np.float32), rng.standard_normal((4, 37)).astype(np.float32)
    for parts in (1, 2):
        buf = np.full(64 + 9 * 37 + 64, 7.0, np.float32)
        c = buf[64:64 + 9 * 37].reshape(9, 37)
        _gemm_simd()(False, 1.0, a, b, 1.0, c, parts)
        np.testing.assert_allclose(c, a @ b + 7, rtol=1e-5, atol=1e-5)
        assert (buf[:64] == 7).all() and (buf[64 + 9 * 37:] == 7).all()


def test_gemm_rows_uses_blas_for_arrays_that_are_not_contiguous():
    """Numba types a view with strided rows as layout 'A': gemm_rows compiles the BLAS path for
    it (the SIMD kernel needs contiguous rows) and gives the same product."""
    from numba import njit
    from fastnn.kernels.cpu.gemm_simd import gemm_rows

    @njit
    def run(a, b, c):
        gemm_rows(False, 1.0, a, b, 0.0, c, 1)

    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 20)).astype(np.float32)[:, :9]         # strided rows
    b = rng.standard_normal((9, 13)).astype(np.float32)
    c = np.empty((6, 13), np.float32)
    run(a, b, c)
    assert run.signatures[0][0].layout == "A"
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_gemm_simd_rejects_shapes_that_do_not_match():
    """A mismatch raises instead of reading past a or b (the kernel does not bounds-check)."""
    f = _gemm_simd()
    a, b = np.ones((4, 3), np.float32), np.ones((5, 6), np.float32)
    for a_, b_, c_, transa in ((a, b, np.empty((4, 6), np.float32), False),          # K
                               (a, np.ones((3, 6), np.float32), np.empty((4, 7), np.float32), False),
                               (a, np.ones((3, 6), np.float32), np.empty((5, 6), np.float32), False),
                               (a, np.ones((3, 6), np.float32), np.empty((4, 6), np.float32), True)):
        with pytest.raises(ValueError, match="do not match"):
            f(transa, 1.0, a_, b_, 0.0, c_, 1)


def test_dense_kernels_keep_their_checks_and_reset_db():
    """Through the SIMD path the Dense kernels still refuse mismatched shapes and a read-only
    output like the BLAS path, and with accumulate=False a NaN left in db does not survive."""
    from numba.core.errors import TypingError
    from fastnn.kernels import cpu, reference as ref
    x, w = np.ones((4, 3), np.float32), np.ones((5, 6), np.float32)
    with pytest.raises(ValueError):
        cpu.dense_forward(x, w, np.zeros(6, np.float32), np.empty((4, 6), np.float32))
    x, w, dy = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32), np.ones((4, 2), np.float32)
    dw = np.zeros((3, 2), np.float32)
    dw.flags.writeable = False
    with pytest.raises(TypingError):
        cpu.dense_backward(x, w, dy, None, dw, np.zeros(2, np.float32))
    got, expected = (np.full(2, np.nan, np.float32) for _ in range(2))
    cpu.dense_backward(x, w, dy, None, np.empty((3, 2), np.float32), got)
    ref.dense_backward(x, w, dy, None, np.empty((3, 2), np.float32), expected)
    np.testing.assert_array_equal(got, expected)
