"""Activations on the CPU, in Numba; and the fused activation code of the dense and conv kernels.

Same signatures as :mod:`fastnn.kernels.reference.activations`. The fusable activations are
selected by their :class:`~fastnn.kernels.contract.Activation` code (a small int), so the bias
add and the activation are one pass over the output, and the activation's derivative is one
pass over the gradient. Nothing here allocates.

Vectorised forms. The loops branch on the code once, outside the loop, and every branch is a
loop LLVM vectorises (``<8 x float>`` / ``<4 x double>`` on AVX2): no libm call, no branch on
the data (selects only), arithmetic in the array's dtype (constants through :func:`_c`),
divisions through :func:`_div` (one IEEE division, so Numba's ZeroDivisionError check cannot
keep a caller's loop scalar). No loop lets LLVM fuse multiply-adds (fastmath "contract"):
with it the vectorised body fused them and the scalar remainder did not, so an element's bits
depended on its position relative to the vector width (on an AVX-512 CPU, 16 floats), and a
strided block differed from its contiguous copy.

- ``_exp(x)``: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2 (k rounded to nearest by the
  1.5 * 2**(mantissa bits) shift; ln2 split in a high part short enough that k * ln2_hi is
  exact, and the rest); exp(r) by a minimax polynomial (Lawson's iteration), degree 6 in
  float32 (approximation error 3.1e-9) and 10 in float64 (4.4e-16); times 2**k built from the
  exponent bits, in two halves so that a subnormal result is rounded once and 2**128 need not
  exist (:func:`_times_pow2`). x is clamped to [-110, 89] (float32) / [-750, 710] (float64)
  first: what overflows is inf, what underflows is 0 or the subnormal value; NaN stays NaN.
- ``sigmoid(v) = 1 / (1 + e)`` for v >= 0 and ``e / (1 + e)`` otherwise, e = exp(-|v|): the
  reference's stable form, one division, the numerator picked by a select.
- ``tanh(v) = sign(v) (1 - e) / (1 + e)``, e = exp(-2|v|), for |v| >= 1/4 (the error of e is
  amplified at most 1.9 times there); below, where 1 - e cancels, the odd minimax polynomial
  v (1 + v**2 Q(v**2)), Q of degree 2 in float32 (approximation error 2.9e-9) and 5 in float64
  (6.9e-16): tiny and subnormal v give v, -0.0 gives -0.0. exp's argument is clamped at -20
  (float32) / -40 (float64), where the quotient is 1 already, so 2**k is one power of two.
- Derivatives from the output, in the reference's order of operations (the same bits):
  ``dy * y * (1 - y)``, ``dy * (1 - y * y)``, ``dy where y > 0 else 0``.
- ReLU is NumPy's max(v, 0): -0.0 and -inf give +0.0, NaN stays NaN.

Measured (tests/test_cpu_activations.py: err = |out - ref| / max(|ref|, smallest normal), over
a dense grid and random values on [-100, 100], a stride through every float32 bit pattern,
tiny, subnormal and threshold values): against the reference at most 2.5e-7 in float32
(sigmoid and tanh; bound 2e-6) and 8.1e-16 in float64 (bound 1e-12); against a wider
computation 1.7e-7 (float32, 2.9 half-ulps) and 7.9e-16 (float64, long double). +-inf and
+-0 give the reference's values, NaN gives NaN (its sign bit is not specified).

Speed, (128, 1024) float32, one core of a 2-core Zen 4 shared with other work (benchmarks/
bench_kernels.py group "activation", min times): bias + sigmoid 100 us, bias + tanh 109-112 us
(0.8 ns an element; 38 / 42 instructions per 8 lanes, one vdivps), 8-12x the memory-bound
bias + ReLU (9-13 us); the derivative passes are within 6% of ReLU's (25 us); a whole Dense
layer (784 -> 400, batch 32, one thread) takes 266 us forward with ReLU, 275 with sigmoid, 277
with tanh (1.03-1.04x), its backward the same within the noise. Before (scalar libm calls,
a branch on the code per element): bias + sigmoid 7.6x and bias + tanh 23x slower.

Numba's cache keys a function on its own file only: the kernels of dense.py, conv.py,
conv_direct.py and compiled_epoch.py that inline or call these forms keep their cached copies
of the old ones until their cache files (kernels/cpu/__pycache__/<module>.*.nbi/.nbc) go.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from ..contract import Activation
from .common import exp_shifted

IDENTITY, RELU, SIGMOID, TANH = (int(a) for a in (Activation.IDENTITY, Activation.RELU,
                                                  Activation.SIGMOID, Activation.TANH))
"""The Activation codes as plain ints, the constants the compiled loops branch on."""

_KERNEL = dict(cache=True, error_model="numpy")


# --------------------------------------------------------------------------- scalar building blocks


@intrinsic
def _div(typingctx, a, b):
    """a / b as one IEEE division (inf or NaN for b == 0), whatever the caller's error model."""
    if not (isinstance(a, types.Float) and a == b):
        raise TypingError(f"_div needs two floats of one type, got {a}, {b}")

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])
    return a(a, b), codegen


