"""Convolution and pooling on the CPU: direct SIMD kernels for stride 1 (:mod:`.conv_direct`),
Numba im2col / col2im around BLAS GEMM for the other strides, one-pass pooling.

Same signatures and buffer layouts as the "convolution and pooling" section of
:mod:`fastnn.kernels.reference.conv` (``stride`` a pair, ``padding`` the 4-tuple
``(top, bottom, left, right)``, ``cols`` of shape ``(N, C * kh * kw, OH * OW)``, so that
``w (F, C*kh*kw) @ cols[n]`` is ``out[n]`` already in NCHW order). Nothing is allocated per call.

The rest of this docstring is about the im2col path. Threads: every kernel splits the images (or the image planes) into one chunk per Numba thread
(``prange``), and each thread runs the whole per-image pipeline on its chunk: im2col into
``cols[n]``, the GEMM with single-threaded BLAS while that block is still in cache, the bias
and the activation. The weight gradient is summed per thread into scratch space carved out of
``dcols`` and the partial sums are added at the end in a fixed order: the result depends on
the thread count (through rounding), never on scheduling.
"""

import numpy as np
from numba import njit, prange

from ..geometry import output_hw
from . import conv_choice, conv_direct
from .blas import gemm
from .activations import IDENTITY, _act, _act_grad_from_output
from .common import row_sum, scale_or_zero
from .parallel import chunk as _chunk, parts as _parts

