"""Convolution and pooling of the reference backend (im2col + GEMM, plain NumPy).

Images are (N, C, H, W). ``kernel`` and ``stride`` are pairs (along H, along W); ``padding``
is the 4-tuple (top, bottom, left, right) of zero rows / columns, as made by
``fastnn.kernels.geometry.resolve_padding``; the output size follows
``fastnn.kernels.geometry.output_hw``. Convolution goes through im2col with the per-image
layout of Caffe:
  cols : (N, C * kh * kw, OH * OW), row index (c * kh + i) * kw + j, column oh * OW + ow,
so that out[n] (F, OH * OW) = w.reshape(F, C * kh * kw) @ cols[n] is already NCHW.
Output and work buffers are C-contiguous (the layers make them with ``be.empty``).
"""
import numpy as np

from ..geometry import output_hw as _output_hw
from .activations import ACTIVATIONS


def _pad(x, padding, value=0.0):
    """x (N, C, H, W) with ``padding`` (top, bottom, left, right) rows / columns of ``value``."""
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _window(a, i, j, oh, ow, stride):
    """The (N, C, oh, ow) view of a padded array seen by kernel offset (i, j) of every window."""
    sh, sw = stride
    return a[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]


def conv2d_needs_cols(stride, padding, kernel_size, x_shape=None, out_channels=None, dtype=None):
    """Whether this backend's conv2d kernels use the ``cols`` / ``dcols`` work buffers for a
    convolution of this geometry (stride pair, padding 4-tuple, kernel pair); when not, layers
    pass None and allocate nothing. Here (im2col + GEMM): always."""
    return True


