"""Convolution variants and LP pooling of the reference backend (plain NumPy, the oracle).

Images are (N, C, H, W); ``kernel``, ``stride`` and ``dilation`` are pairs (along H, along W);
``padding`` is the 4-tuple (top, bottom, left, right) of zero rows / columns. A dilated kernel
of size k covers ``d * (k - 1) + 1`` input positions, so output sizes are
``geometry.output_hw(h, w, dilated_kernel, stride, padding)`` (:func:`dilated_kernel`).

Every convolution here goes through one unfolding, :func:`im2col_dilated`, with Caffe's
per-image layout (as :func:`fastnn.kernels.reference.conv.im2col`, which is its ``dilation=1``
case)::

    cols : (N, C * kh * kw, OH * OW), row (c * kh + i) * kw + j, column oh * OW + ow
    cols[n, row, oh * OW + ow] = x_padded[n, c, oh * sh + i * dh, ow * sw + j * dw]

* grouped convolution: group g's output channels are the GEMM of its weights with the rows of
  its input channels, ``w.reshape(G, F/G, C/G * kh * kw) @ cols.reshape(N, G, C/G * kh * kw, L)``
  (depthwise is ``groups = C``);
* transposed convolution is the adjoint of a convolution: its forward is that convolution's
  input gradient (a GEMM then col2im), its input gradient that convolution's forward;
* locally connected and tiled convolutions contract ``cols`` with one weight set per output
  position (tiled: position (p, q) uses set (p mod t, q mod t)).
"""
import numpy as np

from ..geometry import output_hw
from .conv import _pad, col2im, im2col