__all__ = ["conv2d_needs_cols", "im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "conv2d_act_forward", "conv2d_act_backward", "maxpool2d_forward",
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


@njit(cache=True, parallel=True)
def _im2col(x, kh, kw, sh, sw, top, left, oh, ow, cols, parts):
    for t in prange(parts):
        n0, n1 = _chunk(x.shape[0], t, parts)
        for n in range(n0, n1):
            _im2col_image(x[n], kh, kw, sh, sw, top, left, oh, ow, cols[n])


@njit(cache=True, parallel=True)
def _col2im(cols, kh, kw, sh, sw, top, left, oh, ow, dx, parts):
    for t in prange(parts):
        n0, n1 = _chunk(dx.shape[0], t, parts)
        for n in range(n0, n1):
            _col2im_image(cols[n], kh, kw, sh, sw, top, left, oh, ow, dx[n])


def im2col(x, kh, kw, stride, padding, cols):
    """See :func:`fastnn.kernels.reference.conv.im2col`."""
    n, c, h, w = x.shape
    oh, ow = output_hw(h, w, (kh, kw), stride, padding)
    _im2col(x, kh, kw, stride[0], stride[1], padding[0], padding[2], oh, ow, cols, _parts(n))


def col2im(cols, kh, kw, stride, padding, dx):
    """See :func:`fastnn.kernels.reference.conv.col2im`."""
    n, c, h, w = dx.shape
    oh, ow = output_hw(h, w, (kh, kw), stride, padding)
    _col2im(cols, kh, kw, stride[0], stride[1], padding[0], padding[2], oh, ow, dx, _parts(n))


# --------------------------------------------------------------------------- convolution


@njit(cache=True, parallel=True)
def _conv_forward(x, w2, b, out3, kh, kw, sh, sw, top, left, oh, ow, cols, code, parts):
    """Per image, on one thread: cols[n] = im2col(x[n]); out3[n] = act(w2 @ cols[n] + b) with
    the activation of ``code`` (0: none) applied in the same pass as the bias."""
    f = w2.shape[0]
    for t in prange(parts):
        n0, n1 = _chunk(x.shape[0], t, parts)
        for n in range(n0, n1):
            _im2col_image(x[n], kh, kw, sh, sw, top, left, oh, ow, cols[n])
            gemm(False, False, 1.0, w2, cols[n], 0.0, out3[n])
            for k in range(f):
                row = out3[n, k]
                v = b[k]
                for i in range(row.shape[0]):
                    row[i] = _act(row[i] + v, code)


def conv2d_needs_cols(stride, padding, kernel_size, x_shape=None, out_channels=None,
                      dtype=None):
    """See :func:`fastnn.kernels.reference.conv.conv2d_needs_cols`: not for the direct stride-1
    kernels, which re-read x instead. With the batch's shapes it answers what
    :mod:`.conv_choice` measured for them; without, by geometry alone
    (:func:`.conv_direct.supported`: then the kernels run direct when given no ``cols``)."""
    if x_shape is None or out_channels is None or dtype is None:
        return not conv_direct.supported(stride, padding, *kernel_size)
    return not conv_choice.use_direct(x_shape, out_channels, *kernel_size, stride, padding,
                                      np.dtype(dtype).itemsize, _parts(x_shape[0]))


def _direct(x_shape, f, kernel_size, stride, padding, itemsize, cols):
    """Whether the direct kernels run: when they support the geometry and either no ``cols``
    was made for im2col or :mod:`.conv_choice` chose them for this shape."""
    kh, kw = kernel_size
    if not conv_direct.supported(stride, padding, kh, kw):
        return False
    if cols is None:
        return True
    return conv_choice.use_direct(x_shape, f, kh, kw, stride, padding, itemsize,
                                  _parts(x_shape[0]))


def conv2d_forward(x, w, b, out, stride, padding, cols):
    """See :func:`fastnn.kernels.reference.conv.conv2d_forward`. Stride 1 runs the direct kernels
    (``cols`` unused, may be None); other strides leave im2col(x) in ``cols``.

    Other strides: each thread takes a chunk of the images: im2col, ``w (F, K) @ cols[n]``
    straight into ``out[n]`` (BLAS), the bias. ``out`` must be C-contiguous.
    """
    conv2d_act_forward(x, w, b, out, stride, padding, cols, IDENTITY)


def conv2d_act_forward(x, w, b, out, stride, padding, cols, act):
    """See :func:`fastnn.kernels.reference.conv.conv2d_act_forward`: :func:`conv2d_forward` with
    the activation applied in the bias pass, per image while its output is in cache."""
    n, f, oh, ow = out.shape
    kh, kw = w.shape[2:]
    if _direct(x.shape, f, (kh, kw), stride, padding, x.itemsize, cols):
        conv_direct.forward(x, w, b, out, padding, int(act), _parts(n))
        return
    _conv_forward(x, w.reshape(f, -1), b, out.reshape(n, f, oh * ow), kh, kw, stride[0],
                  stride[1], padding[0], padding[2], oh, ow, cols, int(act), _parts(n))


# Below this many weight-gradient entries (F * C*kh*kw) the per-image product dy[n] @ cols[n].T
# runs as plain dot products: BLAS cannot amortise its packing over so small an output (LeNet's
# first layer, 6 x 25 with L = 784: 120 us against 225 us per batch of 32, one thread).
_DOT_WGRAD_MAX = 256


@njit(cache=True, fastmath=True)
def _add_weight_grad_dots(dy2, cols2, dw2):
    """dw2 (F, K) += dy2 (F, L) @ cols2 (K, L).T as F * K dot products of length L."""
    f, length = dy2.shape
    for k in range(cols2.shape[0]):
        c = cols2[k]
        for i in range(f):
            d = dy2[i]
            acc = dw2.dtype.type(0)
            for t in range(length):
                acc += d[t] * c[t]
            dw2[i, k] += acc


@njit(cache=True, parallel=True)
def _conv_backward(w2, y3, dy3, dz3, code, dx, dw2, db, beta, kh, kw, sh, sw, top, left, oh,
                   ow, cols, scratch, parts):
    """Per image, on one thread: with an activation ``code`` (0: none) first
    dz[n] = dy[n] * act'(y[n]) (else dz3 is dy3), then dW_t += dz[n] @ cols[n].T, db_t += row
    sums of dz[n] and, with ``dx``, dx[n] = col2im(w2.T @ dz[n]).

    ``scratch`` holds, per thread, a (K, L) block for w2.T @ dy[n] and, when ``parts`` > 1, that
    thread's partial weight gradient and db_t (F,), added into dw2 and db (scaled by beta) at
    the end in a fixed order. With one part dw2 and db are accumulated in place. A partial
    summed by BLAS is kept transposed, (K, F) = cols[n] @ dz[n].T: that orientation is 13%
    faster for LeNet's second layer (160 against 183 us per batch on one thread)."""
    n_img, f, length = dy3.shape
    k_dim = w2.shape[1]
    kl = k_dim * length
    per = kl + f * k_dim + f if parts > 1 else kl
    dots = f * k_dim <= _DOT_WGRAD_MAX
    transposed = parts > 1 and not dots
    if parts == 1:
        scale_or_zero(dw2, beta)
        scale_or_zero(db, beta)
    for t in prange(parts):
        mine = scratch[t * per:(t + 1) * per]
        dct = mine[:kl].reshape((k_dim, length))
        if parts > 1:
            dwt = mine[kl:kl + f * k_dim].reshape((f, k_dim))
            dwt_t = mine[kl:kl + f * k_dim].reshape((k_dim, f))   # the same space, transposed
            dbt = mine[kl + f * k_dim:]
            dwt[...] = 0
            dbt[...] = 0
        else:
            dwt, dbt = dw2, db
            dwt_t = mine[:0].reshape((0, f))                      # not used with one part
        n0, n1 = _chunk(n_img, t, parts)
        for n in range(n0, n1):
            g = dz3[n]
            if code != 0:
                yn, dyn = y3[n], dy3[n]
                for k in range(f):
                    for i in range(length):
                        g[k, i] = dyn[k, i] * _act_grad_from_output(yn[k, i], code)
            if dots:
                _add_weight_grad_dots(g, cols[n], dwt)
            elif transposed:
                gemm(False, True, 1.0, cols[n], g, 1.0, dwt_t)
            else:
                gemm(False, True, 1.0, g, cols[n], 1.0, dwt)
            for k in range(f):
                dbt[k] += row_sum(g[k])
            if dx is not None:
                gemm(True, False, 1.0, w2, g, 0.0, dct)
                _col2im_image(dct, kh, kw, sh, sw, top, left, oh, ow, dx[n])
    if parts > 1:
        scale_or_zero(dw2, beta)
        scale_or_zero(db, beta)
        for t in range(parts):
            base = t * per + kl
            part = scratch[base:base + f * k_dim]
            if transposed:
                dw2 += part.reshape((k_dim, f)).T
            else:
                dw2 += part.reshape((f, k_dim))
            db += scratch[base + f * k_dim:base + f * k_dim + f]


def conv2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv.conv2d_backward`; ``cols`` as the forward left it.
    Runs :func:`conv2d_act_backward` without an activation.
    """
    conv2d_act_backward(x, w, dy, dy, dy, dx, dw, db, stride, padding, cols, dcols, IDENTITY,
                        accumulate)


def conv2d_act_backward(x, w, y, dy, dz, dx, dw, db, stride, padding, cols, dcols, act,
                        accumulate=False):
    """See :func:`fastnn.kernels.reference.conv.conv2d_act_backward`: dz[n] = dy[n] * act'(y[n])
    per image, then the gradients from dz[n] while it is in cache.

    Stride 1 runs the direct kernels (``cols`` and ``dcols`` unused, may be None). Other
    strides: each
    thread takes a chunk of the images; ``dcols`` (only needed one image at a time) is
    carved into each thread's (K, L) block for ``w.T @ dy[n]`` (then col2im into dx[n]) and its
    partial sums of dw and db, which are added at the end. A batch too small to give every
    thread its scratch space runs on fewer threads; without ``dcols`` (allowed when ``dx`` is
    None) one (K, L) block is allocated.
    """
    n, f, oh, ow = dy.shape
    kh, kw = w.shape[2:]
    code = int(act)
    if _direct(x.shape, f, (kh, kw), stride, padding, x.itemsize, cols):
        conv_direct.backward(x, w, y, dy, dz if code else dy, dx, dw, db, padding, code,
                             accumulate, _parts(n))
        return
    k_dim, length = cols.shape[1], cols.shape[2]
    scratch = np.empty(k_dim * length, x.dtype) if dcols is None else dcols.reshape(-1)
    parts = min(_parts(n), scratch.size // (k_dim * length + f * k_dim + f))
    shape3 = (n, f, oh * ow)
    _conv_backward(w.reshape(f, -1), y.reshape(shape3), dy.reshape(shape3),
                   (dz if code else dy).reshape(shape3), code, dx, dw.reshape(f, -1), db,
                   1.0 if accumulate else 0.0, kh, kw, stride[0], stride[1], padding[0],
                   padding[2], oh, ow, cols, scratch, max(parts, 1))


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
def _maxpool_plane(plane, o, a, kh, kw, sh, sw, top, left):
    """One (H, W) plane -> o, a (OH, OW). Windows inside the image take a loop of fixed trip
    counts with branch-free selects (random data defeats branch prediction), windows clipped by
    the padding and planes that hold a NaN the general rule of :func:`_window_max`."""
    h, w = plane.shape
    oh, ow = o.shape
    nan = 0
    for oy in range(oh):
        y0 = oy * sh - top
        y_inside = y0 >= 0 and y0 + kh <= h
        orow, arow = o[oy], a[oy]
        for ox in range(ow):
            x0 = ox * sw - left
            if y_inside and x0 >= 0 and x0 + kw <= w:
                best = plane[y0, x0]
                idx = y0 * w + x0
                for i in range(kh):
                    row = plane[y0 + i]
                    for j in range(kw):
                        v = row[x0 + j]
                        nan |= v != v
                        better = v > best
                        best = v if better else best
                        idx = (y0 + i) * w + x0 + j if better else idx
            else:
                best, idx = _window_max(plane, max(y0, 0), min(y0 + kh, h),
                                        max(x0, 0), min(x0 + kw, w), w)
            orow[ox] = best
            arow[ox] = idx
    if nan:
        _maxpool_plane_nan(plane, o, a, kh, kw, sh, sw, top, left)


@njit(cache=True)
def _maxpool_plane_2x2(plane, o, a):
    """:func:`_maxpool_plane` for 2x2 windows, stride 2, no padding (LeNet's pooling)."""
    w = plane.shape[1]
    oh, ow = o.shape
    nan = 0
    for oy in range(oh):
        r0, r1 = plane[2 * oy], plane[2 * oy + 1]
        orow, arow = o[oy], a[oy]
        base = 2 * oy * w
        for ox in range(ow):
            v0, v1, v2, v3 = r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]
            nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
            best, k = v0, 0
            best, k = (v1, 1) if v1 > best else (best, k)
            best, k = (v2, w) if v2 > best else (best, k)
            best, k = (v3, w + 1) if v3 > best else (best, k)
            orow[ox] = best
            arow[ox] = base + 2 * ox + k
    if nan:
        _maxpool_plane_nan(plane, o, a, 2, 2, 2, 2, 0, 0)


@njit(cache=True)
def _maxpool_plane_nan(plane, o, a, kh, kw, sh, sw, top, left):
    """Every window of the plane by :func:`_window_max` (PyTorch's NaN rule)."""
    h, w = plane.shape
    oh, ow = o.shape
    for oy in range(oh):
        y0 = oy * sh - top
        for ox in range(ow):
            x0 = ox * sw - left
            o[oy, ox], a[oy, ox] = _window_max(plane, max(y0, 0), min(y0 + kh, h),
                                               max(x0, 0), min(x0 + kw, w), w)


@njit(cache=True, parallel=True)
def _maxpool_forward(x, out, argmax, kh, kw, sh, sw, top, left, parts):
    """Planes (image, channel) split into one chunk per thread."""
    c_in, h, w = x.shape[1:]
    oh, ow = out.shape[2:]
    fast = (kh == 2 and kw == 2 and sh == 2 and sw == 2 and top == 0 and left == 0
            and 2 * oh <= h and 2 * ow <= w)       # every window inside the plane
    for t in prange(parts):
        p0, p1 = _chunk(x.shape[0] * c_in, t, parts)
        for p in range(p0, p1):
            n, c = divmod(p, c_in)
            if fast:
                _maxpool_plane_2x2(x[n, c], out[n, c], argmax[n, c])
            else:
                _maxpool_plane(x[n, c], out[n, c], argmax[n, c], kh, kw, sh, sw, top, left)


@njit(cache=True, parallel=True)
def _maxpool_backward(argmax, dy, dx3, parts):
    """dx3 (N, C, H * W) = 0, then dx3[n, c, argmax] += dy, plane by plane."""
    c_in, oh, ow = dy.shape[1:]
    for t in prange(parts):
        p0, p1 = _chunk(dy.shape[0] * c_in, t, parts)
        for p in range(p0, p1):
            n, c = divmod(p, c_in)
            plane, a, g = dx3[n, c], argmax[n, c], dy[n, c]
            plane[:] = 0
            for oy in range(oh):
                for ox in range(ow):
                    plane[a[oy, ox]] += g[oy, ox]


@njit(cache=True, parallel=True)
def _avgpool_forward(x, out, kh, kw, sh, sw, top, left, parts):
    c_in, h, w = x.shape[1:]
    oh, ow = out.shape[2], out.shape[3]
    inv = 1.0 / (kh * kw)
    for t in prange(parts):
        p0, p1 = _chunk(x.shape[0] * c_in, t, parts)
        for p in range(p0, p1):
            n, c = divmod(p, c_in)
            plane, o = x[n, c], out[n, c]
            for oy in range(oh):
                y0 = max(oy * sh - top, 0)
                y1 = min(oy * sh - top + kh, h)
                for ox in range(ow):
                    x0 = max(ox * sw - left, 0)
                    x1 = min(ox * sw - left + kw, w)
                    s = 0.0
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            s += plane[yy, xx]
                    o[oy, ox] = s * inv


@njit(cache=True, parallel=True)
def _avgpool_backward(dy, dx, kh, kw, sh, sw, top, left, parts):
    c_in, h, w = dx.shape[1:]
    oh, ow = dy.shape[2], dy.shape[3]
    inv = 1.0 / (kh * kw)
    for t in prange(parts):
        p0, p1 = _chunk(dx.shape[0] * c_in, t, parts)
        for p in range(p0, p1):
            n, c = divmod(p, c_in)
            plane, g = dx[n, c], dy[n, c]
            plane[...] = 0
            for oy in range(oh):
                y0 = max(oy * sh - top, 0)
                y1 = min(oy * sh - top + kh, h)
                for ox in range(ow):
                    x0 = max(ox * sw - left, 0)
                    x1 = min(ox * sw - left + kw, w)
                    v = g[oy, ox] * inv
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            plane[yy, xx] += v


def maxpool2d_forward(x, out, argmax, kernel, stride, padding):
    """See :func:`fastnn.kernels.reference.conv.maxpool2d_forward`."""
    _maxpool_forward(x, out, argmax, kernel[0], kernel[1], stride[0], stride[1],
                     padding[0], padding[2], _parts(x.shape[0] * x.shape[1]))


def maxpool2d_backward(argmax, dy, dx):
    """See :func:`fastnn.kernels.reference.conv.maxpool2d_backward`."""
    n, c = dx.shape[:2]
    _maxpool_backward(argmax, dy, dx.reshape(n, c, -1), _parts(n * c))


def avgpool2d_forward(x, out, kernel, stride, padding):
    """See :func:`fastnn.kernels.reference.conv.avgpool2d_forward`."""
    _avgpool_forward(x, out, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[2],
                     _parts(x.shape[0] * x.shape[1]))


def avgpool2d_backward(dy, dx, kernel, stride, padding):
    """See :func:`fastnn.kernels.reference.conv.avgpool2d_backward`."""
    _avgpool_backward(dy, dx, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[2],
                      _parts(dx.shape[0] * dx.shape[1]))
