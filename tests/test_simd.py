"""The SIMD vector intrinsics of the cpu backend (kernels/cpu/simd.py) against NumPy, in
float32 (16 lanes) and float64 (8 lanes): loads and stores (whole and masked), the fused
multiply-adds, the lane sums and their order, the select, and the typing errors."""
import numpy as np
import pytest

from support import BACKENDS

pytestmark = pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend unavailable")

DTYPES = ["float32", "float64"]


def _kernels():
    from numba import njit
    from fastnn.kernels.cpu import simd as s
    from fastnn.kernels.cpu.conv_direct import _add_sums16

    @njit(cache=False)
    def arith(a, b, c, out, scalar):
        """out[0:L] = a + b; out[L:2L] = a + scalar * b; out[2L:3L] = a + a * b;
        out[3L:4L] = scalar * a; out[4L:5L] = c where a != 0 else 0; returns L."""
        n = s.vlanes(a)
        u, v = s.vload(a, 0), s.vload(b, 0)
        s.vstore(out, 0, s.vadd(u, v))
        s.vstore(out, n, s.vfma(u, scalar, v))
        s.vstore(out, 2 * n, s.vfmav(u, u, v))
        s.vstore(out, 3 * n, s.vscale(u, scalar))
        s.vstore(out, 4 * n, s.vkeep(s.vload(c, 0), u))
        return n

    @njit(cache=False)
    def masked(a, out, i, n):
        s.vstore_n(out, i, s.vload_n(a, i, n), n)

    @njit(cache=False)
    def transposed_sum(m, part):
        """part[i] += sum of row i of m (16 x lanes) through conv_direct's _add_sums16: rounds
        of vpairsum, as the weight gradient reduces its register block."""
        lanes = s.vlanes(part)
        _add_sums16(part, 0, lanes, s.vload(m[0], 0), s.vload(m[1], 0), s.vload(m[2], 0),
                    s.vload(m[3], 0), s.vload(m[4], 0), s.vload(m[5], 0), s.vload(m[6], 0),
                    s.vload(m[7], 0), s.vload(m[8], 0), s.vload(m[9], 0), s.vload(m[10], 0),
                    s.vload(m[11], 0), s.vload(m[12], 0), s.vload(m[13], 0), s.vload(m[14], 0),
                    s.vload(m[15], 0))

    return arith, masked, transposed_sum


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_arithmetic_matches_numpy(dtype):
    arith, _, _ = _kernels()
    lanes = 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(lanes).astype(dtype), rng.standard_normal(lanes).astype(dtype)
    a[3] = 0.0
    c = b.copy()
    c[3] = np.inf                       # dropped by vkeep where a is 0
    out = np.full(5 * lanes, np.nan, dtype)
    n = arith(a, b, c, out, 0.5)
    assert n == lanes
    parts = out.reshape(5, lanes)
    np.testing.assert_array_equal(parts[0], a + b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)       # one rounding: fused
    np.testing.assert_allclose(parts[1], a64 + 0.5 * b64, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(parts[2], a64 + a64 * b64, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(parts[3], 0.5 * a)
    np.testing.assert_array_equal(parts[4], np.where(a != 0, c, 0))
    assert np.isfinite(parts[4]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_loads_and_stores_touch_only_the_first_n_lanes(dtype):
    _, masked, _ = _kernels()
    lanes = 64 // np.dtype(dtype).itemsize
    a = np.arange(3 * lanes, dtype=dtype)
    for n in (0, 1, lanes // 2, lanes):
        out = np.full(3 * lanes, -1, dtype)
        masked(a, out, lanes - 1, n)
        expected = np.full(3 * lanes, -1, dtype)
        expected[lanes - 1:lanes - 1 + n] = a[lanes - 1:lanes - 1 + n]
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pair_sums_give_each_vectors_sum_in_order(dtype):
    _, _, transposed_sum = _kernels()
    lanes = 64 // np.dtype(dtype).itemsize
    m = np.random.default_rng(1).standard_normal((16, lanes)).astype(dtype)
    part = np.ones(16, dtype)
    transposed_sum(m, part)
    np.testing.assert_allclose(part, 1 + m.astype(np.float64).sum(axis=1), rtol=1e-5, atol=1e-6)


def test_intrinsics_refuse_what_they_cannot_handle():
    from numba import njit
    from numba.core.errors import TypingError
    from fastnn.kernels.cpu import simd as s

    @njit(cache=False)
    def copy(a, out):
        s.vstore(out, 0, s.vload(a, 0))

    a = np.ones(32, np.float32)
    with pytest.raises(TypingError, match="C-contiguous"):
        copy(a[::2], np.empty(16, np.float32))             # strided
    readonly = np.empty(16, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(TypingError, match="writeable"):
        copy(a, readonly)
    with pytest.raises(TypingError, match="float32 or float64"):
        copy(np.ones(32, np.int64), np.empty(16, np.int64))
    with pytest.raises(TypingError, match="does not match"):
        copy(np.ones(16, np.float64), np.empty(16, np.float32))
