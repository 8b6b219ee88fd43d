"""Convolution (im2col + the tiled GEMM), plain and with a fused activation, and pooling on the
device.

Same signatures and layouts as :mod:`fastnn.kernels.reference.conv`: images (N, C, H, W);
``kernel`` and ``stride`` pairs (along H, along W); ``padding`` the 4-tuple (top, bottom, left,
right); ``cols`` (N, C * kh * kw, OH * OW) with row (c * kh + i) * kw + j and column oh * OW + ow.

The adjoints are deterministic without atomics: col2im and the average-pool backward are
gathers (one thread per input element sums the windows that cover it, in a fixed order); the
max-pool backward, which is given no window geometry, scatters one (n, c) plane per thread. The window
arithmetic is written once, in the device functions below, and used by every kernel.

Launches: conv2d_forward 2 (im2col, batched GEMM with the bias in its epilogue);
conv2d_backward 3 without dx (weight GEMM split over groups of images, the sum of the groups,
the bias reduction) and 5 with it (+ GEMM into dcols, col2im); each pooling op 1. The fused
forms launch as many: conv2d_act_forward applies the activation in the GEMM's epilogue and
conv2d_act_backward computes dz = dy * act'(.) in the pass of the bias reduction (as the dense
layer does), so they agree bit for bit with the convolution followed by the activation kernel.
"""
import math

import numpy as np
from numba import cuda

from ..geometry import output_hw
from .common import IDENTITY, SIM, flat, larger, launch_1d
from .gemm import BIAS_PER_ROW, gemm
from .reduce import act_backward_channel_sum, channel_sum

SPLIT = 2 if SIM else 128
"""At most this many groups of images compute partial weight gradients in parallel."""


# --------------------------------------------------------------------------- window arithmetic


@cuda.jit(device=True)
def source_pixel(o, i, stride, pad):
    """Input coordinate seen by kernel offset ``i`` of output position ``o`` (may fall in the
    padding: < 0 or >= size)."""
    return o * stride - pad + i


@cuda.jit(device=True)
def covering_output(h, i, stride, pad, out_size):
    """The output position whose window puts kernel offset ``i`` on input coordinate ``h``, or
    -1 when there is none (the inverse of :func:`source_pixel`)."""
    t = h + pad - i
    if t < 0 or t % stride != 0:
        return -1
    o = t // stride
    return o if o < out_size else -1


def _geometry(x_shape, out_hw, kernel, stride, padding):
    """The ints every kernel takes: (C, H, W, kh, kw, sh, sw, top, left, OH, OW)."""
    _, c, h, w = x_shape
    return (int(c), int(h), int(w), int(kernel[0]), int(kernel[1]), int(stride[0]),
            int(stride[1]), int(padding[0]), int(padding[2]), int(out_hw[0]), int(out_hw[1]))


# --------------------------------------------------------------------------- im2col / col2im