def _pow2_codegen(halves):
    def codegen(context, builder, sig, args):
        pv, kv = args
        bits, mantissa, bias = (32, 23, 127) if sig.args[0].bitwidth == 32 else (64, 52, 1023)
        i32, it = ir.IntType(32), ir.IntType(bits)
        kv = builder.select(builder.fcmp_ordered("==", kv, kv), kv, ir.Constant(kv.type, 0.0))
        ki = builder.fptosi(kv, i32)

        def pow2(kk):                                # 2**kk from its exponent bits
            if bits == 64:
                kk = builder.sext(kk, it)
            biased = builder.add(kk, ir.Constant(it, bias))
            return builder.bitcast(builder.shl(biased, ir.Constant(it, mantissa)), pv.type)
        if not halves:
            return builder.fmul(pv, pow2(ki))
        k1 = builder.ashr(ki, ir.Constant(i32, 1))
        return builder.fmul(builder.fmul(pv, pow2(k1)), pow2(builder.sub(ki, k1)))
    return codegen


def _pow2_signature(name, p, k):
    if not (isinstance(p, types.Float) and p == k):
        raise TypingError(f"{name} needs two floats of one type, got {p}, {k}")
    return p(p, k)


@intrinsic
def _times_pow2(typingctx, p, k):
    """p * 2**k for an integral k of p's float type, |k| <= 250 (float32) / 2040 (float64).

    2**k is two powers of two, 2**(k >> 1) and 2**(k - (k >> 1)), each built from its exponent
    bits (both normal numbers over that range): p (about 1) times the first stays normal, the
    second multiplication rounds once, into the subnormal range or to inf where the result
    lies there. A NaN k counts as 0 (the caller's p is NaN then).
    """
    return _pow2_signature("_times_pow2", p, k), _pow2_codegen(True)


@intrinsic
def _times_pow2_normal(typingctx, p, k):
    """p * 2**k for an integral k with 2**k normal (-126 <= k <= 127 in float32, -1022 <= k <=
    1023 in float64): one power of two from its exponent bits. A NaN k counts as 0."""
    return _pow2_signature("_times_pow2_normal", p, k), _pow2_codegen(False)


_CONSTANTS = {
    32: dict(ONE=1.0, ZERO=0.0, MINUS_TWO=-2.0,
             EXP_LO=-110.0, EXP_HI=89.0,           # exp underflows to 0 / overflows to inf
             LOG2E=1.4426950408889634, SHIFT=1.5 * 2**23,
             LN2_HI=0.693359375,                   # 9 significant bits: k * LN2_HI is exact
             LN2_LO=-2.1219444005469057e-04,       # ln 2 - LN2_HI
             TANH_SMALL=0.25,                      # below: the odd polynomial
             TANH_EXP_LO=-20.0),                   # exp(-20) < 2**-25: (1 - e) / (1 + e) is 1
    64: dict(ONE=1.0, ZERO=0.0, MINUS_TWO=-2.0,
             EXP_LO=-750.0, EXP_HI=710.0,
             LOG2E=1.4426950408889634, SHIFT=1.5 * 2**52,
             LN2_HI=float.fromhex("0x1.62e42fee00000p-1"),   # 32 significant bits (fdlibm's)
             LN2_LO=1.9082149292705877e-10,
             TANH_SMALL=0.25,
             TANH_EXP_LO=-40.0),                   # exp(-40) < 2**-54
}
"""The constants of the scalar forms per float width, read as constants of the array's dtype
through :func:`_c`."""

