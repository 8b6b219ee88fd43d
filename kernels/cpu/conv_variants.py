"""Convolution variants and LP pooling on the CPU: Numba kernels split over the images (or the
weight sets) with ``prange``, BLAS GEMMs on one thread each, as :mod:`.conv`'s im2col path.

Same signatures and buffer layouts as :mod:`fastnn.kernels.reference.conv_variants`:

* a dilated im2col / col2im per image (:func:`_im2col_image`), the index arithmetic of
  :mod:`.conv` (``_valid_range``) with the kernel tap's offset ``i * dh`` / ``j * dw``;
* grouped convolution: per image and per group one BLAS GEMM on the group's rows of ``cols``
  (depthwise: ``groups = C``); weight gradients summed per thread and added in a fixed order;
* transposed convolution: the GEMM and col2im of a convolution's input gradient;
* locally connected / tiled: the contraction of ``cols`` with one weight set per output
  position, the weight gradient split over the weight sets (no partial sums needed).

Allocations per call: the grouped and transposed backward make their per-thread weight-gradient
partials (threads x the weight's size) when more than one thread works.
"""
import numpy as np
from numba import njit, prange

from ..geometry import output_hw
from .conv import _valid_range
from .blas import gemm
from .common import row_sum, scale_or_zero
from .parallel import chunk as _chunk, parts as _parts

_KERNEL = dict(cache=True, error_model="numpy")


def dilated_kernel(kernel, dilation):
    """See :func:`fastnn.kernels.reference.conv_variants.dilated_kernel`."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


# --------------------------------------------------------------------------- im2col / col2im


@njit(**_KERNEL)
def _im2col_image(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, cols):
    """One image: x (C, H, W) -> cols (C * kh * kw, oh * ow), dilated taps."""
    c_in, h, w = x.shape
    zero = cols.dtype.type(0)
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = _valid_range(j * dw, sw, left, w, ow)
                start = lo * sw + j * dw - left
                for oy in range(oh):
                    seg = crow[oy * ow:(oy + 1) * ow]
                    hy = oy * sh - top + i * dh
                    if hy < 0 or hy >= h or hi == lo:
                        for t in range(ow):
                            seg[t] = zero
                        continue
                    for t in range(lo):
                        seg[t] = zero
                    dst = seg[lo:]
                    src = x[c, hy]
                    for t in range(hi - lo):
                        dst[t] = src[start + t * sw]
                    tail = seg[hi:]
                    for t in range(ow - hi):
                        tail[t] = zero


@njit(**_KERNEL)
def _col2im_image(cols, kh, kw, sh, sw, dh, dw, top, left, oh, ow, dx):
    """One image: dx (C, H, W) = fold of cols (C * kh * kw, oh * ow), overlaps added."""
    dx[...] = 0
    c_in, h, w = dx.shape
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = _valid_range(j * dw, sw, left, w, ow)
                if hi == lo:
                    continue
                start = lo * sw + j * dw - left
                for oy in range(oh):
                    hy = oy * sh - top + i * dh
                    if hy < 0 or hy >= h:
                        continue
                    src = crow[oy * ow + lo:oy * ow + hi]
                    dst = dx[c, hy]
                    for t in range(hi - lo):
                        dst[start + t * sw] += src[t]


@njit(parallel=True, **_KERNEL)
def _im2col(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, cols, parts):
    for t in prange(parts):
        n0, n1 = _chunk(x.shape[0], t, parts)
        for n in range(n0, n1):
            _im2col_image(x[n], kh, kw, sh, sw, dh, dw, top, left, oh, ow, cols[n])


@njit(parallel=True, **_KERNEL)
def _col2im(cols, kh, kw, sh, sw, dh, dw, top, left, oh, ow, dx, parts):
    for t in prange(parts):
        n0, n1 = _chunk(dx.shape[0], t, parts)
        for n in range(n0, n1):
            _col2im_image(cols[n], kh, kw, sh, sw, dh, dw, top, left, oh, ow, dx[n])


def _geometry(h, w, kernel, stride, padding, dilation):
    """The positional arguments of the per-image kernels after kh, kw."""
    oh, ow = output_hw(h, w, dilated_kernel(kernel, dilation), stride, padding)
    return (stride[0], stride[1], dilation[0], dilation[1], padding[0], padding[2], oh, ow)


def im2col_dilated(x, kh, kw, stride, padding, dilation, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.im2col_dilated`."""
    n, _, h, w = x.shape
    _im2col(x, kh, kw, *_geometry(h, w, (kh, kw), stride, padding, dilation), cols, _parts(n))


