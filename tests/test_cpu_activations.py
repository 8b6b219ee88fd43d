"""The cpu backend's vectorised sigmoid and tanh (kernels/cpu/activations.py) against the
reference (kernels/reference/activations.py: NumPy's np.tanh and its stable sigmoid).

Error measure. For an output ``out`` and the reference ``ref`` (both of the input's dtype, the
difference taken in float64 or wider):

    err = |out - ref| / max(|ref|, tiny)        tiny = np.finfo(dtype).tiny (smallest normal)

that is the relative error wherever the reference is a normal number, and, where it is
subnormal or zero, the absolute error divided by the smallest normal: ``err <= TOL`` there
means ``|out - ref| <= TOL * tiny`` (2.4e-44, about 17 subnormal steps, in float32; 2.2e-320 in
float64). Required: err <= 2e-6 in float32 and 1e-12 in float64, over a dense grid and random
values covering [-100, 100], a stride through every float32 bit pattern (every magnitude from
the subnormals to 3e38), tiny and subnormal values, and the edges of the forms (the polynomial
threshold of tanh, where exp's results become subnormal, where they underflow).

The same bound is checked against an independent value (float64 NumPy for float32, long
double for float64 where it is wider) so the errors are the kernel's own and not the
reference's. +-inf and +-0 inputs give exactly the reference's outputs (the sign of zero
included); NaN gives NaN where the reference does (the sign bit of a NaN is not compared: the
reference's own sigmoid gives +NaN in float32 and -NaN in float64 for the same input).

Derivatives (act_backward, and the element-wise backward ops) use the reference's order of
operations and are compared bit for bit.
"""
import re

import numpy as np
import pytest

pytest.importorskip("numba")

from fastnn.kernels.contract import Activation  # noqa: E402
from fastnn.kernels.cpu import activations as cpu  # noqa: E402
from fastnn.kernels.reference import activations as ref  # noqa: E402

