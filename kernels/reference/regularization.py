"""Dropout and batch normalization of the reference backend."""
import numpy as np

from ..counter_rng import counter_bits, keep_threshold


def dropout_mask(key, p, mask):
    """Inverted-dropout mask: element i of ``mask`` (any shape) is 1 / (1 - p) when its
    counter bits under ``key`` reach the threshold of ``p`` (see :mod:`..counter_rng`), else 0."""
    bits = counter_bits(key, np.arange(mask.size, dtype=np.uint64))
    keep = bits >= keep_threshold(p)
    mask.reshape(-1)[:] = np.where(keep, 1.0 / (1.0 - p), 0.0)


def dropout_forward(x, mask, out):
    """Inverted dropout with a given mask: out = x * mask.

    x, mask, out : same shape (any); ``mask`` holds 0 for dropped units and 1 / (1 - p) for
    kept ones (the layer draws it), so the expectation of ``out`` is ``x`` and inference is the
    identity.
    """
    np.multiply(x, mask, out=out)


def dropout_backward(mask, dy, dx):
    """dx = dy * mask (the mask of the forward pass)."""
    np.multiply(dy, mask, out=dx)


def _bn_view(a):
    """(N, F) or (N, C, H, W) as (N, C, S) with S = 1 or H * W: statistics over axes 0 and 2."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def batchnorm_forward_train(x, gamma, beta, out, mean, invstd, running_mean, running_var,
                            momentum=0.1, eps=1e-5):
    """Batch normalization in training mode, per feature of (N, F) or per channel of (N, C, H, W).

    With m = N (or N * H * W) values per feature: mean = sum(x) / m, var = sum((x - mean)^2) / m
    (biased), invstd = 1 / sqrt(var + eps); out = gamma * (x - mean) * invstd + beta.
    ``mean`` and ``invstd`` (shape (C,)) are written for the backward pass. The running
    estimates are updated in place with PyTorch's convention:
    running_mean = (1 - momentum) * running_mean + momentum * mean,
    running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1) (unbiased).
    gamma, beta, running_mean, running_var : (C,); out : shaped like x. Needs m > 1.
    """
    xv = _bn_view(x)
    m = xv.shape[0] * xv.shape[2]
    mu = xv.mean(axis=(0, 2))
    var = ((xv - mu[None, :, None]) ** 2).mean(axis=(0, 2))
    mean[...] = mu
    invstd[...] = 1.0 / np.sqrt(var + eps)
    xhat = (xv - mu[None, :, None]) * invstd[None, :, None]
    _bn_view(out)[...] = gamma[None, :, None] * xhat + beta[None, :, None]
    running_mean *= 1.0 - momentum
    running_mean += momentum * mu
    running_var *= 1.0 - momentum
    running_var += momentum * var * (m / (m - 1))


def batchnorm_forward_eval(x, gamma, beta, out, running_mean, running_var, eps=1e-5):
    """Batch normalization at inference: out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta."""
    scale = gamma / np.sqrt(running_var + eps)
    shift = beta - running_mean * scale
    _bn_view(out)[...] = _bn_view(x) * scale[None, :, None] + shift[None, :, None]


def batchnorm_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, accumulate=False):
    """Gradients of :func:`batchnorm_forward_train` (the batch statistics depend on every sample).

    With xhat = (x - mean) * invstd and sums over the m values of each feature:
    dbeta = sum(dy), dgamma = sum(dy * xhat),
    dx = gamma * invstd / m * (m * dy - dbeta - xhat * dgamma).
    dgamma, dbeta (C,): written, or added when ``accumulate``; dx shaped like x, or None.
    """
    xv, dyv = _bn_view(x), _bn_view(dy)
    m = xv.shape[0] * xv.shape[2]
    xhat = (xv - mean[None, :, None]) * invstd[None, :, None]
    gb = dyv.sum(axis=(0, 2))
    gg = (dyv * xhat).sum(axis=(0, 2))
    if dx is not None:
        k = (gamma * invstd / m)[None, :, None]
        _bn_view(dx)[...] = k * (m * dyv - gb[None, :, None] - xhat * gg[None, :, None])
    if accumulate:
        dgamma += gg
        dbeta += gb
    else:
        dgamma[...] = gg
        dbeta[...] = gb
