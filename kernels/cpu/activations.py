"""Activations on the CPU, in Numba; and the fused activation code of the dense and conv kernels.

Same signatures as :mod:`fastnn.kernels.reference.activations`. The fusable activations are
selected by their :class:`~fastnn.kernels.contract.Activation` code (a small int) inside
compiled loops, so the bias add and the activation are one pass over the output, and the
activation's derivative is one pass over the gradient. Nothing here allocates.
"""
import math

from numba import njit

from ..contract import Activation
from .common import exp_shifted

IDENTITY, RELU, SIGMOID, TANH = (int(a) for a in (Activation.IDENTITY, Activation.RELU,
                                                  Activation.SIGMOID, Activation.TANH))
"""The Activation codes as plain ints, the constants the compiled loops branch on."""


# --------------------------------------------------------------------------- the fusable ones


@njit(cache=True, inline="always")
def _act(v, code):
    if code == RELU:
        return v if v > 0 else v * 0
    if code == SIGMOID:
        if v >= 0:
            return 1 / (1 + math.exp(-v))
        e = math.exp(v)
        return e / (1 + e)
    if code == TANH:
        return math.tanh(v)
    return v


@njit(cache=True, inline="always")
def _act_grad_from_output(y, code):
    """d act / d input, expressed through the output y."""
    if code == RELU:
        return 1 if y > 0 else 0
    if code == SIGMOID:
        return y * (1 - y)
    if code == TANH:
        return 1 - y * y
    return 1


@njit(cache=True)
def bias_act(out, b, code):
    """out[i, j] = act(out[i, j] + b[j]) in one pass. out (N, F), b (F,)."""
    n, f = out.shape
    for i in range(n):
        for j in range(f):
            out[i, j] = _act(out[i, j] + b[j], code)


@njit(cache=True)
def act_backward(y, dy, dz, code):
    """dz = dy * act'(.) from the output y; all (N, F), dz may be dy itself."""
    n, f = y.shape
    for i in range(n):
        for j in range(f):
            dz[i, j] = dy[i, j] * _act_grad_from_output(y[i, j], code)


@njit(cache=True)
def _act_forward_flat(x, out, code):
    for i in range(x.size):
        out[i] = _act(x[i], code)


@njit(cache=True)
def _act_backward_flat(y, dy, dx, code):
    for i in range(y.size):
        dx[i] = dy[i] * _act_grad_from_output(y[i], code)


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
