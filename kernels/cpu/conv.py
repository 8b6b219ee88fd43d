"""Convolution and pooling on the CPU: Numba im2col / col2im around BLAS GEMM, one-pass pooling.

Same signatures and buffer layouts as the "convolution and pooling" section of
:mod:`fastnn.kernels.reference` (``stride`` a pair, ``padding`` the 4-tuple
``(top, bottom, left, right)``, ``cols`` of shape ``(N, C * kh * kw, OH * OW)``). Each op is
one compiled call that works image by image - unfold image ``n`` into ``cols[n]``, then one
GEMM ``w (F, C*kh*kw) @ cols[n]`` straight into ``out[n]`` (already NCHW) - so the columns of
an image are still in cache when BLAS reads them. Nothing is allocated per call.

The GEMM is :func:`fastnn.kernels.cpu.blas.gemm` (scipy's BLAS, called from Numba).
"""
import math

import numpy as np
from numba import njit

from ...convutil import output_hw
from .blas import gemm

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "maxpool2d_forward",
           "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"]


# --------------------------------------------------------------------------- im2col / col2im
# For kernel column j, the output columns ox whose input column ox * sw - left + j lies inside
# [0, W) form one range [lo, hi): computed once per j so the inner loops have no branches.


@njit(cache=True, inline="always")
def _valid_range(j, stride, pad, size, n_out):
    """[lo, hi) of the outputs o with 0 <= o * stride - pad + j < size."""
    lo = -((j - pad) // stride)            # ceil((pad - j) / stride)
    if lo < 0:
        lo = 0
    hi = (size - 1 + pad - j) // stride + 1
    if hi > n_out:
        hi = n_out
    if hi < lo:
        hi = lo
    return lo, hi


@njit(cache=True)
def _im2col_image(x, kh, kw, sh, sw, top, left, oh, ow, cols):
    """One image: x (C, H, W) -> cols (C * kh * kw, oh * ow)."""
    c_in, h, w = x.shape
    zero = cols.dtype.type(0)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid_range(j, sw, left, w, ow)
                off = j - left
                for oy in range(oh):
                    hy = oy * sh - top + i
                    base = oy * ow
                    if hy < 0 or hy >= h:
                        for ox in range(ow):
                            cols[row, base + ox] = zero
                        continue
                    for ox in range(lo):
                        cols[row, base + ox] = zero
                    if sw == 1:
                        for ox in range(lo, hi):
                            cols[row, base + ox] = x[c, hy, ox + off]
                    else:
                        for ox in range(lo, hi):
                            cols[row, base + ox] = x[c, hy, ox * sw + off]
                    for ox in range(hi, ow):
                        cols[row, base + ox] = zero


@njit(cache=True)
def _col2im_image(cols, kh, kw, sh, sw, top, left, oh, ow, dx):
    """One image: dx (C, H, W) = fold of cols (C * kh * kw, oh * ow), overlaps added."""
    c_in, h, w = dx.shape
    dx[...] = 0
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid_range(j, sw, left, w, ow)
                off = j - left
                for oy in range(oh):
                    hy = oy * sh - top + i
                    if hy < 0 or hy >= h:
                        continue
                    base = oy * ow
                    if sw == 1:
                        for ox in range(lo, hi):
                            dx[c, hy, ox + off] += cols[row, base + ox]
                    else:
                        for ox in range(lo, hi):
                            dx[c, hy, ox * sw + off] += cols[row, base + ox]


@njit(cache=True)
def _im2col(x, kh, kw, sh, sw, top, left, oh, ow, cols):
    for n in range(x.shape[0]):
        _im2col_image(x[n], kh, kw, sh, sw, top, left, oh, ow, cols[n])


@njit(cache=True)
def _col2im(cols, kh, kw, sh, sw, top, left, oh, ow, dx):
    for n in range(dx.shape[0]):
        _col2im_image(cols[n], kh, kw, sh, sw, top, left, oh, ow, dx[n])


def im2col(x, kh, kw, stride, padding, cols):
    """See :func:`fastnn.kernels.reference.im2col`."""
    n, c, h, w = x.shape
    oh, ow = output_hw(h, w, (kh, kw), stride, padding)
    _im2col(x, kh, kw, stride[0], stride[1], padding[0], padding[2], oh, ow, cols)


def col2im(cols, kh, kw, stride, padding, dx):
    """See :func:`fastnn.kernels.reference.col2im`."""
    n, c, h, w = dx.shape
    oh, ow = output_hw(h, w, (kh, kw), stride, padding)
    _col2im(cols, kh, kw, stride[0], stride[1], padding[0], padding[2], oh, ow, dx)


# --------------------------------------------------------------------------- convolution


@njit(cache=True)
def _conv_forward(x, w2, b, out3, kh, kw, sh, sw, top, left, oh, ow, cols):
    """out3 (N, F, L) = w2 (F, K) @ im2col(x)[n] + b, image by image."""
    f = w2.shape[0]
    for n in range(x.shape[0]):
        _im2col_image(x[n], kh, kw, sh, sw, top, left, oh, ow, cols[n])
        o = out3[n]
        for k in range(f):                      # bias first, then GEMM with beta = 1
            o[k, :] = b[k]
        gemm(False, False, 1.0, w2, cols[n], 1.0, o)


@njit(cache=True)
def _conv_backward_params(dy3, cols, dw2, db, beta):
    """dw2 = sum_n dy3[n] @ cols[n].T, db = sum of dy3 over (n, L): written (beta 0) or added (beta 1)."""
    n_img, f, length = dy3.shape
    if n_img == 0 and beta == 0:
        dw2[...] = 0
    for n in range(n_img):
        gemm(False, True, 1.0, dy3[n], cols[n], beta if n == 0 else 1.0, dw2)
    for k in range(f):
        s = 0.0
        for n in range(n_img):
            for l in range(length):
                s += dy3[n, k, l]
        if beta == 0:
            db[k] = s
        else:
            db[k] += s


@njit(cache=True)
def _conv_backward_input(w2, dy3, dx, kh, kw, sh, sw, top, left, oh, ow, dcol):
    """dx[n] = col2im(w2.T @ dy3[n]), image by image through one (K, L) scratch ``dcol``."""
    for n in range(dy3.shape[0]):
        gemm(True, False, 1.0, w2, dy3[n], 0.0, dcol)
        _col2im_image(dcol, kh, kw, sh, sw, top, left, oh, ow, dx[n])


def conv2d_forward(x, w, b, out, stride, padding, cols):
    """See :func:`fastnn.kernels.reference.conv2d_forward` (``cols`` is left holding im2col(x))."""
    n, f, oh, ow = out.shape
    kh, kw = w.shape[2:]
    _conv_forward(x, w.reshape(f, -1), b, out.reshape(n, f, oh * ow), kh, kw,
                  stride[0], stride[1], padding[0], padding[2], oh, ow, cols)


def conv2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv2d_backward`. ``cols`` must hold im2col(x);
    only ``dcols[0]`` is used, as scratch (its contents afterwards are unspecified)."""
    n, f, oh, ow = dy.shape
    kh, kw = w.shape[2:]
    dy3 = dy.reshape(n, f, oh * ow)
    _conv_backward_params(dy3, cols, dw.reshape(f, -1), db, 1.0 if accumulate else 0.0)
    if dx is not None and n:
        _conv_backward_input(w.reshape(f, -1), dy3, dx, kh, kw, stride[0], stride[1],
                             padding[0], padding[2], oh, ow, dcols[0])


# --------------------------------------------------------------------------- pooling


@njit(cache=True)
def _maxpool_forward(x, out, argmax, kh, kw, sh, sw, top, left):
    """One pass; as PyTorch: start at the first in-bounds position, take v > best or NaN."""
    n_img, c_in, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for n in range(n_img):
        for c in range(c_in):
            for oy in range(oh):
                y0 = oy * sh - top
                y1 = min(y0 + kh, h)
                y0 = max(y0, 0)
                for ox in range(ow):
                    x0 = ox * sw - left
                    x1 = min(x0 + kw, w)
                    x0 = max(x0, 0)
                    best = -np.inf
                    idx = y0 * w + x0
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            v = x[n, c, yy, xx]
                            if v > best or math.isnan(v):
                                best = v
                                idx = yy * w + xx
                    out[n, c, oy, ox] = best
                    argmax[n, c, oy, ox] = idx


@njit(cache=True)
def _maxpool_backward(argmax, dy, dx3):
    """dx3 (N, C, H * W) = 0, then dx3[n, c, argmax] += dy, in one pass over dy."""
    n_img, c_in, oh, ow = dy.shape
    dx3[...] = 0
    for n in range(n_img):
        for c in range(c_in):
            for oy in range(oh):
                for ox in range(ow):
                    dx3[n, c, argmax[n, c, oy, ox]] += dy[n, c, oy, ox]


@njit(cache=True)
def _avgpool_forward(x, out, kh, kw, sh, sw, top, left):
    n_img, c_in, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    inv = 1.0 / (kh * kw)
    for n in range(n_img):
        for c in range(c_in):
            for oy in range(oh):
                y0 = max(oy * sh - top, 0)
                y1 = min(oy * sh - top + kh, h)
                for ox in range(ow):
                    x0 = max(ox * sw - left, 0)
                    x1 = min(ox * sw - left + kw, w)
                    s = 0.0
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            s += x[n, c, yy, xx]
                    out[n, c, oy, ox] = s * inv


@njit(cache=True)
def _avgpool_backward(dy, dx, kh, kw, sh, sw, top, left):
    n_img, c_in, h, w = dx.shape
    oh, ow = dy.shape[2], dy.shape[3]
    inv = 1.0 / (kh * kw)
    dx[...] = 0
    for n in range(n_img):
        for c in range(c_in):
            for oy in range(oh):
                y0 = max(oy * sh - top, 0)
                y1 = min(oy * sh - top + kh, h)
                for ox in range(ow):
                    x0 = max(ox * sw - left, 0)
                    x1 = min(ox * sw - left + kw, w)
                    g = dy[n, c, oy, ox] * inv
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            dx[n, c, yy, xx] += g


def maxpool2d_forward(x, out, argmax, kernel, stride, padding):
    """See :func:`fastnn.kernels.reference.maxpool2d_forward`."""
    _maxpool_forward(x, out, argmax, kernel[0], kernel[1], stride[0], stride[1],
                     padding[0], padding[2])


def maxpool2d_backward(argmax, dy, dx):
    """See :func:`fastnn.kernels.reference.maxpool2d_backward`."""
    n, c = dx.shape[:2]
    _maxpool_backward(argmax, dy, dx.reshape(n, c, -1))


def avgpool2d_forward(x, out, kernel, stride, padding):
    """See :func:`fastnn.kernels.reference.avgpool2d_forward`."""
    _avgpool_forward(x, out, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[2])


def avgpool2d_backward(dy, dx, kernel, stride, padding):
    """See :func:`fastnn.kernels.reference.avgpool2d_backward`."""
    _avgpool_backward(dy, dx, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[2])
