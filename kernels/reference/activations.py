"""Activations of the reference backend, and the table of those that fuse into a layer.

Backward functions get the activation's *output* ``y`` (and its input ``x`` where the
derivative needs it), the gradient ``dy`` w.r.t. the output, and write ``dx``.
"""
import numpy as np

from ..contract import Activation


def identity_forward(x, out):
    out[...] = x


def identity_backward(x, y, dy, dx):
    dx[...] = dy


def sigmoid_forward(x, out):
    """out = 1 / (1 + exp(-x)), computed without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    out[...] = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(x, y, dy, dx):
    """dx = dy * y * (1 - y)."""
    dx[...] = dy * y * (1.0 - y)


def tanh_forward(x, out):
    np.tanh(x, out=out)


def tanh_backward(x, y, dy, dx):
    """dx = dy * (1 - y**2)."""
    dx[...] = dy * (1.0 - y * y)


def relu_forward(x, out):
    np.maximum(x, 0, out=out)


def relu_backward(x, y, dy, dx):
    """dx = dy where x > 0, else 0 (the subgradient at 0 is 0, as PyTorch)."""
    dx[...] = np.where(y > 0, dy, 0)


def leaky_relu_forward(x, out, negative_slope=0.01):
    out[...] = np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(x, y, dy, dx, negative_slope=0.01):
    dx[...] = np.where(x > 0, dy, negative_slope * dy)


def prelu_forward(x, a, out):
    """Parametric ReLU with one learned slope ``a`` of shape (1,) or one per feature (F,).

    For images (N, C, H, W) a per-channel ``a`` has shape (C,).
    """
    a = _broadcast_channel(a, x)
    out[...] = np.where(x > 0, x, a * x)


def prelu_backward(x, a, dy, dx, da, accumulate=False):
    """dx = dy * (1 if x > 0 else a); da = sum of dy * x over the positions where x <= 0."""
    ab = _broadcast_channel(a, x)
    dx[...] = np.where(x > 0, dy, ab * dy)
    contrib = np.where(x > 0, 0, dy * x)
    axes = tuple(i for i in range(x.ndim) if i != 1) if a.size > 1 else None
    g = np.sum(contrib, axis=axes).reshape(da.shape)
    if accumulate:
        da += g
    else:
        da[...] = g


def _broadcast_channel(a, x):
    """Shape a per-feature/per-channel vector so it broadcasts along axis 1 of ``x``."""
    if a.size == 1:
        return a.reshape(())
    return a.reshape((1, a.size) + (1,) * (x.ndim - 2))


def softmax_forward(x, out):
    """Row-wise softmax of (N, K) logits, max-subtracted for stability."""
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    out[...] = e / e.sum(axis=1, keepdims=True)


def softmax_backward(x, y, dy, dx):
    """dx_i = y_i (dy_i - sum_j dy_j y_j)."""
    dx[...] = y * (dy - np.sum(dy * y, axis=1, keepdims=True))


def log_softmax_forward(x, out):
    z = x - x.max(axis=1, keepdims=True)
    out[...] = z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def log_softmax_backward(x, y, dy, dx):
    """dx = dy - softmax(x) * sum(dy) with softmax(x) = exp(y)."""
    dx[...] = dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def maxout_forward(x, out, argmax, pieces):
    """Maxout over groups of ``pieces`` consecutive features.

    x : (N, F * pieces); out : (N, F); argmax : (N, F) intp, index of the winner in its group
    (first maximum on ties).
    """
    n, f = out.shape
    groups = x.reshape(n, f, pieces)
    argmax[...] = groups.argmax(axis=2)
    out[...] = np.take_along_axis(groups, argmax[:, :, None], axis=2)[:, :, 0]


def maxout_backward(argmax, dy, dx, pieces):
    """Route each output gradient to the input that won its group."""
    n, f = dy.shape
    g = np.zeros((n, f, pieces), dtype=dx.dtype)
    np.put_along_axis(g, argmax[:, :, None], dy[:, :, None], axis=2)
    dx[...] = g.reshape(n, f * pieces)


ACTIVATIONS = {
    Activation.IDENTITY: (identity_forward, identity_backward),
    Activation.SIGMOID: (sigmoid_forward, sigmoid_backward),
    Activation.TANH: (tanh_forward, tanh_backward),
    Activation.RELU: (relu_forward, relu_backward),
}
"""Activations that can be fused into the dense or conv layer before them:
:class:`~fastnn.kernels.contract.Activation` -> (forward, backward)."""
