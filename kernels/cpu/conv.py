"""Convolution and pooling on the CPU: Numba im2col / col2im around BLAS GEMM, one-pass pooling.

Same signatures and buffer layouts as the "convolution and pooling" section of
:mod:`fastnn.kernels.reference` (``stride`` a pair, ``padding`` the 4-tuple
``(top, bottom, left, right)``, ``cols`` of shape ``(N, C * kh * kw, OH * OW)``, so that
``w (F, C*kh*kw) @ cols[n]`` is ``out[n]`` already in NCHW order). Nothing is allocated per call.

GEMMs go through NumPy's ``matmul`` with ``out=`` (stacked over the images; the same OpenBLAS
that :func:`fastnn.kernels.cpu.blas.gemm` calls). The weight gradient falls back to per-image
:func:`~fastnn.kernels.cpu.blas.gemm` calls (BLAS beta = 1) when it has no scratch space.
"""

import numpy as np
from numba import njit

from ...convutil import output_hw
from .blas import gemm

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "maxpool2d_forward",
           "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"]


# --------------------------------------------------------------------------- im2col / col2im
# For kernel column j, the output columns ox whose input column ox * sw - left + j lies inside
# [0, W) form one range [lo, hi): computed once per j so the inner loops have no branches.
# Inner loops index 1-D views with a plain ``range(n)`` counter: Numba then knows the index is
# not negative and drops its wrap-around check, which is what lets LLVM vectorise the copies
# (7x faster than indexing ``a[row, base + ox]``).


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
    if sw == 1:                    # contiguous source rows: a separate loop nest vectorises
        _im2col_image_sw1(x, kh, kw, sh, top, left, oh, ow, cols)
        return
    c_in, h, w = x.shape
    zero = cols.dtype.type(0)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = _valid_range(j, sw, left, w, ow)
                start = lo * sw + j - left        # input column of output column lo
                for oy in range(oh):
                    seg = crow[oy * ow:(oy + 1) * ow]
                    hy = oy * sh - top + i
                    if hy < 0 or hy >= h or hi == lo:
                        for t in range(ow):
                            seg[t] = zero
                        continue
                    for t in range(lo):
                        seg[t] = zero
                    dst = seg[lo:]
                    src = x[c, hy, start:start + (hi - lo - 1) * sw + 1:sw]
                    for t in range(hi - lo):
                        dst[t] = src[t]
                    tail = seg[hi:]
                    for t in range(ow - hi):
                        tail[t] = zero


@njit(cache=True)
def _im2col_image_sw1(x, kh, kw, sh, top, left, oh, ow, cols):
    """:func:`_im2col_image` for column stride 1."""
    c_in, h, w = x.shape
    zero = cols.dtype.type(0)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = _valid_range(j, 1, left, w, ow)
                start = lo + j - left
                for oy in range(oh):
                    seg = crow[oy * ow:(oy + 1) * ow]
                    hy = oy * sh - top + i
                    if hy < 0 or hy >= h or hi == lo:
                        for t in range(ow):
                            seg[t] = zero
                        continue
                    for t in range(lo):
                        seg[t] = zero
                    dst = seg[lo:]
                    src = x[c, hy, start:start + hi - lo]
                    for t in range(hi - lo):
                        dst[t] = src[t]
                    tail = seg[hi:]
                    for t in range(ow - hi):
                        tail[t] = zero


@njit(cache=True)
def _col2im_image(cols, kh, kw, sh, sw, top, left, oh, ow, dx):
    """One image: dx (C, H, W) = fold of cols (C * kh * kw, oh * ow), overlaps added."""
    dx[...] = 0
    if sw == 1:
        _col2im_add_sw1(cols, kh, kw, sh, top, left, oh, ow, dx)
        return
    c_in, h, w = dx.shape
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = _valid_range(j, sw, left, w, ow)
                if hi == lo:
                    continue
                start = lo * sw + j - left
                for oy in range(oh):
                    hy = oy * sh - top + i
                    if hy < 0 or hy >= h:
                        continue
                    src = crow[oy * ow + lo:oy * ow + hi]
                    dst = dx[c, hy, start:start + (hi - lo - 1) * sw + 1:sw]
                    for t in range(hi - lo):
                        dst[t] += src[t]


@njit(cache=True)
def _col2im_add_sw1(cols, kh, kw, sh, top, left, oh, ow, dx):
    """The accumulation of :func:`_col2im_image` for column stride 1."""
    c_in, h, w = dx.shape
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = _valid_range(j, 1, left, w, ow)
                if hi == lo:
                    continue
                start = lo + j - left
                for oy in range(oh):
                    hy = oy * sh - top + i
                    if hy < 0 or hy >= h:
                        continue
                    src = crow[oy * ow + lo:oy * ow + hi]
                    dst = dx[c, hy, start:start + hi - lo]
                    for t in range(hi - lo):
                        dst[t] += src[t]


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
def _add_bias(out3, b):
    """out3 (N, F, L) += b (F,) along axis 1."""
    n_img, f, length = out3.shape
    for n in range(n_img):
        for k in range(f):
            row = out3[n, k]
            v = b[k]
            for t in range(length):
                row[t] += v


@njit(cache=True, fastmath=True)
def _sum(a):
    """Sum of a 1-D array in float64, reassociated (vectorised) by fastmath."""
    acc = 0.0
    for t in range(a.shape[0]):
        acc += a[t]
    return acc


