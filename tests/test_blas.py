"""The cpu backend's BLAS binding (kernels/cpu/blas.py): every transpose combination, alpha and
beta, both dtypes, odd shapes and strides against NumPy; no allocation per call; cache=True
callers reload from Numba's cache in a fresh process."""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

pytest.importorskip("numba")
from fastnn.kernels.cpu import blas  # noqa: E402  (a broken module must fail, not skip)
gemm = blas.gemm

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-5, np.float64: 1e-12}

SHAPES = [(1, 1, 1), (3, 5, 7), (32, 784, 400), (32, 400, 100),
          (32, 100, 10), (17, 1, 9), (1, 13, 6), (40, 8, 1)]


def _ref(ta, tb, alpha, a, b, beta, c):
    """float64 reference (numpy) for op(a) @ op(b)."""
    A = a.T if ta else a
    B = b.T if tb else b
    return (alpha * (A.astype(np.float64) @ B.astype(np.float64))
            + beta * c.astype(np.float64))


def _operands(rng, m, k, n, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    return a, b, c


def _check(got, want, dtype, k):
    # float32: accumulation error grows ~ sqrt(k); scale atol with the size
    # of the products (entries of A@B have std ~ sqrt(k)).
    atol = ATOL[dtype] * max(1.0, np.sqrt(k)) * 4
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("mkn", SHAPES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.37, 1.0), (2.5, -0.5)])
def test_against_numpy(dtype, ta, tb, mkn, alpha, beta):
    m, k, n = mkn
    rng = np.random.default_rng(hash((m, k, n, ta, tb)) & 0xFFFF)
    a, b, c = _operands(rng, m, k, n, ta, tb, dtype)
    want = _ref(ta, tb, alpha, a, b, beta, c)
    gemm(ta, tb, alpha, a, b, beta, c)
    assert c.dtype == dtype
    _check(c, want, dtype, k)


def test_beta_zero_ignores_nan():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 6))
    b = rng.standard_normal((6, 5))
    c = np.full((4, 5), np.nan)
    gemm(False, False, 1.0, a, b, 0.0, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)


@numba.njit
def _mlp_step(x, W1, W2, h1, h2, dy, dh1, lr):
    # forward
    gemm(False, False, 1.0, x, W1, 0.0, h1)
    gemm(False, False, 1.0, h1, W2, 0.0, h2)
    # backward: dh1 = dy @ W2.T, then fused SGD updates
    gemm(False, True, 1.0, dy, W2, 0.0, dh1)
    gemm(True, False, -lr, h1, dy, 1.0, W2)
    gemm(True, False, -lr, x, dh1, 1.0, W1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_called_from_njit(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 20)).astype(dtype)
    W1 = rng.standard_normal((20, 16)).astype(dtype)
    W2 = rng.standard_normal((16, 8)).astype(dtype)
    dy = rng.standard_normal((32, 8)).astype(dtype)
    h1 = np.empty((32, 16), dtype)
    h2 = np.empty((32, 8), dtype)
    dh1 = np.empty((32, 16), dtype)
    lr = 0.01
    x64, W164, W264, dy64 = (t.astype(np.float64) for t in (x, W1, W2, dy))
    rh1 = x64 @ W164
    rh2 = rh1 @ W264
    rdh1 = dy64 @ W264.T
    rW2 = W264 - lr * rh1.T @ dy64
    rW1 = W164 - lr * x64.T @ rdh1
    _mlp_step(x, W1, W2, h1, h2, dy, dh1, lr)
    for got, want, k in ((h1, rh1, 20), (h2, rh2, 16), (dh1, rdh1, 8),
                         (W2, rW2, 32), (W1, rW1, 32)):
        _check(got, want, dtype, k)


def test_strided_views():
    """Row stride > row length (column blocks) works without copies."""
    rng = np.random.default_rng(2)
    big_a = rng.standard_normal((10, 30))
    big_b = rng.standard_normal((20, 25))
    big_c = np.zeros((12, 40))
    a = big_a[:, 3:10]          # (10, 7)
    b = big_b[2:9, 5:16]        # (7, 11)
    c = big_c[1:11, 4:15]       # (10, 11)
    gemm(False, False, 1.0, a, b, 0.0, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)
    assert np.all(big_c[0] == 0) and np.all(big_c[:, :4] == 0)
    # transposed use of a column block
    c2 = np.zeros((7, 11))
    gemm(True, False, 1.0, big_a[:, 3:10], big_a[:, 10:21], 0.0, c2)
    np.testing.assert_allclose(c2, big_a[:, 3:10].T @ big_a[:, 10:21],
                               rtol=1e-12)