_EXP_POLY = {
    # exp(r) ~ 1 + r + r**2 (c2 + c3 r + ...) on |r| <= ln2/2, minimax relative (Lawson's
    # iteration), approximation error 3.1e-9 (degree 6) and 4.4e-16 (degree 10)
    32: (0.49999993451647645, 0.16666520688957415, 0.041668387370286816, 0.008368709928115912,
         0.0013814613182853742),
    64: (0.4999999999999841, 0.1666666666661111, 0.041666666668140465, 0.008333333371075169,
         0.0013888888516620738, 0.00019841184957170282, 2.4801929807429044e-05,
         2.7635109018135586e-06, 2.747793507248698e-07),
}
_TANH_POLY = {
    # tanh(v) ~ v (1 + s (c3 + c5 s + ...)), s = v**2, on |v| <= 1/4, minimax relative,
    # approximation error 2.9e-9 (degree 7) and 6.9e-16 (degree 13)
    32: (-0.3333324008772954, 0.13324236600016512, -0.05143002472620626),
    64: (-0.3333333333326754, 0.13333333312819406, -0.053968232659275014, 0.021868468955705694,
         -0.00883848120302231, 0.0032938125638322727),
}


def _c(like, name):
    """The constant ``name`` of :data:`_CONSTANTS` in the float type of ``like`` (compiled:
    a constant of that type; ``name`` must be a literal string)."""
    return type(like)(_CONSTANTS[np.dtype(type(like)).itemsize * 8][name])


@overload(_c)
def _c_typed(like, name):
    if isinstance(like, types.Float) and isinstance(name, types.StringLiteral):
        value = (np.float32 if like.bitwidth == 32 else np.float64)(
            _CONSTANTS[like.bitwidth][name.literal_value])
        return lambda like, name: value


def _exp_poly(r):
    """1 + r + r**2 (c2 + c3 r + ...) of :data:`_EXP_POLY` for r's dtype, by Horner (compiled
    only: the overload below)."""


_E32 = tuple(np.float32(c) for c in _EXP_POLY[32])
_E64 = tuple(np.float64(c) for c in _EXP_POLY[64])
_T32 = tuple(np.float32(c) for c in _TANH_POLY[32])
_T64 = tuple(np.float64(c) for c in _TANH_POLY[64])


def _exp_poly32(r):
    c = _E32
    p = ((((c[4] * r + c[3]) * r + c[2]) * r + c[1]) * r + c[0]) * r * r
    return (p + r) + np.float32(1)


def _exp_poly64(r):
    c = _E64
    p = ((((((((c[8] * r + c[7]) * r + c[6]) * r + c[5]) * r + c[4]) * r + c[3]) * r + c[2])
          * r + c[1]) * r + c[0]) * r * r
    return (p + r) + np.float64(1)


def _tanh_poly(s):
    """c3 + c5 s + c7 s**2 + ... of :data:`_TANH_POLY` for s's dtype, by Horner (compiled
    only)."""


def _tanh_poly32(s):
    c = _T32
    return (c[2] * s + c[1]) * s + c[0]


def _tanh_poly64(s):
    c = _T64
    return ((((c[5] * s + c[4]) * s + c[3]) * s + c[2]) * s + c[1]) * s + c[0]


@overload(_exp_poly)
def _exp_poly_typed(r):
    return {types.float32: _exp_poly32, types.float64: _exp_poly64}.get(r)


@overload(_tanh_poly)
def _tanh_poly_typed(s):
    return {types.float32: _tanh_poly32, types.float64: _tanh_poly64}.get(s)


@njit
def _exp_reduced(x):
    """(p, k) with exp(x) = p * 2**k: k = round(x / ln2) (by the shift), r = x - k ln2 in two
    steps (Cody-Waite), p = exp(r) by the polynomial. x within the clamp range, or NaN."""
    shift = _c(x, "SHIFT")
    k = (x * _c(x, "LOG2E") + shift) - shift
    r = (x - k * _c(x, "LN2_HI")) - k * _c(x, "LN2_LO")
    return _exp_poly(r), k


@njit
def _exp(x):
    """exp(x) in x's dtype: inf where it overflows, 0 or the subnormal value where it
    underflows, NaN for NaN."""
    hi, lo = _c(x, "EXP_HI"), _c(x, "EXP_LO")
    xh = hi if x > hi else x                         # NaN passes both selects
    xc = lo if xh < lo else xh
    p, k = _exp_reduced(xc)
    return _times_pow2(p, k)