def col2im_dilated(cols, kh, kw, stride, padding, dilation, dx):
    """See :func:`fastnn.kernels.reference.conv_variants.col2im_dilated`."""
    n, _, h, w = dx.shape
    _col2im(cols, kh, kw, *_geometry(h, w, (kh, kw), stride, padding, dilation), dx, _parts(n))


# --------------------------------------------------------------------------- grouped, dilated


@njit(parallel=True, **_KERNEL)
def _grouped_forward(x, w2, b, out3, kh, kw, sh, sw, dh, dw, top, left, oh, ow, groups, cols,
                     parts):
    """Per image on one thread: im2col, then per group out3[n, fg] = w2[fg] @ cols[n, kg]; bias."""
    f, kg = w2.shape
    fg = f // groups
    for t in prange(parts):
        n0, n1 = _chunk(x.shape[0], t, parts)
        for n in range(n0, n1):
            _im2col_image(x[n], kh, kw, sh, sw, dh, dw, top, left, oh, ow, cols[n])
            for g in range(groups):
                gemm(False, False, 1.0, w2[g * fg:(g + 1) * fg], cols[n, g * kg:(g + 1) * kg],
                     0.0, out3[n, g * fg:(g + 1) * fg])
            for k in range(f):
                row = out3[n, k]
                v = b[k]
                for i in range(row.shape[0]):
                    row[i] += v


@njit(parallel=True, **_KERNEL)
def _grouped_backward(w2, dy3, dx, dw2, db, beta, kh, kw, sh, sw, dh, dw, top, left, oh, ow,
                      groups, cols, dcols, pdw, pdb, parts):
    """Per image on one thread: dW_t[fg] += dy[n, fg] @ cols[n, kg].T, db_t += row sums and,
    with dx, dx[n] = col2im(per group w2[fg].T @ dy[n, fg]); partials (pdw (parts, F, K/G),
    pdb (parts, F)) added into dw2, db (times beta) in thread order at the end."""
    f, kg = w2.shape
    fg = f // groups
    for t in prange(parts):
        pdw[t] = 0
        pdb[t] = 0
        n0, n1 = _chunk(dy3.shape[0], t, parts)
        for n in range(n0, n1):
            for g in range(groups):
                gemm(False, True, 1.0, dy3[n, g * fg:(g + 1) * fg], cols[n, g * kg:(g + 1) * kg],
                     1.0, pdw[t, g * fg:(g + 1) * fg])
                if dx is not None:
                    gemm(True, False, 1.0, w2[g * fg:(g + 1) * fg], dy3[n, g * fg:(g + 1) * fg],
                         0.0, dcols[n, g * kg:(g + 1) * kg])
            for k in range(f):
                pdb[t, k] += row_sum(dy3[n, k])
            if dx is not None:
                _col2im_image(dcols[n], kh, kw, sh, sw, dh, dw, top, left, oh, ow, dx[n])
    scale_or_zero(dw2, beta)
    scale_or_zero(db, beta)
    for t in range(parts):
        dw2 += pdw[t]
        db += pdb[t]


