"""Convolution variants on CUDA: grouped, dilated, transposed, locally connected and tiled
convolution and LP pooling as direct kernels (one thread per output, input-gradient or
weight-gradient element; no ``cols`` buffer), and the dilated im2col / col2im.

Same signatures as :mod:`fastnn.kernels.reference.conv_variants`. A transposed convolution is
the adjoint of a convolution, so the same three kernels serve it with the roles swapped: its
forward is a convolution's input gradient, its input gradient a convolution's forward, its
weight gradient a convolution's weight gradient with input and output exchanged.
"""
from numba import cuda

from ..geometry import output_hw
from .common import flat, launch_1d
from .reduce import channel_sum


def _dilated(kernel, dilation):
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


def _geometry(x_shape, y_shape, kernel, stride, padding, dilation, groups):
    """The ints every kernel takes: (C, H, W, F, OH, OW, kh, kw, sh, sw, dh, dw, top, left, G)."""
    return tuple(int(v) for v in (x_shape[1], x_shape[2], x_shape[3], y_shape[1], y_shape[2],
                                  y_shape[3], kernel[0], kernel[1], stride[0], stride[1],
                                  dilation[0], dilation[1], padding[0], padding[2], groups))


@cuda.jit(device=True)
def _covering(h, tap, stride, pad, out_size):
    """The output position whose window puts the (dilated) tap offset ``tap`` on input ``h``,
    or -1."""
    t = h + pad - tap
    if t < 0 or t % stride != 0:
        return -1
    o = t // stride
    return o if o < out_size else -1