def test_empty_and_k0():
    a = np.zeros((3, 0))
    b = np.zeros((0, 4))
    c = np.ones((3, 4))
    gemm(False, False, 1.0, a, b, 2.0, c)      # k == 0: c = beta * c
    np.testing.assert_array_equal(c, 2.0)
    gemm(False, False, 1.0, np.zeros((0, 5)), np.zeros((5, 4)), 0.0,
         np.zeros((0, 4)))                    # m == 0: no-op


def test_errors():
    a = np.ones((3, 4))
    b = np.ones((4, 5))
    with pytest.raises(ValueError):
        gemm(False, False, 1.0, a, b, 0.0, np.empty((3, 6)))
    with pytest.raises(ValueError):
        gemm(True, False, 1.0, a, b, 0.0, np.empty((3, 5)))
    with pytest.raises(ValueError):              # non-unit inner stride
        gemm(False, False, 1.0, np.ones((3, 8))[:, ::2], b, 0.0,
             np.empty((3, 5)))
    with pytest.raises(ValueError):              # F-ordered input
        gemm(False, False, 1.0, np.asfortranarray(a), b, 0.0,
             np.empty((3, 5)))
    with pytest.raises(numba.core.errors.TypingError):   # mixed dtypes
        gemm(False, False, 1.0, a.astype(np.float32), b, 0.0,
             np.empty((3, 5)))
    with pytest.raises(numba.core.errors.TypingError):   # int arrays
        gemm(False, False, 1, np.ones((3, 4), np.int64),
             np.ones((4, 5), np.int64), 0, np.empty((3, 5), np.int64))


ALLOC_SCRIPT = textwrap.dedent("""
    import numpy as np, numba
    from numba.core.runtime import rtsys
    from fastnn.kernels.cpu.blas import gemm

    @numba.njit
    def loop_gemm(a, b, c, n):
        for _ in range(n):
            gemm(False, False, 1.0, a, b, 0.0, c)

    @numba.njit
    def loop_dot(a, b, c, n):
        for _ in range(n):
            np.dot(a, b, c)

    @numba.njit
    def loop_alloc(a, b, n):          # positive control: allocates
        s = 0.0
        for _ in range(n):
            s += np.dot(a, b)[0, 0]
        return s

    a = np.ones((4, 3), np.float32)
    b = np.ones((3, 2), np.float32)
    c = np.empty((4, 2), np.float32)
    # Each call from Python allocates a few meminfos to wrap the argument
    # arrays; what matters is how the count grows with the loop length.
    def nalloc(f, args, n):
        before = rtsys.get_allocation_stats()
        f(*args, n)
        after = rtsys.get_allocation_stats()
        return after.alloc - before.alloc

    for f, args in ((loop_gemm, (a, b, c)), (loop_dot, (a, b, c)),
                    (loop_alloc, (a, b))):
        f(*args, 1)
        print(nalloc(f, args, 10010) - nalloc(f, args, 10))
    assert np.all(c == 3.0)
""")


def test_no_allocation_in_loop(tmp_path):
    """NRT allocation counters do not grow with 10000 more njit gemm calls
    (same as numba's np.dot(a, b, out)); allocating np.dot(a, b) is the
    positive control."""
    script = tmp_path / "alloc.py"
    script.write_text(ALLOC_SCRIPT)
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    r = subprocess.run([sys.executable, str(script)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    n_gemm, n_dot, n_alloc = map(int, r.stdout.split())
    assert n_gemm == 0 and n_dot == 0
    assert n_alloc >= 10000


CACHE_SCRIPT = textwrap.dedent("""
    import numpy as np, numba
    from fastnn.kernels.cpu.blas import gemm

    @numba.njit(cache=True)
    def step(a, b, c):
        gemm(True, False, -0.5, a, b, 1.0, c)

    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = np.arange(8, dtype=np.float32).reshape(4, 2)
    c = np.ones((3, 2), np.float32)
    step(a, b, c)
    assert np.allclose(c, 1 - 0.5 * a.T @ b), c
    print(sum(step.stats.cache_hits.values()),
          sum(step.stats.cache_misses.values()))
""")


def test_cache_true_roundtrip(tmp_path):
    """A cache=True caller is compiled, then loaded from cache in a fresh
    process, and still calls the right BLAS."""
    script = tmp_path / "cached_caller.py"
    script.write_text(CACHE_SCRIPT)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    outs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-W", "error::numba.NumbaWarning",
                            str(script)], env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split())
    assert outs[0] == ["0", "1"]     # first run: compiled, no warnings
    assert outs[1] == ["1", "0"]     # second run: loaded from cache