@njit
def _sigmoid(v):
    """1 / (1 + e) for v >= 0, e / (1 + e) otherwise, e = exp(-|v|) (one division)."""
    one = _c(v, "ONE")
    e = _exp(-abs(v))
    return _div(one if v >= _c(v, "ZERO") else e, one + e)       # NaN: e / (1 + e), NaN


@njit
def _tanh(v):
    """sign(v) (1 - e) / (1 + e), e = exp(-2|v|), for |v| >= TANH_SMALL; the odd polynomial
    below. exp's argument is clamped at TANH_EXP_LO, where the quotient is 1 already, so 2**k
    is one normal power of two."""
    one, a = _c(v, "ONE"), abs(v)
    x = _c(v, "MINUS_TWO") * a
    lo = _c(v, "TANH_EXP_LO")
    p, k = _exp_reduced(lo if x < lo else x)         # NaN passes
    e = _times_pow2_normal(p, k)
    big = _div(one - e, one + e)
    big = -big if v < _c(v, "ZERO") else big         # NaN keeps the sign of (1 - e) / (1 + e)
    s = v * v
    small = v * (one + s * _tanh_poly(s))            # -0.0 stays -0.0, subnormals stay
    return small if a < _c(v, "TANH_SMALL") else big


@njit
def _relu(v):
    zero = _c(v, "ZERO")
    return zero if v <= zero else v                  # -0.0 and -inf give +0.0, NaN stays


# --------------------------------------------------------------------------- the fusable ones


@njit(cache=True, inline="always")
def _act(v, code):
    """act(v) for one element (the conv kernels' fused bias pass); branches on ``code``, a loop
    invariant there: LLVM unswitches the loop and vectorises each copy (checked for
    conv_direct's crop: <8 x float> sigmoid and tanh loops)."""
    if code == RELU:
        return _relu(v)
    if code == SIGMOID:
        return _sigmoid(v)
    if code == TANH:
        return _tanh(v)
    return v


@njit(cache=True, inline="always")
def _act_grad_from_output(y, code):
    """d act / d input, expressed through the output y, in y's dtype (the conv kernels)."""
    one = _c(y, "ONE")
    if code == RELU:
        zero = _c(y, "ZERO")
        return one if y > zero else zero
    if code == SIGMOID:
        return y * (one - y)
    if code == TANH:
        return one - y * y
    return one


@njit(**_KERNEL)
def _act_in_place(x, code):
    """x[i] = act(x[i]) for a 1-D array (one array: no aliasing check to fail in place).

    ReLU adds +0.0 first (relu(v + 0) is relu(v) for every v, -0.0 included): storing
    ``select(v <= 0, 0, v)`` back where v was loaded, LLVM's x86 backend emits a masked store
    (vmaskmovps), 6x slower on AMD."""
    zero = x.dtype.type(0)
    if code == RELU:
        for i in range(x.size):
            x[i] = _relu(x[i] + zero)
    elif code == SIGMOID:
        for i in range(x.size):
            x[i] = _sigmoid(x[i])
    elif code == TANH:
        for i in range(x.size):
            x[i] = _tanh(x[i])


@njit(**_KERNEL)
def bias_act(out, b, code):
    """out[i, j] = act(out[i, j] + b[j]) in one pass. out (N, F), b (F,); vectorised loops, one
    set per activation code. Sigmoid and tanh add the bias to a row, then run the activation
    in place over it (:func:`_act_in_place`, the row still in L1): written as one loop over
    the row, LLVM kept too few of the polynomials' constants in registers (AVX2 has 16) and
    the pass took 1.3x as long."""
    n, f = out.shape
    if code == RELU:
        for i in range(n):
            row = out[i]
            for j in range(f):
                row[j] = _relu(row[j] + b[j])
    elif code == SIGMOID or code == TANH:
        for i in range(n):
            row = out[i]
            for j in range(f):
                row[j] += b[j]
            _act_in_place(row, code)
    else:
        for i in range(n):
            row = out[i]
            for j in range(f):
                row[j] = row[j] + b[j]


@njit(**_KERNEL)
def _act_forward_flat(x, out, code):
    """out = act(x), 1-D; out may be x itself (then :func:`_act_in_place`: the aliasing check
    of a two-array loop fails there and the loop runs scalar)."""
    if x.ctypes.data == out.ctypes.data:
        _act_in_place(out, code)
        return
    if code == RELU:
        for i in range(x.size):
            out[i] = _relu(x[i])
    elif code == SIGMOID:
        for i in range(x.size):
            out[i] = _sigmoid(x[i])
    elif code == TANH:
        for i in range(x.size):
            out[i] = _tanh(x[i])
    else:
        for i in range(x.size):
            out[i] = x[i]


