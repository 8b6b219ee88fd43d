"""Dense (fully connected) layer of the reference backend, plain and with a fused activation.

x : (N, in_features); w : (in_features, out_features); b : (out_features,).
"""
import numpy as np

from .activations import ACTIVATIONS


def dense_forward(x, w, b, out):
    """out = x @ w + b.

    x : (N, in_features); w : (in_features, out_features); b : (out_features,);
    out : (N, out_features).
    """
    np.matmul(x, w, out=out)
    out += b


def dense_backward(x, w, dy, dx, dw, db, accumulate=False):
    """Gradients of out = x @ w + b.

    dy : (N, out_features) gradient w.r.t. out.
    dx : (N, in_features) or None (skip it for the first layer).
    dw, db : gradients of w and b, written, or added when ``accumulate``.
    """
    if accumulate:
        dw += x.T @ dy
        db += dy.sum(axis=0)
    else:
        np.matmul(x.T, dy, out=dw)
        np.sum(dy, axis=0, out=db)
    if dx is not None:
        np.matmul(dy, w.T, out=dx)


def dense_act_forward(x, w, b, out, act):
    """out = act(x @ w + b) for the :class:`~fastnn.kernels.contract.Activation` ``act`` (a
    key of ACTIVATIONS); the fused form of dense + activation."""
    dense_forward(x, w, b, out)
    ACTIVATIONS[act][0](out, out)


def dense_act_backward(x, w, y, dy, dz, dx, dw, db, act, accumulate=False):
    """Backward of :func:`dense_act_forward`: dz = act'(.) * dy (a buffer like y), then dense."""
    ACTIVATIONS[act][1](None, y, dy, dz)
    dense_backward(x, w, dz, dx, dw, db, accumulate)