def dilated_kernel(kernel, dilation):
    """The (rows, columns) of input one window covers: ``d * (k - 1) + 1`` along each axis."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


def _dilated_windows(a, kh, kw, stride, dilation, oh, ow):
    """Yield ``(i, j, view)``: the (N, C, oh, ow) view of padded ``a`` that kernel tap (i, j) of
    every window sees."""
    sh, sw = stride
    dh, dw = dilation
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            yield i, j, a[:, :, r:r + sh * (oh - 1) + 1:sh, c:c + sw * (ow - 1) + 1:sw]


def im2col_dilated(x, kh, kw, stride, padding, dilation, cols):
    """Unfold the dilated (kh, kw) windows of x (N, C, H, W) into cols (N, C * kh * kw, OH * OW)
    (written; layout in the module docstring)."""
    n, c, h, w = x.shape
    oh, ow = output_hw(h, w, dilated_kernel((kh, kw), dilation), stride, padding)
    view = cols.reshape(n, c, kh, kw, oh, ow)
    for i, j, win in _dilated_windows(_pad(x, padding), kh, kw, stride, dilation, oh, ow):
        view[:, :, i, j] = win


def col2im_dilated(cols, kh, kw, stride, padding, dilation, dx):
    """Adjoint of :func:`im2col_dilated`: dx (N, C, H, W) written with the folded columns
    (overlaps add; what falls on the padding is dropped)."""
    n, c, h, w = dx.shape
    oh, ow = output_hw(h, w, dilated_kernel((kh, kw), dilation), stride, padding)
    top, bottom, left, right = padding
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dx.dtype)
    view = cols.reshape(n, c, kh, kw, oh, ow)
    for i, j, win in _dilated_windows(dxp, kh, kw, stride, dilation, oh, ow):
        win += view[:, :, i, j]
    dx[...] = dxp[:, :, top:top + h, left:left + w]


def _set_or_add(dst, value, accumulate):
    if accumulate:
        dst += value
    else:
        dst[...] = value


# --------------------------------------------------------------------------- grouped, dilated


def conv2d_ex_forward(x, w, b, out, stride, padding, dilation, groups, cols):
    """Grouped, dilated 2-D cross-correlation (PyTorch's conv2d with ``dilation``, ``groups``).

    x : (N, C, H, W); w : (F, C / groups, kh, kw); b : (F,); out : (N, F, OH, OW), written;
    cols : (N, C * kh * kw, OH * OW) work buffer, left holding im2col_dilated(x) for the
    backward.
    """
    n, f = out.shape[:2]
    kh, kw = w.shape[2:]
    im2col_dilated(x, kh, kw, stride, padding, dilation, cols)
    cg = cols.reshape(n, groups, -1, cols.shape[2])                       # (N, G, K/G, L)
    np.matmul(w.reshape(groups, f // groups, -1), cg, out=out.reshape(n, groups, f // groups, -1))
    out += b.reshape(1, f, 1, 1)


def conv2d_ex_backward(x, w, dy, dx, dw, db, stride, padding, dilation, groups, cols, dcols,
                       accumulate=False):
    """Gradients of :func:`conv2d_ex_forward`: dw (F, C / groups, kh, kw) and db (F,) written or
    added (``accumulate``); dx (N, C, H, W) written, or None to skip it; cols as the forward
    left it; dcols scratch shaped like cols."""
    n, f = dy.shape[:2]
    kh, kw = w.shape[2:]
    length = cols.shape[2]
    dyg = dy.reshape(n, groups, f // groups, length)                       # (N, G, F/G, L)
    cg = cols.reshape(n, groups, -1, length)                               # (N, G, K/G, L)
    gw = np.einsum("ngfl,ngkl->gfk", dyg, cg)
    _set_or_add(dw, gw.reshape(dw.shape), accumulate)
    _set_or_add(db, dy.sum(axis=(0, 2, 3)), accumulate)
    if dx is not None:
        wg = w.reshape(groups, f // groups, -1)
        np.matmul(wg.transpose(0, 2, 1), dyg, out=dcols.reshape(cg.shape))
        col2im_dilated(dcols, kh, kw, stride, padding, dilation, dx)


# --------------------------------------------------------------------------- transposed


def conv_transpose2d_forward(x, w, b, out, stride, padding, cols):
    """Transposed convolution (PyTorch's conv_transpose2d, the adjoint of conv2d).

    x : (N, C, H, W); w : (C, O, kh, kw) (PyTorch's layout); b : (O,); out : (N, O, OH, OW),
    written. ``padding`` (top, bottom, left, right) is that of the convolution that maps
    ``out`` back to ``x``: for PyTorch's ``padding=p, output_padding=a`` it is
    ``(p, p + s - 1 - a)`` along each axis (see ``fastnn.layers.ConvTranspose2D``).
    cols : (N, O * kh * kw, H * W) work buffer (contents unspecified afterwards).
    out[n] = col2im(w.reshape(C, O * kh * kw).T @ x[n]) + b.
    """
    n, c = x.shape[:2]
    o = out.shape[1]
    kh, kw = w.shape[2:]
    np.matmul(w.reshape(c, -1).T, x.reshape(n, c, -1), out=cols)
    col2im(cols, kh, kw, stride, padding, out)
    out += b.reshape(1, o, 1, 1)


def conv_transpose2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, accumulate=False):
    """Gradients of :func:`conv_transpose2d_forward`: cols (work, as in the forward) is
    overwritten with im2col(dy); dx[n] = w.reshape(C, -1) @ cols[n] (written, or None);
    dw (C, O, kh, kw) = sum_n x[n] @ cols[n].T and db (O,) written or added."""
    n, c = x.shape[:2]
    kh, kw = w.shape[2:]
    im2col(dy, kh, kw, stride, padding, cols)
    x3 = x.reshape(n, c, -1)
    _set_or_add(dw, np.tensordot(x3, cols, axes=([0, 2], [0, 2])).reshape(dw.shape), accumulate)
    _set_or_add(db, dy.sum(axis=(0, 2, 3)), accumulate)
    if dx is not None:
        np.matmul(w.reshape(c, -1), cols, out=dx.reshape(n, c, -1))


# --------------------------------------------------------------------------- unshared


def _position_weights(w, oh, ow):
    """(OH * OW, F, C * kh * kw): the weight set of every output position; ``w`` is
    (OH, OW, F, C, kh, kw) (locally connected) or (t, t, F, C, kh, kw) (tiled, set
    (p mod t, q mod t) at position (p, q))."""
    rows = np.arange(oh) % w.shape[0]
    columns = np.arange(ow) % w.shape[1]
    per = w[rows[:, None], columns[None, :]]                     # (OH, OW, F, C, kh, kw)
    return per.reshape(oh * ow, w.shape[2], -1)


def _unshared_forward(x, w, out, stride, cols):
    n, f, oh, ow = out.shape
    kh, kw = w.shape[4:]
    im2col(x, kh, kw, stride, (0, 0, 0, 0), cols)
    np.einsum("lfk,nkl->nfl", _position_weights(w, oh, ow), cols, out=out.reshape(n, f, -1))


def _unshared_backward(w, dy, dx, stride, cols, dcols):
    """(dy (N, F, L), the per-position weight gradient (OH, OW, F, C, kh, kw)); dx written."""
    n, f, oh, ow = dy.shape
    kh, kw = w.shape[4:]
    dy3 = dy.reshape(n, f, -1)
    gpos = np.einsum("nfl,nkl->lfk", dy3, cols).reshape((oh, ow) + w.shape[2:])
    if dx is not None:
        np.einsum("lfk,nfl->nkl", _position_weights(w, oh, ow), dy3, out=dcols)
        col2im(dcols, kh, kw, stride, (0, 0, 0, 0), dx)
    return gpos


def locally_connected2d_forward(x, w, b, out, stride, cols):
    """Locally connected layer (unshared convolution, no padding): a kernel per output position.

    x : (N, C, H, W); w : (OH, OW, F, C, kh, kw); b : (F, OH, OW); out : (N, F, OH, OW),
    written: out[n, f, p, q] = sum_{c,i,j} w[p, q, f, c, i, j] x[n, c, p*sh + i, q*sw + j]
    + b[f, p, q]. cols : (N, C * kh * kw, OH * OW), left holding im2col(x).
    """
    _unshared_forward(x, w, out, stride, cols)
    out += b


def locally_connected2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """Gradients of :func:`locally_connected2d_forward`: dw, db written or added; dx written or
    None; cols as the forward left it; dcols scratch shaped like cols."""
    _set_or_add(dw, _unshared_backward(w, dy, dx, stride, cols, dcols), accumulate)
    _set_or_add(db, dy.sum(axis=0), accumulate)


def tiled_conv2d_forward(x, w, b, out, stride, cols):
    """Tiled convolution (no padding): output position (p, q) uses kernel set (p mod t, q mod t).

    x : (N, C, H, W); w : (t, t, F, C, kh, kw); b : (F,); out : (N, F, OH, OW), written;
    cols as in :func:`locally_connected2d_forward`.
    """
    _unshared_forward(x, w, out, stride, cols)
    out += b.reshape(1, -1, 1, 1)


def tiled_conv2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """Gradients of :func:`tiled_conv2d_forward`: each kernel set's gradient is the sum over the
    positions that use it; dw, db written or added; dx written or None."""
    t = w.shape[0]
    oh, ow = dy.shape[2:]
    gpos = _unshared_backward(w, dy, dx, stride, cols, dcols)            # (OH, OW, F, C, kh, kw)
    gw = np.zeros(w.shape, dtype=w.dtype)
    for a in range(min(t, oh)):
        for c in range(min(t, ow)):
            gw[a, c] = gpos[a::t, c::t].sum(axis=(0, 1))
    _set_or_add(dw, gw, accumulate)
    _set_or_add(db, dy.sum(axis=(0, 2, 3)), accumulate)


# --------------------------------------------------------------------------- LP pooling


def _window_sum(v, kernel, stride, oh, ow):
    acc = np.zeros(v.shape[:2] + (oh, ow), dtype=v.dtype)
    for _, _, win in _dilated_windows(v, kernel[0], kernel[1], stride, (1, 1), oh, ow):
        acc += win
    return acc


def lppool2d_forward(x, out, norm_type, kernel, stride):
    """Power-average pooling, PyTorch's lp_pool2d (no padding, windows past the edge dropped):
    out = (sum over the window of x ** p) ** (1 / p), p = ``norm_type`` > 0 (p = 2: the texts'
    L2 pooling). x : (N, C, H, W); out : (N, C, OH, OW), written. As PyTorch, x ** p of a
    negative x with a non-integer p is NaN.
    """
    p = x.dtype.type(norm_type)
    oh, ow = out.shape[2:]
    out[...] = _window_sum(x ** p, kernel, stride, oh, ow) ** (1 / p)


def lppool2d_backward(x, y, dy, dx, norm_type, kernel, stride):
    """Gradient of :func:`lppool2d_forward` from its output y: each window spreads
    dy * y ** (1 - p) over its inputs times x ** (p - 1) (overlaps add); a window whose sum
    is 0 passes no gradient. dx (N, C, H, W) written."""
    p = x.dtype.type(norm_type)
    oh, ow = y.shape[2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(y != 0, dy * y ** (1 - p), 0).astype(x.dtype)
    acc = np.zeros(x.shape, dtype=x.dtype)
    for _, _, win in _dilated_windows(acc, kernel[0], kernel[1], stride, (1, 1), oh, ow):
        win += g
    dx[...] = acc * x ** (p - 1)
