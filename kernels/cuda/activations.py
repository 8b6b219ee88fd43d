"""Activations on the device: element-wise (any shape, seen flat), row-wise (softmax family on
(N, K)) and grouped (maxout). One launch each, forward or backward.

Same signatures as :mod:`fastnn.kernels.reference.activations`. The fusable activations (one
per :class:`~fastnn.kernels.contract.Activation`) share the device functions of :mod:`.common`
with the GEMM epilogue, so ``Dense + ReLU`` fused and unfused agree bit for bit. PReLU's
backward is a per-channel reduction (the slope gradient) in the layout of :mod:`.reduce`.
"""
import math

from numba import cuda, float64

from ..contract import Activation
from .common import THREADS, act_backward, act_forward, flat, larger, launch_1d
from .reduce import (channel_element, channel_of_thread, channel_total, channels, launch_channels,
                     store_total)


# --------------------------------------------------------------------------- element-wise


@cuda.jit
def _act_forward(x, out, code):
    """out = act(x). x, out: (n,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        out[i] = act_forward(x[i], code)


@cuda.jit
def _act_backward(y, dy, dx, code):
    """dx = dy * act'(.) from the output y. y, dy, dx: (n,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, y.size, step):
        dx[i] = act_backward(y[i], dy[i], code)


def _make_activation(act):
    code, name = int(act), act.name.lower()

    def forward(x, out):
        xf = flat(x)
        launch_1d(_act_forward, xf.size, xf, flat(out), code)

    def backward(x, y, dy, dx):
        yf = flat(y)
        launch_1d(_act_backward, yf.size, yf, flat(dy), flat(dx), code)

    forward.__name__, backward.__name__ = f"{name}_forward", f"{name}_backward"
    forward.__doc__ = f"out = {name}(x), element-wise on device arrays of any shape (one launch)."
    backward.__doc__ = f"dx = dy * {name}'(x), computed from the output y (one launch)."
    return forward, backward


identity_forward, identity_backward = _make_activation(Activation.IDENTITY)
sigmoid_forward, sigmoid_backward = _make_activation(Activation.SIGMOID)
tanh_forward, tanh_backward = _make_activation(Activation.TANH)
relu_forward, relu_backward = _make_activation(Activation.RELU)


@cuda.jit
def _leaky_forward(x, out, slope):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        v = x[i]
        out[i] = v if v > 0 else slope * v


@cuda.jit
def _leaky_backward(x, dy, dx, slope):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        dx[i] = dy[i] if x[i] > 0 else slope * dy[i]


def leaky_relu_forward(x, out, negative_slope=0.01):
    """out = x where x > 0 else negative_slope * x (any shape)."""
    xf = flat(x)
    launch_1d(_leaky_forward, xf.size, xf, flat(out), negative_slope)


def leaky_relu_backward(x, y, dy, dx, negative_slope=0.01):
    """dx = dy where x > 0 else negative_slope * dy (any shape)."""
    xf = flat(x)
    launch_1d(_leaky_backward, xf.size, xf, flat(dy), flat(dx), negative_slope)