@njit(**_KERNEL)
def _act_backward_flat(y, dy, dx, code):
    """dx = dy * act'(.) from the output y, 1-D, in the reference's order of operations (the
    same bits); dx may be dy itself.

    In place, the loops read and write one array: with dy and dx as two names of it, LLVM's
    runtime aliasing check failed and the loops ran scalar. The ReLU select is written in the
    loop (a branch Numba hands to LLVM, if-converted to a masked load): computed in a helper
    as a select of the loaded value, LLVM turned the in-place form into a masked store, 4x
    slower on AMD.
    """
    one, zero = dx.dtype.type(1), dx.dtype.type(0)
    if dy.ctypes.data == dx.ctypes.data:
        if code == RELU:
            for i in range(dx.size):
                dx[i] = dx[i] if y[i] > zero else zero
        elif code == SIGMOID:
            for i in range(dx.size):
                v = y[i]
                dx[i] = dx[i] * v * (one - v)
        elif code == TANH:
            for i in range(dx.size):
                v = y[i]
                dx[i] = dx[i] * (one - v * v)
        return
    if code == RELU:
        for i in range(dx.size):
            dx[i] = dy[i] if y[i] > zero else zero
    elif code == SIGMOID:
        for i in range(dx.size):
            v = y[i]
            dx[i] = dy[i] * v * (one - v)
    elif code == TANH:
        for i in range(dx.size):
            v = y[i]
            dx[i] = dy[i] * (one - v * v)
    else:
        for i in range(dx.size):
            dx[i] = dy[i]


@njit(**_KERNEL)
def act_backward(y, dy, dz, code):
    """dz = dy * act'(.) from the output y; all (N, F), dz may be dy itself (the compiled
    epoch's case). Row by row through :func:`_act_backward_flat`: in the reference's order of
    operations (the same bits), one vectorised loop per code, in place too."""
    for i in range(y.shape[0]):
        _act_backward_flat(y[i], dy[i], dz[i], code)


def _make_activation(act):
    code = int(act)
    name = act.name.lower()

    def forward(x, out):
        _act_forward_flat(x.reshape(-1), out.reshape(-1), code)

    def backward(x, y, dy, dx):
        _act_backward_flat(y.reshape(-1), dy.reshape(-1), dx.reshape(-1), code)

    forward.__name__, backward.__name__ = f"{name}_forward", f"{name}_backward"
    forward.__qualname__, backward.__qualname__ = forward.__name__, backward.__name__
    forward.__doc__ = f"{name} of every element: out = {name}(x) (any shape, contiguous)."
    backward.__doc__ = f"dx = dy * {name}'(x), computed from the output y."
    return forward, backward


sigmoid_forward, sigmoid_backward = _make_activation(Activation.SIGMOID)
tanh_forward, tanh_backward = _make_activation(Activation.TANH)
relu_forward, relu_backward = _make_activation(Activation.RELU)


@njit(cache=True)
def _copy_flat(src, dst):
    for i in range(src.size):
        dst[i] = src[i]


def identity_forward(x, out):
    """out = x (any shape, contiguous)."""
    _copy_flat(x.reshape(-1), out.reshape(-1))


def identity_backward(x, y, dy, dx):
    """dx = dy (x and y are not read)."""
    _copy_flat(dy.reshape(-1), dx.reshape(-1))


# --------------------------------------------------------------------------- leaky ReLU, PReLU


@njit(cache=True)
def _leaky_relu_forward(x, out, slope):
    s = x.dtype.type(slope)
    for i in range(x.size):
        v = x[i]
        out[i] = v if v > 0 else s * v


@njit(cache=True)
def _leaky_relu_backward(x, dy, dx, slope):
    s = x.dtype.type(slope)
    for i in range(x.size):
        dx[i] = dy[i] if x[i] > 0 else s * dy[i]


def leaky_relu_forward(x, out, negative_slope=0.01):
    """out = x where x > 0, else negative_slope * x (any shape, contiguous)."""
    _leaky_relu_forward(x.reshape(-1), out.reshape(-1), float(negative_slope))