TOL = {np.float32: 2e-6, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
SMOOTH = ["sigmoid", "tanh"]
CODES = {"identity": Activation.IDENTITY, "relu": Activation.RELU,
         "sigmoid": Activation.SIGMOID, "tanh": Activation.TANH}


def special_values(dtype):
    """+-0, +-inf, NaN, tiny and subnormal values of dtype."""
    fi = np.finfo(dtype)
    smallest_sub = np.nextafter(dtype(0), dtype(1))
    v = [0.0, np.inf, np.nan, 1e-30, 1e-38, fi.tiny, fi.tiny / 2, smallest_sub,
         smallest_sub * 3, fi.max, fi.eps, 1e-20, 1e-10]
    if dtype == np.float64:
        v += [1e-300, 1e-310, 1e-320]
    v = np.array(v, dtype)
    return np.concatenate([v, -v])


def edges(dtype):
    """Values around the forms' thresholds, a few steps either side of each."""
    centres = [0.25, 1.0, np.log(2) / 2, 8.0, 9.0, 10.0, 18.0, 20.0, 40.0,
               87.0, 87.33, 88.72, 89.0, 103.97, 104.0, 110.0,
               708.0, 709.78, 710.0, 744.44, 745.13, 746.0, 750.0]
    out = []
    for c in centres:
        if c > np.finfo(dtype).max:
            continue
        v = np.array(c, dtype)
        lo = v.copy()
        for _ in range(8):
            lo = np.nextafter(lo, dtype(-np.inf))
        run = [lo]
        for _ in range(16):
            run.append(np.nextafter(run[-1], dtype(np.inf)))
        out.append(np.array(run, dtype))
    e = np.concatenate(out)
    return np.concatenate([e, -e, np.linspace(-2e-3, 2e-3, 4001, dtype=dtype)])


def inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    parts = [np.linspace(-100, 100, 2_000_001, dtype=dtype),           # dense grid
             rng.uniform(-100, 100, 500_000).astype(dtype),             # random on [-100, 100]
             (np.sign(rng.standard_normal(200_000))                     # log-uniform magnitudes
              * 10.0 ** rng.uniform(-45 if dtype == np.float32 else -320, 3, 200_000)
              ).astype(dtype),
             special_values(dtype), edges(dtype)]
    if dtype == np.float32:                                             # every 4096th pattern
        bits = np.arange(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)
        parts.append(bits.view(np.float32))
    return np.concatenate(parts)


def rel_err(out, expected, dtype):
    """err of the module docstring, element by element (0 where expected is not finite)."""
    out_w, exp_w = out.astype(np.longdouble), expected.astype(np.longdouble)
    tiny = np.finfo(dtype).tiny
    with np.errstate(invalid="ignore"):
        err = np.abs(out_w - exp_w) / np.maximum(np.abs(exp_w), tiny)
    err[~np.isfinite(expected)] = 0
    return err


def check_specials(out, expected, x):
    """Same NaN positions; where x is +-inf or +-0, the same value with the same sign."""
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    pick = np.isinf(x) | (x == 0)
    np.testing.assert_array_equal(out[pick], expected[pick])
    np.testing.assert_array_equal(np.signbit(out[pick]), np.signbit(expected[pick]))
    zero = expected == 0
    np.testing.assert_array_equal(np.signbit(out[zero]), np.signbit(expected[zero]))


def truth(name, x):
    """sigmoid / tanh in a wider type: float64 for float32 inputs, long double for float64."""
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    with np.errstate(over="ignore", invalid="ignore"):
        xw = x.astype(wide)                          # (signalling NaN patterns warn)
        if name == "tanh":
            return np.tanh(xw)
        e = np.exp(-np.abs(xw))
        return np.where(xw >= 0, 1 / (1 + e), e / (1 + e))


def worst(err, x):
    i = int(np.argmax(err))
    return f"max err {err[i]:.3g} at x = {x[i]!r}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SMOOTH)
def test_forward_against_the_reference(name, dtype):
    x = inputs(dtype)
    expected, out = np.empty_like(x), np.empty_like(x)
    with np.errstate(all="ignore"):
        getattr(ref, f"{name}_forward")(x, expected)
    getattr(cpu, f"{name}_forward")(x, out)
    assert out.dtype == dtype
    err = rel_err(out, expected, dtype)
    assert err.max() <= TOL[dtype], worst(err, x)
    check_specials(out, expected, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SMOOTH)
def test_forward_against_a_wider_computation(name, dtype):
    if dtype == np.float64 and np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant:
        pytest.skip("long double is no wider than float64 here")
    x = inputs(dtype, seed=1)
    out = np.empty_like(x)
    getattr(cpu, f"{name}_forward")(x, out)
    exact = truth(name, x)
    # the wide value rounded to dtype is the best dtype can do; measure against the wide one
    err = rel_err(out, exact.astype(np.longdouble), dtype)
    err[np.isnan(x)] = 0
    assert err.max() <= TOL[dtype], worst(err, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["identity", "relu", "sigmoid", "tanh"])
def test_backward_is_the_reference_bit_for_bit(name, dtype):
    rng = np.random.default_rng(2)
    x = np.concatenate([special_values(dtype), rng.uniform(-30, 30, 100_000)]).astype(dtype)
    y = np.empty_like(x)
    with np.errstate(all="ignore"):
        getattr(ref, f"{name}_forward")(x, y)
    dy = rng.standard_normal(x.size).astype(dtype)
    dy[:6] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40]
    expected, dx = np.empty_like(x), np.empty_like(x)
    with np.errstate(all="ignore"):
        getattr(ref, f"{name}_backward")(x, y, dy, expected)
    getattr(cpu, f"{name}_backward")(x, y, dy, dx)
    np.testing.assert_array_equal(dx, expected)
    # the fused form of the dense layer and the compiled epoch, also in place (dz is dy)
    shape = (x.size // 500, 500)
    n = shape[0] * shape[1]
    y2, dy2, exp2 = y[:n].reshape(shape), dy[:n].reshape(shape), expected[:n].reshape(shape)
    dz = np.empty_like(dy2)
    cpu.act_backward(y2, dy2, dz, int(CODES[name]))
    np.testing.assert_array_equal(dz, exp2)
    inplace = dy2.copy()
    cpu.act_backward(y2, inplace, inplace, int(CODES[name]))
    np.testing.assert_array_equal(inplace, exp2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["identity", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape", [(64, 1000), (3, 7), (1, 1), (0, 5)])
def test_bias_act_on_a_block(name, dtype, shape):
    rng = np.random.default_rng(3)
    z = (rng.standard_normal(shape) * 20).astype(dtype)
    if z.size > 16:
        z.reshape(-1)[:len(special_values(dtype))] = special_values(dtype)[:z.size]
    b = (rng.standard_normal(shape[1]) * 3).astype(dtype)
    expected = np.empty_like(z)
    with np.errstate(all="ignore"):
        ref.ACTIVATIONS[CODES[name]][0](z + b, expected)       # z + b in dtype, as the kernel
    out = z.copy()
    cpu.bias_act(out, b, int(CODES[name]))
    if name in ("identity", "relu"):
        np.testing.assert_array_equal(out, expected)
    else:
        err = rel_err(out, expected, dtype)
        assert err.size == 0 or err.max() <= TOL[dtype], worst(err, (z + b).reshape(-1))
    check_specials(out.reshape(-1), expected.reshape(-1), (z + b).reshape(-1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["identity", "relu", "sigmoid", "tanh"])
def test_in_place_forms(name, dtype):
    """out is x, dx is dy (the in-place loops of the kernels): the same values."""
    rng = np.random.default_rng(4)
    x = np.concatenate([special_values(dtype), rng.uniform(-30, 30, 10_000)]).astype(dtype)
    expected = np.empty_like(x)
    with np.errstate(all="ignore"):
        getattr(ref, f"{name}_forward")(x, expected)
    y = x.copy()
    getattr(cpu, f"{name}_forward")(y, y)
    np.testing.assert_array_equal(y, _forward(name, x))
    if name in ("identity", "relu"):
        np.testing.assert_array_equal(y, expected)
    dy = rng.standard_normal(x.size).astype(dtype)
    dx_expected = np.empty_like(x)
    with np.errstate(all="ignore"):
        getattr(ref, f"{name}_backward")(x, expected, dy, dx_expected)
    g = dy.copy()
    getattr(cpu, f"{name}_backward")(x, expected, g, g)
    np.testing.assert_array_equal(g, dx_expected)


def _forward(name, x):
    out = np.empty_like(x)
    getattr(cpu, f"{name}_forward")(x, out)
    return out


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_bias_act_on_a_strided_block(name):
    """A (N, F) view of a wider buffer (rows not adjacent): the same as on a copy."""
    rng = np.random.default_rng(5)
    wide = rng.standard_normal((40, 300)).astype(np.float32) * 10
    b = rng.standard_normal(250).astype(np.float32)
    view, block = wide[:, 20:270], wide[:, 20:270].copy()
    cpu.bias_act(view, b, int(CODES[name]))
    cpu.bias_act(block, b, int(CODES[name]))
    np.testing.assert_array_equal(view, block)


def test_relu_matches_the_reference_at_the_edges():
    """max(x, 0) as NumPy's: -0.0 and -inf give +0.0, NaN stays NaN."""
    for dtype in DTYPES:
        x = special_values(dtype)
        expected, out = np.empty_like(x), np.empty_like(x)
        ref.relu_forward(x, expected)
        cpu.relu_forward(x, out)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))


# --------------------------------------------------------------------------- vectorisation


def _fresh_compile(kernel, flags, sig):
    """LLVM IR and assembly of a fresh compile of ``kernel`` (inspection is off for functions
    loaded from Numba's cache)."""
    import numba
    flags = {k: v for k, v in flags.items() if k != "cache"}
    fn_ = numba.njit(**flags)(kernel.py_func)
    fn_.compile(sig)
    return fn_.inspect_llvm(sig), fn_.inspect_asm(sig)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_branch_is_a_vector_loop(dtype):
    """bias_act, act_backward and the element-wise loops: one vectorised loop (or more) per
    activation code, no libm exp/tanh left, the arithmetic of the dtype's width."""
    import numba
    if numba.config.DISABLE_JIT:
        pytest.skip("JIT disabled")
    nb = getattr(numba, dtype)
    a1, a2 = numba.types.Array(nb, 1, "C"), numba.types.Array(nb, 2, "C")
    i64 = numba.int64
    cases = [(cpu.bias_act, cpu._KERNEL, (a2, a1, i64), 4),
             (cpu.act_backward, cpu._KERNEL, (a2, a2, a2, i64), 7),
             (cpu._act_in_place, cpu._KERNEL, (a1, i64), 3),
             (cpu._act_forward_flat, cpu._KERNEL, (a1, a1, i64), 7),
             (cpu._act_backward_flat, cpu._KERNEL, (a1, a1, a1, i64), 7)]
    element = "float" if dtype == "float32" else "double"
    other = "double" if dtype == "float32" else "float"
    for kernel, flags, sig, branches in cases:
        ll, asm = _fresh_compile(kernel, flags, sig)
        name = kernel.py_func.__name__
        assert len(re.findall(r"^vector\.body[\w.]*:", ll, re.M)) >= branches, name
        assert re.search(rf"<(?:4|8|16) x {element}>", ll), name
        assert not re.search(rf"<\d+ x {other}>", ll), f"{name}: mixed precision"
        assert not re.search(r"@(?:llvm\.)?(?:exp|tanh)(?:f|\.f32|\.f64)?\b", ll), name
        # x86: no masked store (vmaskmovps/pd to memory), microcoded and slow on AMD
        assert not re.search(r"vmaskmovp[sd]\s+%[xy]mm\d+,\s*%[xy]mm\d+,\s*\S*\(", asm), name