@cuda.jit
def _forward(x, w, b, out, geo, use_bias):
    """out[n, f, oh, ow] = b[f] + sum over the group's c and the taps of w * x_padded."""
    c_, h_, w_, f_, oh_, ow_, kh, kw, sh, sw, dh, dw, top, left, groups = geo
    cg, fg = c_ // groups, f_ // groups
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, step):
        ow = e % ow_
        oh = (e // ow_) % oh_
        f = (e // (ow_ * oh_)) % f_
        n = e // (ow_ * oh_ * f_)
        s = b[f] if use_bias else 0.0
        c0 = (f // fg) * cg
        for cc in range(cg):
            for i in range(kh):
                h = oh * sh - top + i * dh
                if h < 0 or h >= h_:
                    continue
                for j in range(kw):
                    q = ow * sw - left + j * dw
                    if 0 <= q < w_:
                        s += w[((f * cg + cc) * kh + i) * kw + j] * \
                            x[((n * c_ + c0 + cc) * h_ + h) * w_ + q]
        out[e] = s


@cuda.jit
def _input_grad(dy, w, dx, geo, bias, use_bias):
    """dx[n, c, h, q] = sum over the group's f and the taps that read it of w * dy (+ bias[c])."""
    c_, h_, w_, f_, oh_, ow_, kh, kw, sh, sw, dh, dw, top, left, groups = geo
    cg, fg = c_ // groups, f_ // groups
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dx.size, step):
        q = e % w_
        h = (e // w_) % h_
        c = (e // (w_ * h_)) % c_
        n = e // (w_ * h_ * c_)
        s = bias[c] if use_bias else 0.0
        g, cc = c // cg, c % cg
        for ff in range(fg):
            f = g * fg + ff
            for i in range(kh):
                oh = _covering(h, i * dh, sh, top, oh_)
                if oh < 0:
                    continue
                for j in range(kw):
                    ow = _covering(q, j * dw, sw, left, ow_)
                    if ow >= 0:
                        s += w[((f * cg + cc) * kh + i) * kw + j] * \
                            dy[((n * f_ + f) * oh_ + oh) * ow_ + ow]
        dx[e] = s


@cuda.jit
def _weight_grad(x, dy, dwt, geo, beta, n_img):
    """dwt[f, cc, i, j] (times beta) += sum over n, oh, ow of dy[n, f, oh, ow] x_padded[...]."""
    c_, h_, w_, f_, oh_, ow_, kh, kw, sh, sw, dh, dw, top, left, groups = geo
    cg, fg = c_ // groups, f_ // groups
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dwt.size, step):
        j = e % kw
        i = (e // kw) % kh
        cc = (e // (kw * kh)) % cg
        f = e // (kw * kh * cg)
        c = (f // fg) * cg + cc
        s = 0.0
        for n in range(n_img):
            for oh in range(oh_):
                h = oh * sh - top + i * dh
                if h < 0 or h >= h_:
                    continue
                for ow in range(ow_):
                    q = ow * sw - left + j * dw
                    if 0 <= q < w_:
                        s += dy[((n * f_ + f) * oh_ + oh) * ow_ + ow] * \
                            x[((n * c_ + c) * h_ + h) * w_ + q]
        dwt[e] = s + beta * dwt[e] if beta != 0 else s


def conv2d_ex_forward(x, w, b, out, stride, padding, dilation, groups, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.conv2d_ex_forward`; direct, one launch
    (``cols`` is not used)."""
    geo = _geometry(x.shape, out.shape, w.shape[2:], stride, padding, dilation, groups)
    of = flat(out)
    launch_1d(_forward, of.size, flat(x), flat(w), b, of, geo, True)


def conv2d_ex_backward(x, w, dy, dx, dw, db, stride, padding, dilation, groups, cols, dcols,
                       accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.conv2d_ex_backward`; direct kernels
    (``cols``, ``dcols`` not used), 2-3 launches."""
    geo = _geometry(x.shape, dy.shape, w.shape[2:], stride, padding, dilation, groups)
    channel_sum(dy, db, accumulate)
    dwf = flat(dw)
    launch_1d(_weight_grad, dwf.size, flat(x), flat(dy), dwf, geo, 1.0 if accumulate else 0.0,
              int(x.shape[0]))
    if dx is not None:
        dxf = flat(dx)
        launch_1d(_input_grad, dxf.size, flat(dy), flat(w), dxf, geo, db, False)


def conv_transpose2d_forward(x, w, b, out, stride, padding, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.conv_transpose2d_forward`: the input
    gradient of the convolution out -> x (weight (C, O, kh, kw) read as (F = C, O, kh, kw)),
    plus the bias; one launch (``cols`` not used)."""
    geo = _geometry(out.shape, x.shape, w.shape[2:], stride, padding, (1, 1), 1)
    of = flat(out)
    launch_1d(_input_grad, of.size, flat(x), flat(w), of, geo, b, True)


def conv_transpose2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.conv_transpose2d_backward`: dx is the
    convolution's forward of dy, dw its weight gradient with x as the output gradient."""
    geo = _geometry(dy.shape, x.shape, w.shape[2:], stride, padding, (1, 1), 1)
    channel_sum(dy, db, accumulate)
    dwf = flat(dw)
    launch_1d(_weight_grad, dwf.size, flat(dy), flat(x), dwf, geo, 1.0 if accumulate else 0.0,
              int(x.shape[0]))
    if dx is not None:
        dxf = flat(dx)
        launch_1d(_forward, dxf.size, flat(dy), flat(w), db, dxf, geo, False)


# --------------------------------------------------------------------------- im2col / col2im


@cuda.jit
def _im2col(x, cols, geo):
    """cols[n, (c*kh + i)*kw + j, oh*OW + ow] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]."""
    c_, h_, w_, _, oh_, ow_, kh, kw, sh, sw, dh, dw, top, left, _ = geo
    rows, plane = c_ * kh * kw, oh_ * ow_
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, cols.size, step):
        n = e // (rows * plane)
        rq = e - n * rows * plane
        r, p = rq // plane, rq % plane
        c, ij = r // (kh * kw), r % (kh * kw)
        h = (p // ow_) * sh - top + (ij // kw) * dh
        q = (p % ow_) * sw - left + (ij % kw) * dw
        v = 0.0
        if 0 <= h < h_ and 0 <= q < w_:
            v = x[((n * c_ + c) * h_ + h) * w_ + q]
        cols[e] = v


@cuda.jit
def _col2im(cols, dx, geo):
    """dx[n, c, h, q] = sum of the cols entries im2col took from x[n, c, h, q]."""
    c_, h_, w_, _, oh_, ow_, kh, kw, sh, sw, dh, dw, top, left, _ = geo
    rows, plane = c_ * kh * kw, oh_ * ow_
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dx.size, step):
        q = e % w_
        h = (e // w_) % h_
        c = (e // (w_ * h_)) % c_
        n = e // (w_ * h_ * c_)
        s = 0.0
        for i in range(kh):
            oh = _covering(h, i * dh, sh, top, oh_)
            if oh < 0:
                continue
            for j in range(kw):
                ow = _covering(q, j * dw, sw, left, ow_)
                if ow >= 0:
                    s += cols[(n * rows + (c * kh + i) * kw + j) * plane + oh * ow_ + ow]
        dx[e] = s


def _cols_geometry(shape, kh, kw, stride, padding, dilation):
    oh, ow = output_hw(shape[2], shape[3], _dilated((kh, kw), dilation), stride, padding)
    return _geometry(shape, (shape[0], 0, oh, ow), (kh, kw), stride, padding, dilation, 1)


def im2col_dilated(x, kh, kw, stride, padding, dilation, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.im2col_dilated`; one launch."""
    cf = flat(cols)
    launch_1d(_im2col, cf.size, flat(x), cf, _cols_geometry(x.shape, kh, kw, stride, padding,
                                                             dilation))


def col2im_dilated(cols, kh, kw, stride, padding, dilation, dx):
    """See :func:`fastnn.kernels.reference.conv_variants.col2im_dilated`; one launch."""
    dxf = flat(dx)
    launch_1d(_col2im, dxf.size, flat(cols), dxf, _cols_geometry(dx.shape, kh, kw, stride,
                                                                 padding, dilation))


# --------------------------------------------------------------------------- unshared


@cuda.jit
def _unshared_forward(x, w, b, out, geo, tile, bias_per_position):
    """out[n, f, p, q] = sum_{c,i,j} w[s, f, c, i, j] x[n, c, p*sh + i, q*sw + j] + bias, with
    s = (p mod t_rows) * t_cols + q mod t_cols (locally connected: t = (OH, OW))."""
    c_, h_, w_, f_, oh_, ow_, kh, kw, sh, sw, _, _, _, _, _ = geo
    tr, tc = tile
    k_dim = c_ * kh * kw
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, step):
        q = e % ow_
        p = (e // ow_) % oh_
        f = (e // (ow_ * oh_)) % f_
        n = e // (ow_ * oh_ * f_)
        base = (((p % tr) * tc + q % tc) * f_ + f) * k_dim
        s = b[(f * oh_ + p) * ow_ + q] if bias_per_position else b[f]
        for c in range(c_):
            for i in range(kh):
                row = ((n * c_ + c) * h_ + p * sh + i) * w_ + q * sw
                for j in range(kw):
                    s += w[base + (c * kh + i) * kw + j] * x[row + j]
        out[e] = s


@cuda.jit
def _unshared_weight_grad(x, dy, dwt, geo, tile, beta, n_img):
    """dwt[s, f, c, i, j] (times beta) += the sum over the positions of set s and the images."""
    c_, h_, w_, f_, oh_, ow_, kh, kw, sh, sw, _, _, _, _, _ = geo
    tr, tc = tile
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dwt.size, step):
        j = e % kw
        i = (e // kw) % kh
        c = (e // (kw * kh)) % c_
        f = (e // (kw * kh * c_)) % f_
        st = e // (kw * kh * c_ * f_)
        a, bq = st // tc, st % tc
        s = 0.0
        for n in range(n_img):
            for p in range(a, oh_, tr):
                for q in range(bq, ow_, tc):
                    s += dy[((n * f_ + f) * oh_ + p) * ow_ + q] * \
                        x[((n * c_ + c) * h_ + p * sh + i) * w_ + q * sw + j]
        dwt[e] = s + beta * dwt[e] if beta != 0 else s


@cuda.jit
def _unshared_input_grad(dy, w, dx, geo, tile):
    """dx[n, c, h, v] = sum over the outputs whose window holds it of w[s, f, c, i, j] dy."""
    c_, h_, w_, f_, oh_, ow_, kh, kw, sh, sw, _, _, _, _, _ = geo
    tr, tc = tile
    k_dim = c_ * kh * kw
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dx.size, step):
        v = e % w_
        h = (e // w_) % h_
        c = (e // (w_ * h_)) % c_
        n = e // (w_ * h_ * c_)
        s = 0.0
        for i in range(kh):
            p = _covering(h, i, sh, 0, oh_)
            if p < 0:
                continue
            for j in range(kw):
                q = _covering(v, j, sw, 0, ow_)
                if q < 0:
                    continue
                base = ((p % tr) * tc + q % tc) * f_
                for f in range(f_):
                    s += w[((base + f) * c_ + c) * kh * kw + i * kw + j] * \
                        dy[((n * f_ + f) * oh_ + p) * ow_ + q]
        dx[e] = s


def _unshared_geometry(x, w, out_shape, stride):
    return _geometry(x.shape, out_shape, w.shape[4:], stride, (0, 0, 0, 0), (1, 1), 1), \
        (int(w.shape[0]), int(w.shape[1]))


def _unshared_backward(x, w, dy, dx, dw, stride, accumulate):
    geo, tile = _unshared_geometry(x, w, dy.shape, stride)
    dwf = flat(dw)
    launch_1d(_unshared_weight_grad, dwf.size, flat(x), flat(dy), dwf, geo, tile,
              1.0 if accumulate else 0.0, int(x.shape[0]))
    if dx is not None:
        dxf = flat(dx)
        launch_1d(_unshared_input_grad, dxf.size, flat(dy), flat(w), dxf, geo, tile)


def locally_connected2d_forward(x, w, b, out, stride, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.locally_connected2d_forward`; direct,
    one launch (``cols`` not used)."""
    geo, tile = _unshared_geometry(x, w, out.shape, stride)
    of = flat(out)
    launch_1d(_unshared_forward, of.size, flat(x), flat(w), flat(b), of, geo, tile, True)


def locally_connected2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.locally_connected2d_backward`: db is the
    sum of dy over the images (a channel sum over the (F * OH * OW) positions)."""
    n = dy.shape[0]
    channel_sum(dy.reshape(n, dy.shape[1] * dy.shape[2] * dy.shape[3], 1, 1),
                db.reshape(db.size), accumulate)
    _unshared_backward(x, w, dy, dx, dw, stride, accumulate)


def tiled_conv2d_forward(x, w, b, out, stride, cols):
    """See :func:`fastnn.kernels.reference.conv_variants.tiled_conv2d_forward`; one launch."""
    geo, tile = _unshared_geometry(x, w, out.shape, stride)
    of = flat(out)
    launch_1d(_unshared_forward, of.size, flat(x), flat(w), b, of, geo, tile, False)


def tiled_conv2d_backward(x, w, dy, dx, dw, db, stride, cols, dcols, accumulate=False):
    """See :func:`fastnn.kernels.reference.conv_variants.tiled_conv2d_backward`."""
    channel_sum(dy, db, accumulate)
    _unshared_backward(x, w, dy, dx, dw, stride, accumulate)


# --------------------------------------------------------------------------- LP pooling


@cuda.jit
def _lp_forward(x, out, p, geo):
    """out = (window sum of x ** p) ** (1 / p), one thread per output."""
    c_, h_, w_, _, oh_, ow_, kh, kw, sh, sw, _, _, _, _, _ = geo
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, out.size, step):
        q = e % ow_
        a = (e // ow_) % oh_
        plane = e // (ow_ * oh_)
        s = 0.0
        for i in range(kh):
            row = (plane * h_ + a * sh + i) * w_ + q * sw
            for j in range(kw):
                s += x[row + j] ** p
        out[e] = s ** (1 / p)


@cuda.jit
def _lp_backward(x, y, dy, dx, p, geo):
    """dx = x ** (p - 1) * the sum over the windows holding it of dy * y ** (1 - p) (windows
    whose sum is 0 pass nothing), one thread per input."""
    c_, h_, w_, _, oh_, ow_, kh, kw, sh, sw, _, _, _, _, _ = geo
    start, step = cuda.grid(1), cuda.gridsize(1)
    for e in range(start, dx.size, step):
        v = e % w_
        h = (e // w_) % h_
        plane = e // (w_ * h_)
        s = 0.0
        for i in range(kh):
            a = _covering(h, i, sh, 0, oh_)
            if a < 0:
                continue
            for j in range(kw):
                q = _covering(v, j, sw, 0, ow_)
                if q >= 0:
                    o = (plane * oh_ + a) * ow_ + q
                    if y[o] != 0:
                        s += dy[o] * y[o] ** (1 - p)
        dx[e] = s * x[e] ** (p - 1)


def lppool2d_forward(x, out, norm_type, kernel, stride):
    """See :func:`fastnn.kernels.reference.conv_variants.lppool2d_forward`; one launch."""
    geo = _geometry(x.shape, out.shape, kernel, stride, (0, 0, 0, 0), (1, 1), 1)
    of = flat(out)
    launch_1d(_lp_forward, of.size, flat(x), of, x.dtype.type(norm_type), geo)


def lppool2d_backward(x, y, dy, dx, norm_type, kernel, stride):
    """See :func:`fastnn.kernels.reference.conv_variants.lppool2d_backward`; one launch."""
    geo = _geometry(x.shape, y.shape, kernel, stride, (0, 0, 0, 0), (1, 1), 1)
    dxf = flat(dx)
    launch_1d(_lp_backward, dxf.size, flat(x), flat(y), flat(dy), dxf,
              x.dtype.type(norm_type), geo)