@njit(cache=True)
def _weight_grad_gemm(dy3, cols, dw2, beta):
    """dw2 = beta * dw2 + sum_n dy3[n] @ cols[n].T as per-image BLAS calls (beta 0 or 1)."""
    if dy3.shape[0] == 0 and beta == 0:
        dw2[...] = 0
    for n in range(dy3.shape[0]):
        gemm(False, True, 1.0, dy3[n], cols[n], beta if n == 0 else 1.0, dw2)


@njit(cache=True)
def _bias_grad(dy3, db, beta):
    """db = beta * db + sum of dy3 (N, F, L) over N and L (beta 0 or 1)."""
    n_img, f, _ = dy3.shape
    for k in range(f):
        s = 0.0
        for n in range(n_img):
            s += _sum(dy3[n, k])
        if beta == 0:
            db[k] = s
        else:
            db[k] += s


def conv2d_forward(x, w, b, out, stride, padding, cols):
    """See :func:`fastnn.kernels.reference.conv2d_forward`; ``cols`` is left holding im2col(x).

    im2col (Numba), then ``w (F, K) @ cols[n]`` for every image in one stacked ``np.matmul``
    straight into ``out``, then the bias. ``out`` must be C-contiguous.
    """
    n, f, oh, ow = out.shape
    kh, kw = w.shape[2:]
    _im2col(x, kh, kw, stride[0], stride[1], padding[0], padding[2], oh, ow, cols)
    out3 = out.reshape(n, f, oh * ow)
    np.matmul(w.reshape(f, -1), cols, out=out3)
    _add_bias(out3, b)


def weight_gradient(dy3, cols, dcols, dw2, accumulate):
    """dw2 (F, C*kh*kw) (+)= sum over images of dy3[n] (F, L) @ cols[n].T (L = OH * OW).

    With scratch room in ``dcols`` (F <= L) the per-image products go there in one stacked
    ``np.matmul`` and are summed; otherwise per-image BLAS calls add them up in place.
    """
    n, f, length = dy3.shape
    if dcols is not None and n and f <= length:
        per_image = dcols.reshape(-1)[:n * f * dw2.shape[1]].reshape(n, f, dw2.shape[1])
        np.matmul(dy3, cols.transpose(0, 2, 1), out=per_image)
        if accumulate:
            per_image[0] += dw2
        np.sum(per_image, axis=0, out=dw2)
    else:
        _weight_grad_gemm(dy3, cols, dw2, 1.0 if accumulate else 0.0)


def conv2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv2d_backward`; ``cols`` must hold im2col(x).

    dw: :func:`weight_gradient`. db: one vectorised pass. dx: ``dcols[n] = w.T @ dy[n]`` in one stacked ``np.matmul``,
    then col2im.
    """
    n, f, oh, ow = dy.shape
    kh, kw = w.shape[2:]
    dy3 = dy.reshape(n, f, oh * ow)
    dw2 = dw.reshape(f, -1)
    beta = 1.0 if accumulate else 0.0
    weight_gradient(dy3, cols, dcols, dw2, accumulate)
    _bias_grad(dy3, db, beta)
    if dx is not None:
        np.matmul(w.reshape(f, -1).T, dy3, out=dcols)
        _col2im(dcols, kh, kw, stride[0], stride[1], padding[0], padding[2], oh, ow, dx)


# --------------------------------------------------------------------------- pooling


@njit(cache=True, inline="always")
def _window_max(plane, y0, y1, x0, x1, w):
    """(max, flat index) over plane[y0:y1, x0:x1] with PyTorch's rule: the first maximum wins,
    and a NaN wins over everything (the last NaN of the window). The NaN rule runs as a second
    pass only where a NaN was seen, so the common path is one compare per element."""
    best = plane[y0, x0]
    idx = y0 * w + x0
    nan = 0
    for yy in range(y0, y1):
        row = plane[yy]
        for xx in range(x0, x1):
            v = row[xx]
            nan += v != v
            if v > best:
                best = v
                idx = yy * w + xx
    if nan:
        for yy in range(y0, y1):
            for xx in range(x0, x1):
                v = plane[yy, xx]
                if v != v:
                    best = v
                    idx = yy * w + xx
    return best, idx


@njit(cache=True)
def _maxpool_forward(x, out, argmax, kh, kw, sh, sw, top, left):
    """One pass over the outputs; windows inside the image take a loop of fixed trip counts,
    windows clipped by the padding the general one."""
    n_img, c_in, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for n in range(n_img):
        for c in range(c_in):
            plane = x[n, c]
            o = out[n, c]
            a = argmax[n, c]
            for oy in range(oh):
                y0 = oy * sh - top
                y_inside = y0 >= 0 and y0 + kh <= h
                for ox in range(ow):
                    x0 = ox * sw - left
                    if y_inside and x0 >= 0 and x0 + kw <= w:
                        best = plane[y0, x0]
                        idx = y0 * w + x0
                        nan = 0
                        for i in range(kh):
                            row = plane[y0 + i]
                            for j in range(kw):
                                v = row[x0 + j]
                                nan += v != v
                                if v > best:
                                    best = v
                                    idx = (y0 + i) * w + x0 + j
                        if nan:
                            best, idx = _window_max(plane, y0, y0 + kh, x0, x0 + kw, w)
                    else:
                        best, idx = _window_max(plane, max(y0, 0), min(y0 + kh, h),
                                                max(x0, 0), min(x0 + kw, w), w)
                    o[oy, ox] = best
                    a[oy, ox] = idx


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
