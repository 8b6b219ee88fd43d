"""Numba kernels for dropout and batch normalization on the CPU.

Same signatures as :mod:`fastnn.kernels.reference.regularization`. Batch normalization sees
(N, F) and (N, C, H, W) alike as (N, C, S) with S = 1 or H * W; per-channel sums are
accumulated in float64 and nothing is allocated per call.
"""
import math

from numba import njit, prange

from .. import counter_rng
from .parallel import chunk, parts

MASK_CHUNK = 16384     # mask elements per thread at least (a thread's start costs ~ that much)


# --------------------------------------------------------------------------- dropout


@njit(cache=True)
def _mul_flat(a, b, out):
    for i in range(a.size):
        out[i] = a[i] * b[i]


counter_bits = njit(cache=True, inline="always")(counter_rng.counter_bits)


@njit(cache=True, parallel=True)
def _fill_mask(key, threshold, scale, mask, n_parts):
    n = mask.size
    for t in prange(n_parts):
        lo, hi = chunk(n, t, n_parts)
        for i in range(lo, hi):
            mask[i] = scale if counter_bits(key, i) >= threshold else 0.0


def dropout_mask(key, p, mask):
    """mask (any shape, contiguous) = 1 / (1 - p) where element i's counter bits under ``key``
    reach p's threshold, else 0 (:mod:`fastnn.kernels.counter_rng`); split over Numba's threads,
    the same bits at any thread count."""
    flat = mask.reshape(-1)
    _fill_mask(key, counter_rng.keep_threshold(p), 1.0 / (1.0 - p), flat,
               parts(max(1, flat.size // MASK_CHUNK)))


def dropout_forward(x, mask, out):
    """out = x * mask (any shape, contiguous); mask holds 0 or 1 / (1 - p)."""
    _mul_flat(x.reshape(-1), mask.reshape(-1), out.reshape(-1))


def dropout_backward(mask, dy, dx):
    """dx = dy * mask."""
    _mul_flat(dy.reshape(-1), mask.reshape(-1), dx.reshape(-1))


# --------------------------------------------------------------------------- batch normalization


def _view(a):
    return a.reshape(a.shape[0], a.shape[1], -1)


@njit(cache=True, error_model="numpy")
def _bn_train(x, gamma, beta, out, mean, invstd, running_mean, running_var, momentum, eps):
    n, c, s = x.shape
    m = n * s
    for ch in range(c):
        total = 0.0
        for i in range(n):
            for k in range(s):
                total += x[i, ch, k]
        mu = total / m
        sq = 0.0
        for i in range(n):
            for k in range(s):
                d = x[i, ch, k] - mu
                sq += d * d
        var = sq / m
        inv = 1.0 / math.sqrt(var + eps)
        mean[ch] = mu
        invstd[ch] = inv
        g, b = gamma[ch] * inv, beta[ch]
        for i in range(n):
            for k in range(s):
                out[i, ch, k] = g * (x[i, ch, k] - mu) + b
        running_mean[ch] = (1.0 - momentum) * running_mean[ch] + momentum * mu
        running_var[ch] = (1.0 - momentum) * running_var[ch] + momentum * var * m / (m - 1)


def batchnorm_forward_train(x, gamma, beta, out, mean, invstd, running_mean, running_var,
                            momentum=0.1, eps=1e-5):
    """Batch statistics, normalised output and running-estimate update (see the reference)."""
    _bn_train(_view(x), gamma, beta, _view(out), mean, invstd, running_mean, running_var,
              float(momentum), float(eps))


@njit(cache=True)
def _bn_eval(x, gamma, beta, out, running_mean, running_var, eps):
    n, c, s = x.shape
    for i in range(n):
        for ch in range(c):
            scale = gamma[ch] / math.sqrt(running_var[ch] + eps)
            shift = beta[ch] - running_mean[ch] * scale
            for k in range(s):
                out[i, ch, k] = x[i, ch, k] * scale + shift


def batchnorm_forward_eval(x, gamma, beta, out, running_mean, running_var, eps=1e-5):
    """out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta."""
    _bn_eval(_view(x), gamma, beta, _view(out), running_mean, running_var, float(eps))


@njit(cache=True)
def _bn_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, accumulate, need_dx):
    n, c, s = x.shape
    m = n * s
    for ch in range(c):
        mu, inv = mean[ch], invstd[ch]
        gb = 0.0
        gg = 0.0
        for i in range(n):
            for k in range(s):
                g = dy[i, ch, k]
                gb += g
                gg += g * (x[i, ch, k] - mu) * inv
        if need_dx:
            scale = gamma[ch] * inv / m
            for i in range(n):
                for k in range(s):
                    xhat = (x[i, ch, k] - mu) * inv
                    dx[i, ch, k] = scale * (m * dy[i, ch, k] - gb - xhat * gg)
        if accumulate:
            dgamma[ch] += gg
            dbeta[ch] += gb
        else:
            dgamma[ch] = gg
            dbeta[ch] = gb


def batchnorm_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, accumulate=False):
    """Gradients of batchnorm_forward_train w.r.t. x (None to skip), gamma and beta."""
    dyv = _view(dy)
    _bn_backward(_view(x), gamma, mean, invstd, dyv, dyv if dx is None else _view(dx),
                 dgamma, dbeta, bool(accumulate), dx is not None)