def leaky_relu_backward(x, y, dy, dx, negative_slope=0.01):
    """dx = dy where x > 0, else negative_slope * dy (y is not read)."""
    _leaky_relu_backward(x.reshape(-1), dy.reshape(-1), dx.reshape(-1), float(negative_slope))


def _slope_view(x, a):
    """x as (N, C, S) with C = a.size: the slope index runs along axis 1 of x (per feature of
    (N, F), per channel of (N, C, H, W)); one shared slope sees x as (1, 1, size)."""
    if a.size == 1:
        return x.reshape(1, 1, -1)
    return x.reshape(x.shape[0], x.shape[1], -1)


@njit(cache=True)
def _prelu_forward(x, a, out):
    n, c, s = x.shape
    for i in range(n):
        for ch in range(c):
            ai = a[ch]
            for k in range(s):
                v = x[i, ch, k]
                out[i, ch, k] = v if v > 0 else ai * v


@njit(cache=True)
def _prelu_backward(x, a, dy, dx, da, accumulate):
    n, c, s = x.shape
    for ch in range(c):
        ai = a[ch]
        acc = 0.0
        for i in range(n):
            for k in range(s):
                v, g = x[i, ch, k], dy[i, ch, k]
                if v > 0:
                    dx[i, ch, k] = g
                else:
                    dx[i, ch, k] = ai * g
                    acc += g * v
        if accumulate:
            da[ch] += acc
        else:
            da[ch] = acc


def prelu_forward(x, a, out):
    """out = x where x > 0, else a * x; a (1,) shared or (C,) along axis 1 of x."""
    _prelu_forward(_slope_view(x, a), a.reshape(-1), _slope_view(out, a))


def prelu_backward(x, a, dy, dx, da, accumulate=False):
    """dx = dy * (1 if x > 0 else a); da = sum of dy * x where x <= 0 (accumulated in float64),
    written or added when ``accumulate``."""
    _prelu_backward(_slope_view(x, a), a.reshape(-1), _slope_view(dy, a), _slope_view(dx, a),
                    da.reshape(-1), bool(accumulate))


# --------------------------------------------------------------------------- softmax family


@njit(cache=True)
def softmax_forward(x, out):
    """Row-wise softmax of (N, K), max-subtracted."""
    for i in range(x.shape[0]):
        _, s = exp_shifted(x[i], out[i])
        out[i] *= 1.0 / s


@njit(cache=True)
def softmax_backward(x, y, dy, dx):
    n, k = y.shape
    for i in range(n):
        s = 0.0
        for j in range(k):
            s += dy[i, j] * y[i, j]
        for j in range(k):
            dx[i, j] = y[i, j] * (dy[i, j] - s)


@njit(cache=True)
def log_softmax_forward(x, out):
    """Row-wise log-softmax of (N, K): x - logsumexp(x) (``out`` is scratch for the exps)."""
    for i in range(x.shape[0]):
        m, s = exp_shifted(x[i], out[i])
        lse = m + math.log(s)
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] - lse


@njit(cache=True)
def log_softmax_backward(x, y, dy, dx):
    n, k = y.shape
    for i in range(n):
        s = 0.0
        for j in range(k):
            s += dy[i, j]
        for j in range(k):
            dx[i, j] = dy[i, j] - math.exp(y[i, j]) * s


# --------------------------------------------------------------------------- maxout


@njit(cache=True)
def maxout_forward(x, out, argmax, pieces):
    """Max over groups of ``pieces`` consecutive features: x (N, F * pieces), out (N, F),
    argmax (N, F) intp (the winner's index in its group; the first maximum on ties, the
    first NaN where there is one, as NumPy's argmax)."""
    n, f = out.shape
    for i in range(n):
        row = x[i]
        for j in range(f):
            base = j * pieces
            best = row[base]
            win = 0
            p = 1
            while p < pieces and best == best:      # stop at a NaN: it wins
                v = row[base + p]
                if v > best or v != v:
                    best = v
                    win = p
                p += 1
            out[i, j] = best
            argmax[i, j] = win


@njit(cache=True)
def maxout_backward(argmax, dy, dx, pieces):
    """dx (N, F * pieces) written: dy routed to each group's winner, 0 elsewhere."""
    n, f = dy.shape
    zero = dx.dtype.type(0)
    for i in range(n):
        for j in range(f):
            base = j * pieces
            win = argmax[i, j]
            for p in range(pieces):
                dx[i, base + p] = dy[i, j] if p == win else zero