@cuda.jit
def _im2col(x, cols, geo):
    """cols[n, (c*kh + i)*kw + j, oh*OW + ow] = x_padded[n, c, oh*sh + i, ow*sw + j]."""
    c_, h_, w_, kh, kw, sh, sw, top, left, oh_, ow_ = geo
    rows, plane = c_ * kh * kw, oh_ * ow_
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, cols.size, step):
        n = e // (rows * plane)
        rq = e - n * rows * plane
        r, q = rq // plane, rq % plane
        c, ij = r // (kh * kw), r % (kh * kw)
        h = source_pixel(q // ow_, ij // kw, sh, top)
        w = source_pixel(q % ow_, ij % kw, sw, left)
        v = 0.0
        if 0 <= h < h_ and 0 <= w < w_:
            v = x[((n * c_ + c) * h_ + h) * w_ + w]
        cols[e] = v


@cuda.jit
def _col2im(cols, dx, geo):
    """dx[n, c, h, w] = sum of the cols entries im2col took from x[n, c, h, w]."""
    c_, h_, w_, kh, kw, sh, sw, top, left, oh_, ow_ = geo
    rows, plane = c_ * kh * kw, oh_ * ow_
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dx.size, step):
        w = e % w_
        h = (e // w_) % h_
        c = (e // (w_ * h_)) % c_
        n = e // (w_ * h_ * c_)
        s = 0.0
        for i in range(kh):
            oh = covering_output(h, i, sh, top, oh_)
            if oh < 0:
                continue
            for j in range(kw):
                ow = covering_output(w, j, sw, left, ow_)
                if ow >= 0:
                    s += cols[(n * rows + (c * kh + i) * kw + j) * plane + oh * ow_ + ow]
        dx[e] = s


def im2col(x, kh, kw, stride, padding, cols):
    """Unfold the (kh, kw) windows of x (N, C, H, W) into cols (N, C * kh * kw, OH * OW)."""
    geo = _geometry(x.shape, _out_hw(x.shape, (kh, kw), stride, padding), (kh, kw), stride, padding)
    cf = flat(cols)
    launch_1d(_im2col, cf.size, flat(x), cf, geo)


def col2im(cols, kh, kw, stride, padding, dx):
    """Adjoint of :func:`im2col`: dx (N, C, H, W) written with the folded, summed columns."""
    geo = _geometry(dx.shape, _out_hw(dx.shape, (kh, kw), stride, padding), (kh, kw), stride, padding)
    dxf = flat(dx)
    launch_1d(_col2im, dxf.size, flat(cols), dxf, geo)


def _out_hw(x_shape, kernel, stride, padding):
    return output_hw(x_shape[2], x_shape[3], kernel, stride, padding)


# --------------------------------------------------------------------------- convolution


def conv2d_needs_cols(stride, padding, kernel_size, x_shape=None, out_channels=None, dtype=None):
    """Whether the conv2d kernels use the ``cols`` / ``dcols`` work buffers: always here
    (im2col + batched GEMM, whatever the geometry)."""
    return True


def conv2d_forward(x, w, b, out, stride, padding, cols):
    """2-D cross-correlation: im2col, then one batched GEMM out[n] = W (F, C*kh*kw) @ cols[n]
    with the bias (per row) in its epilogue. 2 launches; cols is left holding im2col(x).

    x : (N, C, H, W); w : (F, C, kh, kw); b : (F,); out : (N, F, OH, OW);
    cols : (N, C * kh * kw, OH * OW).
    """
    conv2d_act_forward(x, w, b, out, stride, padding, cols, IDENTITY)


def conv2d_act_forward(x, w, b, out, stride, padding, cols, act):
    """out = act(conv2d(x, w) + b) for the Activation ``act``: as :func:`conv2d_forward`, the
    activation applied in the GEMM's epilogue. 2 launches."""
    n, f = out.shape[0], out.shape[1]
    kh, kw = w.shape[2], w.shape[3]
    ckk, plane = cols.shape[1], cols.shape[2]
    im2col(x, kh, kw, stride, padding, cols)
    gemm(False, False, w, cols, out, f, plane, ckk, bias=b, bias_mode=BIAS_PER_ROW, act=act,
         batches=n, a_bs=0, b_bs=ckk * plane, c_bs=f * plane)


_partials = {}


def _partial_buffer(groups, size, dtype):
    key = (groups, size, np.dtype(dtype).str)
    buf = _partials.get(key)
    if buf is None:
        buf = _partials[key] = cuda.device_array(groups * size, dtype=dtype)
    return buf


@cuda.jit
def _sum_partials(parts, out, groups, beta):
    """out[i] = beta * out[i] + sum over g of parts[g * out.size + i], g in order."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.size, step):
        s = parts[i]
        for g in range(1, groups):
            s += parts[g * out.size + i]
        out[i] = s + beta * out[i] if beta != 0 else s


def conv2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """Gradients of :func:`conv2d_forward` (cols must hold im2col(x)).

    dw (F, C, kh, kw) (+)= sum_n dy[n] (F, P) @ cols[n].T: the images are split into up to
    ``SPLIT`` groups whose partial sums run in parallel, then are added in a fixed order;
    db (+)= dy summed over N, OH, OW; dx (N, C, H, W) = col2im(W.T @ dy[n]) unless dx is None
    (dcols is its work buffer).
    """
    channel_sum(dy, db, accumulate)
    _conv_gemms(x, w, dy, dx, dw, stride, padding, cols, dcols, accumulate)


def conv2d_act_backward(x, w, y, dy, dz, dx, dw, db, stride, padding, cols, dcols, act,
                        accumulate=False):
    """Backward of :func:`conv2d_act_forward` from its output y: dz = dy * act'(.) (a buffer
    like y) and db (+)= dz summed over N, OH, OW in one launch, then the products of
    :func:`conv2d_backward` with dz."""
    act_backward_channel_sum(y, dy, dz, db, act, accumulate)
    _conv_gemms(x, w, dz, dx, dw, stride, padding, cols, dcols, accumulate)


def _conv_gemms(x, w, dz, dx, dw, stride, padding, cols, dcols, accumulate):
    """dw (+)= the weight gradient of dz, dx = col2im(W.T @ dz[n]) unless dx is None."""
    n, f = dz.shape[0], dz.shape[1]
    kh, kw = w.shape[2], w.shape[3]
    ckk, plane = cols.shape[1], cols.shape[2]
    beta = 1.0 if accumulate else 0.0
    inner = -(-n // min(n, SPLIT)) if n else 1
    groups = -(-n // inner) if n else 0
    if groups <= 1:
        gemm(False, True, dz, cols, dw, f, ckk, plane, beta=beta, batches=n, a_bs=f * plane,
             b_bs=ckk * plane, c_bs=0, inner=max(n, 1))
    else:
        dwf = flat(dw)
        parts = _partial_buffer(groups, dwf.size, dwf.dtype)
        gemm(False, True, dz, cols, parts, f, ckk, plane, batches=n, a_bs=f * plane,
             b_bs=ckk * plane, c_bs=f * ckk, inner=inner)
        launch_1d(_sum_partials, dwf.size, parts, dwf, groups, beta)
    if dx is not None:
        gemm(True, False, w, dz, dcols, ckk, plane, f, batches=n, a_bs=0, b_bs=f * plane,
             c_bs=ckk * plane)
        col2im(dcols, kh, kw, stride, padding, dx)


# --------------------------------------------------------------------------- pooling


@cuda.jit
def _maxpool_forward(x, out, argmax, geo):
    """Max over each window (padding never wins); argmax = h * W + w of the winner in its plane.
    As PyTorch: the first in row-major window order wins ties, a NaN wins (the last NaN), a
    window of -inf points at its first in-bounds pixel."""
    c_, h_, w_, kh, kw, sh, sw, top, left, oh_, ow_ = geo
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, step):
        ow = e % ow_
        oh = (e // ow_) % oh_
        plane = e // (ow_ * oh_)                     # n * C + c
        base = plane * h_ * w_
        best = -math.inf
        arg = larger(source_pixel(oh, 0, sh, top), 0) * w_ + larger(source_pixel(ow, 0, sw, left), 0)
        for i in range(kh):
            h = source_pixel(oh, i, sh, top)
            if 0 <= h < h_:
                for j in range(kw):
                    w = source_pixel(ow, j, sw, left)
                    if 0 <= w < w_:
                        v = x[base + h * w_ + w]
                        if v > best or v != v:
                            best, arg = v, h * w_ + w
        out[e] = best
        argmax[e] = arg


@cuda.jit
def _avgpool_forward(x, out, geo):
    """Mean over each window, zero padding counted (every window divides by kh * kw)."""
    c_, h_, w_, kh, kw, sh, sw, top, left, oh_, ow_ = geo
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, step):
        ow = e % ow_
        oh = (e // ow_) % oh_
        base = (e // (ow_ * oh_)) * h_ * w_
        s = 0.0
        for i in range(kh):
            h = source_pixel(oh, i, sh, top)
            if 0 <= h < h_:
                for j in range(kw):
                    w = source_pixel(ow, j, sw, left)
                    if 0 <= w < w_:
                        s += x[base + h * w_ + w]
        out[e] = s / (kh * kw)


@cuda.jit
def _avgpool_backward(dy, dx, geo):
    """dx[n, c, h, w] = sum of dy / (kh * kw) over the windows covering (h, w)."""
    c_, h_, w_, kh, kw, sh, sw, top, left, oh_, ow_ = geo
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dx.size, step):
        w = e % w_
        h = (e // w_) % h_
        plane = e // (w_ * h_)
        s = 0.0
        for i in range(kh):
            oh = covering_output(h, i, sh, top, oh_)
            if oh < 0:
                continue
            for j in range(kw):
                ow = covering_output(w, j, sw, left, ow_)
                if ow >= 0:
                    s += dy[(plane * oh_ + oh) * ow_ + ow]
        dx[e] = s / (kh * kw)


def maxpool2d_forward(x, out, argmax, kernel, stride, padding):
    """Max over each (kh, kw) window. x : (N, C, H, W); out, argmax : (N, C, OH, OW); one launch."""
    geo = _geometry(x.shape, out.shape[2:], kernel, stride, padding)
    of = flat(out)
    launch_1d(_maxpool_forward, of.size, flat(x), of, flat(argmax), geo)


def maxpool2d_backward(argmax, dy, dx):
    """Route each output gradient to its window's winner; overlapping windows add up. One launch.

    argmax, dy : (N, C, OH, OW); dx : (N, C, H, W), written. The window geometry is not passed
    in, so one thread per (n, c) plane clears its dx plane and adds its outputs' gradients at
    their argmax in output order (the reference's order): deterministic, no atomics.
    """
    dxf = flat(dx)
    planes = dx.shape[0] * dx.shape[1]
    launch_1d(_maxpool_backward, planes, flat(argmax), flat(dy), dxf,
              dy.shape[2] * dy.shape[3], dx.shape[2] * dx.shape[3])


@cuda.jit
def _maxpool_backward(argmax, dy, dx, out_plane, in_plane):
    """dx[p, :] = 0, then dx[p, argmax[p, o]] += dy[p, o] for o in order; one thread per plane p."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for p in range(start, dx.size // in_plane, step):
        base = p * in_plane
        for a in range(in_plane):
            dx[base + a] = 0
        for o in range(p * out_plane, (p + 1) * out_plane):
            dx[base + argmax[o]] += dy[o]


def avgpool2d_forward(x, out, kernel, stride, padding):
    """Mean over each (kh, kw) window, zero padding counted. One launch."""
    geo = _geometry(x.shape, out.shape[2:], kernel, stride, padding)
    of = flat(out)
    launch_1d(_avgpool_forward, of.size, flat(x), of, geo)


def avgpool2d_backward(dy, dx, kernel, stride, padding):
    """Spread each output gradient evenly over its window; overlaps add up. One launch."""
    geo = _geometry(dx.shape, dy.shape[2:], kernel, stride, padding)
    dxf = flat(dx)
    launch_1d(_avgpool_backward, dxf.size, flat(dy), dxf, geo)