def im2col(x, kh, kw, stride, padding, cols):
    """Unfold the (kh, kw) windows of ``x`` into the columns of ``cols``.

    x : (N, C, H, W); cols : (N, C * kh * kw, OH * OW), written:
    cols[n, (c * kh + i) * kw + j, oh * OW + ow] = x_padded[n, c, oh * sh + i, ow * sw + j].
    """
    n, c, h, w = x.shape
    oh, ow = _output_hw(h, w, (kh, kw), stride, padding)
    xp = _pad(x, padding)
    view = cols.reshape(n, c, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            view[:, :, i, j] = _window(xp, i, j, oh, ow, stride)


def col2im(cols, kh, kw, stride, padding, dx):
    """Adjoint of :func:`im2col`: fold the columns back, adding where windows overlap.

    cols : (N, C * kh * kw, OH * OW); dx : (N, C, H, W), written (not accumulated into);
    the parts of the windows that fall on the padding are dropped.
    """
    n, c, h, w = dx.shape
    oh, ow = _output_hw(h, w, (kh, kw), stride, padding)
    top, bottom, left, right = padding
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dx.dtype)
    view = cols.reshape(n, c, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            _window(dxp, i, j, oh, ow, stride)[...] += view[:, :, i, j]
    dx[...] = dxp[:, :, top:top + h, left:left + w]


def conv2d_forward(x, w, b, out, stride, padding, cols):
    """2-D cross-correlation (PyTorch's conv2d): im2col, one GEMM per image, bias.

    x : (N, C, H, W); w : (F, C, kh, kw); b : (F,); out : (N, F, OH, OW), written;
    cols : (N, C * kh * kw, OH * OW) work buffer, handed unchanged to the backward: here it is
    left holding im2col(x); a backend may keep something else in it (the cpu backend's direct
    stride-1 kernels leave it untouched and re-read x instead).
    """
    n, f = out.shape[:2]
    kh, kw = w.shape[2:]
    im2col(x, kh, kw, stride, padding, cols)
    np.matmul(w.reshape(f, -1), cols, out=out.reshape(n, f, -1))
    out += b.reshape(1, f, 1, 1)


def conv2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """Gradients of :func:`conv2d_forward`.

    cols : as the same backend's :func:`conv2d_forward` left it (not changed here);
    dy : (N, F, OH, OW); dw (F, C, kh, kw), db (F,): written, or added when ``accumulate``;
    dx : (N, C, H, W) written, or None to skip it; dcols : work buffer shaped like cols,
    contents unspecified afterwards (layers always pass it: accelerated backends may use it
    as scratch for the weight gradient too; here it may be None when dx is None).
    """
    n, f = dy.shape[:2]
    kh, kw = w.shape[2:]
    dy3 = dy.reshape(n, f, -1)
    gw = np.tensordot(dy3, cols, axes=([0, 2], [0, 2])).reshape(dw.shape)   # sum_n dy[n] @ cols[n].T
    gb = dy.sum(axis=(0, 2, 3))
    if accumulate:
        dw += gw
        db += gb
    else:
        dw[...] = gw
        db[...] = gb
    if dx is not None:
        np.matmul(w.reshape(f, -1).T, dy3, out=dcols)
        col2im(dcols, kh, kw, stride, padding, dx)


def _fused_conv_act(conv_forward, conv_backward, activations):
    """A backend's ``conv2d_act_forward`` / ``conv2d_act_backward`` composed from its own
    convolution and activation kernels (the fused form for backends without a fused kernel)."""

    def conv2d_act_forward(x, w, b, out, stride, padding, cols, act):
        """out = act(conv2d(x, w) + b) for the Activation ``act`` (see :func:`conv2d_forward`)."""
        conv_forward(x, w, b, out, stride, padding, cols)
        activations[act][0](out, out)

    def conv2d_act_backward(x, w, y, dy, dz, dx, dw, db, stride, padding, cols, dcols, act,
                            accumulate=False):
        """Backward of :func:`conv2d_act_forward` from its output ``y``: dz = act'(.) * dy (a
        buffer like y), then :func:`conv2d_backward` with dz."""
        activations[act][1](None, y, dy, dz)
        conv_backward(x, w, dz, dx, dw, db, stride, padding, cols, dcols, accumulate)

    return conv2d_act_forward, conv2d_act_backward


conv2d_act_forward, conv2d_act_backward = _fused_conv_act(conv2d_forward, conv2d_backward,
                                                          ACTIVATIONS)


def maxpool2d_forward(x, out, argmax, kernel, stride, padding):
    """Max over each (kh, kw) window; the padding never wins (it counts as -inf).

    x : (N, C, H, W); out : (N, C, OH, OW); argmax : (N, C, OH, OW) intp, written with the
    flat index h * W + w of the winner inside its input plane (PyTorch's ``indices``). As
    PyTorch: on ties the first in row-major window order wins, a NaN wins (the last NaN of
    the window), and a window of -inf points at its first in-bounds position.
    """
    n, c, h, w = x.shape
    oh, ow = out.shape[2:]
    sh, sw = stride
    top, _, left, _ = padding
    xp = _pad(x, padding, -np.inf)
    best = np.full(out.shape, -np.inf, dtype=x.dtype)
    first_row = np.maximum(np.arange(oh) * sh - top, 0)[:, None]
    first_col = np.maximum(np.arange(ow) * sw - left, 0)[None, :]
    idx = np.broadcast_to(first_row * w + first_col, out.shape)
    for i in range(kernel[0]):
        rows = (np.arange(oh) * sh - top + i)[:, None]
        for j in range(kernel[1]):
            cols = (np.arange(ow) * sw - left + j)[None, :]
            v = _window(xp, i, j, oh, ow, stride)
            better = (v > best) | np.isnan(v)
            best = np.where(better, v, best)
            idx = np.where(better, rows * w + cols, idx)
    out[...] = best
    argmax[...] = idx


def maxpool2d_backward(argmax, dy, dx):
    """Route each output gradient to its window's winner; overlapping windows add up.

    argmax, dy : (N, C, OH, OW); dx : (N, C, H, W), written.
    """
    n, c = dy.shape[:2]
    dx[...] = 0
    planes = dx.reshape(n * c, -1)
    np.add.at(planes, (np.arange(n * c)[:, None], argmax.reshape(n * c, -1)), dy.reshape(n * c, -1))


def avgpool2d_forward(x, out, kernel, stride, padding):
    """Mean over each (kh, kw) window, zero padding included in the count (PyTorch's default
    ``count_include_pad=True``): every window divides by kh * kw.

    x : (N, C, H, W); out : (N, C, OH, OW), written.
    """
    oh, ow = out.shape[2:]
    xp = _pad(x, padding)
    acc = np.zeros(out.shape, dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            acc += _window(xp, i, j, oh, ow, stride)
    out[...] = acc / (kernel[0] * kernel[1])


def avgpool2d_backward(dy, dx, kernel, stride, padding):
    """Spread each output gradient evenly (1 / (kh * kw)) over its window; overlaps add up.

    dy : (N, C, OH, OW); dx : (N, C, H, W), written.
    """
    n, c, h, w = dx.shape
    oh, ow = dy.shape[2:]
    top, bottom, left, right = padding
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dx.dtype)
    g = dy / (kernel[0] * kernel[1])
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            _window(dxp, i, j, oh, ow, stride)[...] += g
    dx[...] = dxp[:, :, top:top + h, left:left + w]
