"""Regularization on the device: dropout (masks from counter bits) and batch normalization.
One launch per op. Same signatures as :mod:`fastnn.kernels.reference.regularization`.

Batch normalization computes statistics, normalisation and gradients per feature of (N, F) or
per channel of (N, C, H, W). The tensor is seen as (outer, f, p) as in :mod:`.reduce`
(N, C, H * W): one block owns a channel (or ``COLUMNS`` features of dense rows), sums in
float64 in a fixed tree order (deterministic), and then writes the channel's outputs itself,
so statistics and outputs need no second launch.
"""
import math

from numba import cuda, float64

from .. import counter_rng
from .common import THREADS, flat, launch_1d
from .reduce import (channel_element, channel_of_thread, channel_total, channels, launch_channels,
                     store_total)


# --------------------------------------------------------------------------- dropout


@cuda.jit
def _multiply(a, b, out):
    """out = a * b element-wise. a, b, out: (n,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.size, step):
        out[i] = a[i] * b[i]


counter_bits = cuda.jit(device=True)(counter_rng.counter_bits)


@cuda.jit
def _fill_mask(key, threshold, scale, mask):
    """mask[i] = scale where the counter bits of i under key reach threshold, else 0. mask (n,)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, mask.size, step):
        mask[i] = scale if counter_bits(key, i) >= threshold else 0.0


def dropout_mask(key, p, mask):
    """The inverted-dropout mask drawn on the device from counter bits
    (:mod:`fastnn.kernels.counter_rng`): no host draw, no copy. One launch."""
    mf = flat(mask)
    launch_1d(_fill_mask, mf.size, key, counter_rng.keep_threshold(p), 1.0 / (1.0 - p), mf)


def dropout_forward(x, mask, out):
    """Inverted dropout with a given mask (0 or 1 / (1 - p)): out = x * mask. One launch."""
    of = flat(out)
    launch_1d(_multiply, of.size, flat(x), flat(mask), of)


def dropout_backward(mask, dy, dx):
    """dx = dy * mask (the mask of the forward pass). One launch."""
    dxf = flat(dx)
    launch_1d(_multiply, dxf.size, flat(dy), flat(mask), dxf)


# --------------------------------------------------------------------------- batch normalization


@cuda.jit
def _bn_train(x, gamma, beta, out, mean, invstd, running_mean, running_var, outer, f, p,
              momentum, eps):
    sh = cuda.shared.array(THREADS, float64)
    j, ty, ry = channel_of_thread()
    m = outer * p
    s = 0.0
    if j < f:
        for e in range(ty, m, ry):
            s += x[channel_element(e, j, f, p)]
    mu = channel_total(sh, s) / m
    cuda.syncthreads()                        # every thread has read the mean before reuse
    s = 0.0
    if j < f:
        for e in range(ty, m, ry):
            d = x[channel_element(e, j, f, p)] - mu
            s += d * d
    var = channel_total(sh, s) / m
    if j < f:
        inv = 1.0 / math.sqrt(var + eps)
        g, b = gamma[j], beta[j]
        for e in range(ty, m, ry):
            i = channel_element(e, j, f, p)
            out[i] = g * ((x[i] - mu) * inv) + b
        if ty == 0:
            mean[j] = mu
            invstd[j] = inv
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * mu
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * var * (m / (m - 1.0))


def batchnorm_forward_train(x, gamma, beta, out, mean, invstd, running_mean, running_var,
                            momentum=0.1, eps=1e-5):
    """Batch normalization in training mode (see the reference's): batch mean
    and biased variance per channel, out = gamma * (x - mean) * invstd + beta, mean and invstd
    kept for the backward, running estimates updated (unbiased variance). One launch."""
    outer, f, p = channels(x.shape, True)
    launch_channels(_bn_train, f, p, flat(x), flat(gamma), flat(beta), flat(out), flat(mean),
                    flat(invstd), flat(running_mean), flat(running_var), outer, f, p,
                    float(momentum), float(eps))


@cuda.jit
def _bn_eval(x, gamma, beta, out, running_mean, running_var, f, p, eps):
    """out = x * scale + shift, scale = gamma / sqrt(running_var + eps), per channel."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        c = (i // p) % f
        scale = gamma[c] / math.sqrt(running_var[c] + eps)
        out[i] = x[i] * scale + (beta[c] - running_mean[c] * scale)


def batchnorm_forward_eval(x, gamma, beta, out, running_mean, running_var, eps=1e-5):
    """Batch normalization at inference with the running estimates. One launch."""
    _, f, p = channels(x.shape, True)
    xf = flat(x)
    launch_1d(_bn_eval, xf.size, xf, flat(gamma), flat(beta), flat(out), flat(running_mean),
              flat(running_var), f, p, float(eps))


@cuda.jit
def _bn_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, outer, f, p, beta_acc, want_dx):
    sh = cuda.shared.array(THREADS, float64)
    j, ty, ry = channel_of_thread()
    m = outer * p
    mu, inv = 0.0, 0.0
    s = 0.0
    if j < f:
        mu, inv = mean[j], invstd[j]
        for e in range(ty, m, ry):
            s += dy[channel_element(e, j, f, p)]
    gb = channel_total(sh, s)
    cuda.syncthreads()                        # every thread has read the sum before reuse
    s = 0.0
    if j < f:
        for e in range(ty, m, ry):
            i = channel_element(e, j, f, p)
            s += dy[i] * ((x[i] - mu) * inv)
    gg = channel_total(sh, s)
    if j < f:
        if want_dx:
            k = gamma[j] * inv / m
            for e in range(ty, m, ry):
                i = channel_element(e, j, f, p)
                dx[i] = k * (m * dy[i] - gb - ((x[i] - mu) * inv) * gg)
        if ty == 0:
            store_total(dgamma, j, gg, beta_acc)
            store_total(dbeta, j, gb, beta_acc)


def batchnorm_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, accumulate=False):
    """Gradients of :func:`batchnorm_forward_train`: dbeta = sum(dy), dgamma = sum(dy * xhat),
    dx = gamma * invstd / m * (m * dy - dbeta - xhat * dgamma) (skipped when dx is None);
    dgamma, dbeta written or added (``accumulate``). One launch."""
    outer, f, p = channels(x.shape, True)
    dyf = flat(dy)
    launch_channels(_bn_backward, f, p, flat(x), flat(gamma), flat(mean), flat(invstd), dyf,
                    dyf if dx is None else flat(dx), flat(dgamma), flat(dbeta), outer, f, p,
                    1.0 if accumulate else 0.0, dx is not None)