def conv2d_ex_forward(x, w, b, out, stride, padding, dilation, groups, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.conv2d_ex_forward`."""
    n, f, oh, ow = out.shape
    kh, kw = w.shape[2:]
    geo = _geometry(x.shape[2], x.shape[3], (kh, kw), stride, padding, dilation)
    _grouped_forward(x, w.reshape(f, -1), b, out.reshape(n, f, oh * ow), kh, kw, *geo,
                     int(groups), cols, _parts(n))


def conv2d_ex_backward(x, w, dy, dx, dw, db, stride, padding, dilation, groups, cols, dcols,
                       accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.conv2d_ex_backward` (allocates the
    per-thread weight-gradient partials)."""
    n, f, oh, ow = dy.shape
    kh, kw = w.shape[2:]
    parts = _parts(n)
    w2 = w.reshape(f, -1)
    geo = _geometry(x.shape[2], x.shape[3], (kh, kw), stride, padding, dilation)
    pdw = np.empty((parts,) + w2.shape, w.dtype)
    pdb = np.empty((parts, f), w.dtype)
    _grouped_backward(w2, dy.reshape(n, f, oh * ow), dx, dw.reshape(f, -1), db,
                      1.0 if accumulate else 0.0, kh, kw, *geo, int(groups), cols, dcols, pdw,
                      pdb, parts)


# --------------------------------------------------------------------------- transposed


@njit(parallel=True, **_KERNEL)
def _transpose_forward(x3, w2, b, out, kh, kw, sh, sw, top, left, h, w, cols, parts):
    """Per image: cols[n] = w2.T @ x3[n]; out[n] = col2im(cols[n]) + b."""
    for t in prange(parts):
        n0, n1 = _chunk(x3.shape[0], t, parts)
        for n in range(n0, n1):
            gemm(True, False, 1.0, w2, x3[n], 0.0, cols[n])
            _col2im_image(cols[n], kh, kw, sh, sw, 1, 1, top, left, h, w, out[n])
            for k in range(out.shape[1]):
                plane = out[n, k]
                v = b[k]
                for i in range(plane.shape[0]):
                    for j in range(plane.shape[1]):
                        plane[i, j] += v


@njit(parallel=True, **_KERNEL)
def _transpose_backward(x3, w2, dy, dx3, dw2, db, beta, kh, kw, sh, sw, top, left, h, w, cols,
                        pdw, pdb, parts):
    """Per image: cols[n] = im2col(dy[n]); dx3[n] = w2 @ cols[n]; dW_t += x3[n] @ cols[n].T."""
    o = dy.shape[1]
    for t in prange(parts):
        pdw[t] = 0
        pdb[t] = 0
        n0, n1 = _chunk(x3.shape[0], t, parts)
        for n in range(n0, n1):
            _im2col_image(dy[n], kh, kw, sh, sw, 1, 1, top, left, h, w, cols[n])
            if dx3 is not None:
                gemm(False, False, 1.0, w2, cols[n], 0.0, dx3[n])
            gemm(False, True, 1.0, x3[n], cols[n], 1.0, pdw[t])
            for k in range(o):
                pdb[t, k] += row_sum(dy[n, k].ravel())
    scale_or_zero(dw2, beta)
    scale_or_zero(db, beta)
    for t in range(parts):
        dw2 += pdw[t]
        db += pdb[t]


def conv_transpose2d_forward(x, w, b, out, stride, padding, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.conv_transpose2d_forward`."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    _transpose_forward(x.reshape(n, c, h * wd), w.reshape(c, -1), b, out, kh, kw, stride[0],
                       stride[1], padding[0], padding[2], h, wd, cols, _parts(n))


def conv_transpose2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.conv_transpose2d_backward`
    (allocates the per-thread weight-gradient partials)."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    parts = _parts(n)
    w2 = w.reshape(c, -1)
    pdw = np.empty((parts,) + w2.shape, w.dtype)
    pdb = np.empty((parts, dy.shape[1]), w.dtype)
    dx3 = None if dx is None else dx.reshape(n, c, h * wd)
    _transpose_backward(x.reshape(n, c, h * wd), w2, dy, dx3, dw.reshape(c, -1), db,
                        1.0 if accumulate else 0.0, kh, kw, stride[0], stride[1], padding[0],
                        padding[2], h, wd, cols, pdw, pdb, parts)


# --------------------------------------------------------------------------- unshared


def _sets(oh, ow, rows, columns):
    """(set of each output position (L,), positions ordered by set (L,), start of each set's
    run in that order (S + 1,)): position p * ow + q uses set (p mod rows) * columns + q mod
    columns (locally connected: rows, columns = oh, ow, one set per position)."""
    p, q = np.divmod(np.arange(oh * ow), ow)
    which = (p % rows) * columns + q % columns
    order = np.argsort(which, kind="stable")
    starts = np.searchsorted(which[order], np.arange(rows * columns + 1))
    return which.astype(np.int64), order.astype(np.int64), starts.astype(np.int64)


@njit(parallel=True, **_KERNEL)
def _unshared_forward(x, w3, which, out3, kh, kw, sh, sw, oh, ow, cols, parts):
    """Per image: im2col; out3[n, f, l] = sum_k w3[which[l], f, k] cols[n, k, l]."""
    f, k_dim = w3.shape[1], w3.shape[2]
    for t in prange(parts):
        n0, n1 = _chunk(x.shape[0], t, parts)
        for n in range(n0, n1):
            _im2col_image(x[n], kh, kw, sh, sw, 1, 1, 0, 0, oh, ow, cols[n])
            cn = cols[n]
            for l in range(oh * ow):
                ws = w3[which[l]]
                for o in range(f):
                    acc = out3.dtype.type(0)
                    for k in range(k_dim):
                        acc += ws[o, k] * cn[k, l]
                    out3[n, o, l] = acc


@njit(parallel=True, **_KERNEL)
def _unshared_weight_grad(dy3, cols, order, starts, dw3, beta):
    """Per weight set s on one thread: dw3[s] (times beta) += the sum over its positions l and
    the images n of dy3[n, :, l] (x) cols[n, :, l]."""
    f, k_dim = dw3.shape[1], dw3.shape[2]
    for s in prange(dw3.shape[0]):
        ds = dw3[s]
        scale_or_zero(ds, beta)
        for r in range(starts[s], starts[s + 1]):
            l = order[r]
            for n in range(dy3.shape[0]):
                for o in range(f):
                    d = dy3[n, o, l]
                    for k in range(k_dim):
                        ds[o, k] += d * cols[n, k, l]


@njit(parallel=True, **_KERNEL)
def _unshared_input_grad(w3, which, dy3, dx, kh, kw, sh, sw, oh, ow, dcols, parts):
    """Per image: dcols[n, k, l] = sum_f w3[which[l], f, k] dy3[n, f, l]; dx[n] = col2im."""
    f, k_dim = w3.shape[1], w3.shape[2]
    for t in prange(parts):
        n0, n1 = _chunk(dy3.shape[0], t, parts)
        for n in range(n0, n1):
            dc = dcols[n]
            for l in range(oh * ow):
                ws = w3[which[l]]
                for k in range(k_dim):
                    acc = dc.dtype.type(0)
                    for o in range(f):
                        acc += ws[o, k] * dy3[n, o, l]
                    dc[k, l] = acc
            _col2im_image(dc, kh, kw, sh, sw, 1, 1, 0, 0, oh, ow, dx[n])


def _unshared_fwd(x, w, out, stride, cols):
    n, f, oh, ow = out.shape
    kh, kw = w.shape[4:]
    which, _, _ = _sets(oh, ow, w.shape[0], w.shape[1])
    w3 = w.reshape(w.shape[0] * w.shape[1], f, -1)
    _unshared_forward(x, w3, which, out.reshape(n, f, oh * ow), kh, kw, stride[0], stride[1],
                      oh, ow, cols, _parts(n))


def _unshared_bwd(w, dy, dx, dw, stride, cols, dcols, accumulate):
    n, f, oh, ow = dy.shape
    kh, kw = w.shape[4:]
    which, order, starts = _sets(oh, ow, w.shape[0], w.shape[1])
    w3 = w.reshape(w.shape[0] * w.shape[1], f, -1)
    dy3 = dy.reshape(n, f, oh * ow)
    _unshared_weight_grad(dy3, cols, order, starts, dw.reshape(w3.shape),
                          1.0 if accumulate else 0.0)
    if dx is not None:
        _unshared_input_grad(w3, which, dy3, dx, kh, kw, stride[0], stride[1], oh, ow, dcols,
                             _parts(n))


def _set_or_add(dst, value, accumulate):
    if accumulate:
        dst += value
    else:
        dst[...] = value


def locally_connected2d_forward(x, w, b, out, stride, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.locally_connected2d_forward`."""
    _unshared_fwd(x, w, out, stride, cols)
    out += b


def locally_connected2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.locally_connected2d_backward`."""
    _unshared_bwd(w, dy, dx, dw, stride, cols, dcols, accumulate)
    _set_or_add(db, dy.sum(axis=0), accumulate)


def tiled_conv2d_forward(x, w, b, out, stride, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.tiled_conv2d_forward`."""
    _unshared_fwd(x, w, out, stride, cols)
    out += b.reshape(1, -1, 1, 1)


def tiled_conv2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.tiled_conv2d_backward`."""
    _unshared_bwd(w, dy, dx, dw, stride, cols, dcols, accumulate)
    _set_or_add(db, dy.sum(axis=(0, 2, 3)), accumulate)


# --------------------------------------------------------------------------- LP pooling


@njit(parallel=True, **_KERNEL)
def _lp_forward(x3, out3, p, kh, kw, sh, sw):
    """Per plane: out = (window sum of x ** p) ** (1 / p)."""
    oh, ow = out3.shape[1], out3.shape[2]
    inv = 1 / p
    for m in prange(x3.shape[0]):
        for a in range(oh):
            for c in range(ow):
                acc = x3.dtype.type(0)
                for i in range(kh):
                    for j in range(kw):
                        acc += x3[m, a * sh + i, c * sw + j] ** p
                out3[m, a, c] = acc ** inv


@njit(parallel=True, **_KERNEL)
def _lp_backward(x3, y3, dy3, dx3, p, kh, kw, sh, sw):
    """Per plane: dx = x ** (p - 1) * the sum over the windows holding it of dy * y ** (1 - p)
    (0 for a window whose sum is 0)."""
    oh, ow = y3.shape[1], y3.shape[2]
    zero = dx3.dtype.type(0)
    for m in prange(x3.shape[0]):
        dx3[m] = 0
        for a in range(oh):
            for c in range(ow):
                y = y3[m, a, c]
                g = dy3[m, a, c] * y ** (1 - p) if y != 0 else zero
                for i in range(kh):
                    for j in range(kw):
                        dx3[m, a * sh + i, c * sw + j] += g
        for i in range(x3.shape[1]):
            for j in range(x3.shape[2]):
                dx3[m, i, j] *= x3[m, i, j] ** (p - 1)


def _planes(a):
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3])


def lppool2d_forward(x, out, norm_type, kernel, stride):
    """See :func:`fastnn.kernels.reference.conv_variants.lppool2d_forward`."""
    _lp_forward(_planes(x), _planes(out), x.dtype.type(norm_type), kernel[0], kernel[1],
                stride[0], stride[1])


def lppool2d_backward(x, y, dy, dx, norm_type, kernel, stride):
    """See :func:`fastnn.kernels.reference.conv_variants.lppool2d_backward`."""
    _lp_backward(_planes(x), _planes(y), _planes(dy), _planes(dx), x.dtype.type(norm_type),
                 kernel[0], kernel[1], stride[0], stride[1])