@cuda.jit
def _prelu_forward(x, a, out, f, p, per_channel):
    """out = x where x > 0 else a[c] * x, c = (i // p) % f the axis-1 channel (or 0)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        v = x[i]
        if v > 0:
            out[i] = v
        else:
            out[i] = a[(i // p) % f if per_channel else 0] * v


def prelu_forward(x, a, out):
    """Parametric ReLU; ``a`` is (1,) shared or one slope per axis-1 channel (F,) / (C,)."""
    xf = flat(x)
    per_channel = a.size > 1
    f = x.shape[1] if per_channel else 1
    p = xf.size // (x.shape[0] * f) if xf.size else 1
    launch_1d(_prelu_forward, xf.size, xf, flat(a), flat(out), f, p, per_channel)


@cuda.jit
def _prelu_backward(x, a, dy, dx, da, outer, f, p, beta):
    """dx = dy where x > 0 else a[j] * dy; da[j] = beta * da[j] + sum of dy * x where x <= 0."""
    sh = cuda.shared.array(THREADS, float64)
    j, ty, ry = channel_of_thread()
    s = 0.0
    if j < f:
        slope = a[j]
        for e in range(ty, outer * p, ry):
            i = channel_element(e, j, f, p)
            if x[i] > 0:
                dx[i] = dy[i]
            else:
                dx[i] = slope * dy[i]
                s += dy[i] * x[i]
    total = channel_total(sh, s)
    if ty == 0 and j < f:
        store_total(da, j, total, beta)


def prelu_backward(x, a, dy, dx, da, accumulate=False):
    """dx = dy * (1 if x > 0 else a); da (+)= sum of dy * x over the positions where x <= 0.

    x, dy, dx : (N, F) or (N, C, H, W); a, da : (1,) shared or (F,) / (C,) per axis-1 channel.
    One launch.
    """
    outer, f, p = channels(x.shape, a.size > 1)
    launch_channels(_prelu_backward, f, p, flat(x), flat(a), flat(dy), flat(dx), flat(da),
                    outer, f, p, 1.0 if accumulate else 0.0)


# --------------------------------------------------------------------------- row-wise (N, K)


@cuda.jit
def _softmax_forward(x, out, k, log):
    """Row-wise (log-)softmax of (N, K), max-subtracted, one thread per row. x, out: (N * K,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for r in range(start, x.size // k, step):
        base = r * k
        m = x[base]
        for j in range(1, k):
            m = larger(m, x[base + j])
        s = 0.0
        for j in range(k):
            s += math.exp(x[base + j] - m)
        if log:
            lse = m + math.log(s)
            for j in range(k):
                out[base + j] = x[base + j] - lse
        else:
            inv = 1.0 / s
            for j in range(k):
                out[base + j] = math.exp(x[base + j] - m) * inv


@cuda.jit
def _softmax_backward(y, dy, dx, k, log):
    """softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy); per row."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for r in range(start, y.size // k, step):
        base = r * k
        s = 0.0
        for j in range(k):
            s += dy[base + j] * y[base + j] if not log else dy[base + j]
        for j in range(k):
            if log:
                dx[base + j] = dy[base + j] - math.exp(y[base + j]) * s
            else:
                dx[base + j] = y[base + j] * (dy[base + j] - s)


def softmax_forward(x, out):
    """Row-wise softmax of (N, K) logits (one thread per row)."""
    xf = flat(x)
    launch_1d(_softmax_forward, x.shape[0], xf, flat(out), x.shape[1], False)


def softmax_backward(x, y, dy, dx):
    """dx_i = y_i (dy_i - sum_j dy_j y_j) per row of (N, K)."""
    launch_1d(_softmax_backward, y.shape[0], flat(y), flat(dy), flat(dx), y.shape[1], False)


def log_softmax_forward(x, out):
    """Row-wise log-softmax of (N, K) (one thread per row)."""
    launch_1d(_softmax_forward, x.shape[0], flat(x), flat(out), x.shape[1], True)


def log_softmax_backward(x, y, dy, dx):
    """dx = dy - exp(y) * sum(dy) per row of (N, K)."""
    launch_1d(_softmax_backward, y.shape[0], flat(y), flat(dy), flat(dx), y.shape[1], True)


# --------------------------------------------------------------------------- maxout


@cuda.jit
def _maxout_forward(x, out, argmax, pieces):
    """out[i] = max of x[i * pieces : (i + 1) * pieces], argmax its offset: the first maximum on
    ties, the first NaN where there is one (as NumPy's argmax)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.size, step):
        base = i * pieces
        best, arg = x[base], 0
        t = 1
        while t < pieces and best == best:          # stop at a NaN: it wins
            v = x[base + t]
            if v > best or v != v:
                best, arg = v, t
            t += 1
        out[i] = best
        argmax[i] = arg


@cuda.jit
def _maxout_backward(argmax, dy, dx, pieces):
    """dx[i * pieces + t] = dy[i] if t is the winner of group i else 0; one thread per input."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dx.size, step):
        i = e // pieces
        dx[e] = dy[i] if argmax[i] == e - i * pieces else 0


def maxout_forward(x, out, argmax, pieces):
    """Maxout over groups of ``pieces`` consecutive features.

    x : (N, F * pieces); out : (N, F); argmax : (N, F) int, index of the winner in its group.
    """
    of = flat(out)
    launch_1d(_maxout_forward, of.size, flat(x), of, flat(argmax), pieces)


def maxout_backward(argmax, dy, dx, pieces):
    """Route each output gradient to the input that won its group. dx : (N, F * pieces)."""
    dxf = flat(dx)
    launch_1d(_maxout_backward, dxf.size, flat(argmax), flat(dy), dxf, pieces)
