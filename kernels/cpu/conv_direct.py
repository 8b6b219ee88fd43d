"""Stride-1 convolution computed directly from the padded image, in SIMD registers.

No im2col: each image is copied once into a zero-padded plane per channel, and every output
position ``q = oy * Wp + ox`` of the *full padded width* ``Wp`` reads tap ``(c, i, j)`` at
``xp[c * Hp * Wp + i * Wp + j + q]``: for a fixed tap, consecutive outputs read consecutive
inputs, so one vector load serves ``lanes`` outputs (the ``kw - 1`` columns past the output
width are computed and dropped). A block of 8 filters x 2 vectors of outputs is 16 vector
accumulators, kept in registers while the taps run (:func:`_correlate`; 16 registers with
AVX-512, where a 64-byte vector is one register; with AVX2 they need 32 of its 16): each tap
costs 2 loads, 8 broadcasts and 16 fused multiply-adds, against im2col's copy, BLAS's
packing and a GEMM of only F rows (6 or 16 in LeNet-5). The input gradient scatters blocks
of 8 channels x 2 vectors of outputs, summed over the filters in registers, into a padded
plane (:func:`_input_grad_image`: im2col's adjoint fused with its GEMM); the weight gradient
runs blocks of 4 filters x 4 taps over vectors of outputs (:func:`_weight_grad_image`), each
block's sums reduced to scalars in registers, summed per thread and added up at the end in a
fixed order. The positions past each row's output width are masked out of both gradients
(``vkeep``), so an Inf or NaN lands where the reference puts it.

These kernels handle stride 1 with padding of at most ``k - 1`` on each side
(:func:`supported`: LeNet, "same" and "full" padding). For such a convolution they are one
of two candidates, the other the im2col + BLAS path of :mod:`.conv`: :mod:`.conv_choice`
picks one per shape by measurement on this machine (or ``FASTNN_CONV``). They win few
channels (LeNet-5's) and CPUs with AVX-512; im2col + BLAS wins tens of channels and most
shapes on AVX2-only CPUs. Every other geometry runs im2col + BLAS. Work space comes from
:func:`work_buffer`, grown on first use and then reused: nothing is allocated per step.
Float32 and float64 alike (16 or 8 lanes, see :mod:`.simd`).
"""
import numpy as np
from numba import njit, prange

from .activations import _act, _act_grad_from_output
from .common import row_sum, scale_or_zero
from .parallel import chunk as _chunk
from .simd import vadd, vfma, vfmav, vkeep, vlanes, vload, vpairsum, vstore, vzero

__all__ = ["supported", "forward", "backward", "work_buffer"]

_FB = 8       # filters per register block of the correlation (x 2 vectors of outputs)
_WFB = 4      # filters x
_WKB = 4      #   taps per register block of the weight gradient


def supported(stride, padding, kh, kw):
    """Whether the direct kernels handle this convolution: stride 1 and no side padded by more
    than ``k - 1`` (the input gradient is then a correlation with padding ``k - 1 - pad``)."""
    top, bottom, left, right = padding
    return tuple(stride) == (1, 1) and max(top, bottom) < kh and max(left, right) < kw


_work = {}


def work_buffer(size, dtype):
    """A 1-D scratch array of at least ``size`` elements of ``dtype``, reused from call to call
    (one per dtype, grown when a bigger one is needed). Kernels use it and leave it."""
    buf = _work.get(np.dtype(dtype))
    if buf is None or buf.size < size:
        buf = _work[np.dtype(dtype)] = np.empty(max(size, 1), dtype)
    return buf[:size]


def _round_up(n, m):
    return -(-n // m) * m


class _Geometry:
    """Sizes of the padded planes and of the full-width output grid of one correlation:
    input (C, H, W) padded by (top, bottom, left, right), kernel (kh, kw), stride 1."""

    def __init__(self, c, h, w, kh, kw, padding, lanes):
        top, bottom, left, right = padding
        self.hp, self.wp = h + top + bottom, w + left + right
        lq = (self.hp - kh + 1) * self.wp                 # output rows x padded width
        self.lqp = _round_up(lq, 2 * lanes)              # whole 2-vector blocks of outputs
        # the last block reads up to tap (C-1, kh-1, kw-1) at q = lqp - 1
        self.plane_size = c * self.hp * self.wp + kw - 1 + self.lqp - lq


# --------------------------------------------------------------------------- building blocks


@njit(cache=True)
def _padded_copy(x, xp, top, left, hp, wp, into_padded):
    """Between an image x (C, H, W) and its padded planes: xp[c * hp * wp + (top + y) * wp +
    left + x] = x[c, y, x] (``into_padded``; the border is left as it is: zero, the caller
    clears xp once), or the reverse (the interior cropped out of xp)."""
    c_in, h, w = x.shape
    for c in range(c_in):
        for y in range(h):
            padded = xp[c * hp * wp + (top + y) * wp + left:]
            row = x[c, y]
            if into_padded:
                for t in range(w):
                    padded[t] = row[t]
            else:
                for t in range(w):
                    row[t] = padded[t]


@njit(cache=True)
def _correlate(xp, hp, wp, c_in, kh, kw, wt, tile):
    """tile[f, q] = sum over taps (c, i, j) of wt[(c * kh + i) * kw + j, f] *
    xp[c * hp * wp + i * wp + j + q], for every row f of wt.T (a multiple of 8) and q below
    tile's width (a multiple of 2 vectors)."""
    lanes = vlanes(xp)
    for fb in range(0, wt.shape[1], _FB):
        for q0 in range(0, tile.shape[1], 2 * lanes):
            a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = vzero(xp)
            a40 = a41 = a50 = a51 = a60 = a61 = a70 = a71 = vzero(xp)
            k = 0
            for c in range(c_in):
                for i in range(kh):
                    base = c * hp * wp + i * wp + q0
                    for j in range(kw):
                        v0 = vload(xp, base + j)
                        v1 = vload(xp, base + j + lanes)
                        wk = wt[k]
                        s = wk[fb]
                        a00, a01 = vfma(a00, s, v0), vfma(a01, s, v1)
                        s = wk[fb + 1]
                        a10, a11 = vfma(a10, s, v0), vfma(a11, s, v1)
                        s = wk[fb + 2]
                        a20, a21 = vfma(a20, s, v0), vfma(a21, s, v1)
                        s = wk[fb + 3]
                        a30, a31 = vfma(a30, s, v0), vfma(a31, s, v1)
                        s = wk[fb + 4]
                        a40, a41 = vfma(a40, s, v0), vfma(a41, s, v1)
                        s = wk[fb + 5]
                        a50, a51 = vfma(a50, s, v0), vfma(a51, s, v1)
                        s = wk[fb + 6]
                        a60, a61 = vfma(a60, s, v0), vfma(a61, s, v1)
                        s = wk[fb + 7]
                        a70, a71 = vfma(a70, s, v0), vfma(a71, s, v1)
                        k += 1
            _store2(tile[fb], q0, lanes, a00, a01)
            _store2(tile[fb + 1], q0, lanes, a10, a11)
            _store2(tile[fb + 2], q0, lanes, a20, a21)
            _store2(tile[fb + 3], q0, lanes, a30, a31)
            _store2(tile[fb + 4], q0, lanes, a40, a41)
            _store2(tile[fb + 5], q0, lanes, a50, a51)
            _store2(tile[fb + 6], q0, lanes, a60, a61)
            _store2(tile[fb + 7], q0, lanes, a70, a71)


@njit(cache=True, inline="always")
def _store2(row, q0, lanes, u, v):
    vstore(row, q0, u)
    vstore(row, q0 + lanes, v)


@njit(cache=True)
def _crop(tile, wp, out, b, code):
    """out[f, y, x] = act(tile[f, y * wp + x] + b[f]) for the (F, OH, OW) of out."""
    f_out, oh, ow = out.shape
    for f in range(f_out):
        bias = b[f]
        for y in range(oh):
            src = tile[f, y * wp:]
            dst = out[f, y]
            for t in range(ow):
                dst[t] = _act(src[t] + bias, code)


@njit(cache=True)
def _transpose_weights(w, for_input_grad, wt):
    """wt[(c * kh + i) * kw + j, f] = w[f, c, i, j] for :func:`_correlate`, or with
    ``for_input_grad`` wt[(i * kw + j) * F + f, c] = w[f, c, i, j] for
    :func:`_input_grad_image`; columns past F (or C) are zero."""
    f_out, c_in, kh, kw = w.shape
    wt[...] = 0
    for f in range(f_out):
        for c in range(c_in):
            for i in range(kh):
                for j in range(kw):
                    if for_input_grad:
                        wt[(i * kw + j) * f_out + f, c] = w[f, c, i, j]
                    else:
                        wt[(c * kh + i) * kw + j, f] = w[f, c, i, j]


@njit(cache=True, inline="always")
def _tap_offset(k, k_dim, kh, kw, hp, wp):
    """Offset in the padded planes of tap k = (c * kh + i) * kw + j; 0 for the padding taps
    k >= k_dim of the last block (their sums are dropped)."""
    if k >= k_dim:
        return 0
    c, r = divmod(k, kh * kw)
    i, j = divmod(r, kw)
    return c * hp * wp + i * wp + j


@njit(cache=True)
def _output_lanes(valid, lq, wp, ow):
    """valid[q] = 1 where the full-width position q is an output (q < lq, q % wp < ow), else 0."""
    for q in range(valid.shape[0]):
        valid[q] = 1 if q < lq and q % wp < ow else 0


@njit(cache=True)
def _weight_grad_image(dzf, valid, lq, xp, hp, wp, kh, kw, k_dim, part):
    """part[block * 16 + 4 * u + v] += sum over the outputs q of dzf[f, q] * xp[offset(k) + q]
    for f = fb + u, k = kb + v, block = (kb // 4) * (F_pad // 4) + fb // 4. The full-width
    positions that are not outputs (``valid`` 0: past each row's output width, past lq) read
    image data that the outputs never pair with tap k: they are dropped by a select, not
    multiplied by dzf's 0 there (an Inf or NaN would leak as NaN). Each block's 16 vector
    sums are reduced to scalars in registers (:func:`_add_sums16`), so ``part`` stays small
    (F_pad * K_pad): a bigger per-thread working set made two threads slower than one."""
    lanes = vlanes(xp)
    f_pad = dzf.shape[0]
    k_pad = part.shape[0] // f_pad
    for kb in range(0, k_pad, _WKB):
        o0 = _tap_offset(kb, k_dim, kh, kw, hp, wp)
        o1 = _tap_offset(kb + 1, k_dim, kh, kw, hp, wp)
        o2 = _tap_offset(kb + 2, k_dim, kh, kw, hp, wp)
        o3 = _tap_offset(kb + 3, k_dim, kh, kw, hp, wp)
        for fb in range(0, f_pad, _WFB):
            d0, d1, d2, d3 = dzf[fb], dzf[fb + 1], dzf[fb + 2], dzf[fb + 3]
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = vzero(xp)
            a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = vzero(xp)
            for q in range(0, lq, lanes):
                m = vload(valid, q)
                x0, x1 = vkeep(vload(xp, o0 + q), m), vkeep(vload(xp, o1 + q), m)
                x2, x3 = vkeep(vload(xp, o2 + q), m), vkeep(vload(xp, o3 + q), m)
                g = vload(d0, q)
                a00, a01, a02, a03 = (vfmav(a00, g, x0), vfmav(a01, g, x1), vfmav(a02, g, x2),
                                      vfmav(a03, g, x3))
                g = vload(d1, q)
                a10, a11, a12, a13 = (vfmav(a10, g, x0), vfmav(a11, g, x1), vfmav(a12, g, x2),
                                      vfmav(a13, g, x3))
                g = vload(d2, q)
                a20, a21, a22, a23 = (vfmav(a20, g, x0), vfmav(a21, g, x1), vfmav(a22, g, x2),
                                      vfmav(a23, g, x3))
                g = vload(d3, q)
                a30, a31, a32, a33 = (vfmav(a30, g, x0), vfmav(a31, g, x1), vfmav(a32, g, x2),
                                      vfmav(a33, g, x3))
            block = (kb // _WKB) * (f_pad // _WFB) + fb // _WFB
            _add_sums16(part, block * 16, lanes, a00, a01, a02, a03, a10, a11, a12, a13,
                        a20, a21, a22, a23, a30, a31, a32, a33)


@njit(cache=True, inline="always")
def _add_sums16(part, at, lanes, a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23,
                a30, a31, a32, a33):
    """part[at + i] += the sum of the lanes of the i-th vector argument, i = 0 .. 15, by
    rounds of :func:`~.simd.vpairsum` (a fixed order)."""
    b0, b1 = vpairsum(a00, a01), vpairsum(a02, a03)
    b2, b3 = vpairsum(a10, a11), vpairsum(a12, a13)
    b4, b5 = vpairsum(a20, a21), vpairsum(a22, a23)
    b6, b7 = vpairsum(a30, a31), vpairsum(a32, a33)
    c0, c1, c2, c3 = vpairsum(b0, b1), vpairsum(b2, b3), vpairsum(b4, b5), vpairsum(b6, b7)
    d0, d1 = vpairsum(c0, c1), vpairsum(c2, c3)      # 8 lanes: the 16 sums, 8 in each
    if lanes == 16:
        vstore(part, at, vadd(vload(part, at), vpairsum(d0, d1)))
    else:
        vstore(part, at, vadd(vload(part, at), d0))
        vstore(part, at + 8, vadd(vload(part, at + 8), d1))


@njit(cache=True)
def _input_grad_image(dzf, valid, wsc, hp, wp, kh, kw, dxp):
    """dxp[c * hp * wp + i * wp + j + q] += sum over f of w[f, c, i, j] * dzf[f, q] for the
    outputs q (``valid`` non-zero; the other lanes add 0, even where w holds Inf or NaN): the
    transpose of the forward correlation (im2col's adjoint fused with the GEMM). ``wsc`` holds
    w as rows ((i * kw + j) * F + f, c) for c < C_pad (a multiple of 8, zero past C), dxp has
    C_pad planes. The 8 channels of a block are a plane apart, so their read-add-writes never
    overlap one another."""
    # The 8 x 2 register block is written out as in _correlate on purpose: passing the 16
    # accumulators through a shared inline helper as a tuple made the forward 10% slower.
    lanes = vlanes(dzf)
    f_out = wsc.shape[0] // (kh * kw)
    plane = hp * wp
    for q0 in range(0, dzf.shape[1], 2 * lanes):
        m0, m1 = vload(valid, q0), vload(valid, q0 + lanes)
        for i in range(kh):
            for j in range(kw):
                rows = wsc[(i * kw + j) * f_out:(i * kw + j + 1) * f_out]
                for cb in range(0, wsc.shape[1], _FB):
                    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = vzero(dzf)
                    a40 = a41 = a50 = a51 = a60 = a61 = a70 = a71 = vzero(dzf)
                    for f in range(f_out):
                        v0 = vload(dzf[f], q0)
                        v1 = vload(dzf[f], q0 + lanes)
                        wk = rows[f]
                        s = wk[cb]
                        a00, a01 = vfma(a00, s, v0), vfma(a01, s, v1)
                        s = wk[cb + 1]
                        a10, a11 = vfma(a10, s, v0), vfma(a11, s, v1)
                        s = wk[cb + 2]
                        a20, a21 = vfma(a20, s, v0), vfma(a21, s, v1)
                        s = wk[cb + 3]
                        a30, a31 = vfma(a30, s, v0), vfma(a31, s, v1)
                        s = wk[cb + 4]
                        a40, a41 = vfma(a40, s, v0), vfma(a41, s, v1)
                        s = wk[cb + 5]
                        a50, a51 = vfma(a50, s, v0), vfma(a51, s, v1)
                        s = wk[cb + 6]
                        a60, a61 = vfma(a60, s, v0), vfma(a61, s, v1)
                        s = wk[cb + 7]
                        a70, a71 = vfma(a70, s, v0), vfma(a71, s, v1)
                    at = cb * plane + i * wp + j + q0
                    _add2(dxp, at, lanes, a00, a01, m0, m1)
                    _add2(dxp, at + plane, lanes, a10, a11, m0, m1)
                    _add2(dxp, at + 2 * plane, lanes, a20, a21, m0, m1)
                    _add2(dxp, at + 3 * plane, lanes, a30, a31, m0, m1)
                    _add2(dxp, at + 4 * plane, lanes, a40, a41, m0, m1)
                    _add2(dxp, at + 5 * plane, lanes, a50, a51, m0, m1)
                    _add2(dxp, at + 6 * plane, lanes, a60, a61, m0, m1)
                    _add2(dxp, at + 7 * plane, lanes, a70, a71, m0, m1)


@njit(cache=True, inline="always")
def _add2(a, i, lanes, u, v, mu, mv):
    """a[i:i + 2 * lanes] += (u, v) in the lanes where the masks mu, mv are non-zero."""
    vstore(a, i, vadd(vload(a, i), vkeep(u, mu)))
    vstore(a, i + lanes, vadd(vload(a, i + lanes), vkeep(v, mv)))


# --------------------------------------------------------------------------- forward


@njit(cache=True, parallel=True)
def _forward(x, w, b, out, top, left, hp, wp, plane_size, lqp, f_pad, code, work, parts):
    """out[n] = act(correlate(pad(x[n]), w) + b), one chunk of images per thread."""
    n_img, c_in, h, w_in = x.shape
    f_out, _, kh, kw = w.shape
    k_dim = c_in * kh * kw
    wt = work[:k_dim * f_pad].reshape((k_dim, f_pad))
    _transpose_weights(w, False, wt)
    per = plane_size + f_pad * lqp
    for t in prange(parts):
        mine = work[k_dim * f_pad + t * per:k_dim * f_pad + (t + 1) * per]
        xp = mine[:plane_size]
        tile = mine[plane_size:].reshape((f_pad, lqp))
        xp[:] = 0
        n0, n1 = _chunk(n_img, t, parts)
        for n in range(n0, n1):
            _padded_copy(x[n], xp, top, left, hp, wp, True)
            _correlate(xp, hp, wp, c_in, kh, kw, wt, tile)
            _crop(tile, wp, out[n], b, code)


def forward(x, w, b, out, padding, code, parts):
    """out = act(conv2d(x, w, stride 1, padding) + b) for the activation ``code``; x (N, C, H,
    W), w (F, C, kh, kw), b (F,), out (N, F, OH, OW) written. Needs :func:`supported`."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    lanes = 64 // x.itemsize
    g = _Geometry(c, h, wd, kh, kw, padding, lanes)
    f_pad = _round_up(f, _FB)
    work = work_buffer(c * kh * kw * f_pad + parts * (g.plane_size + f_pad * g.lqp), x.dtype)
    _forward(x, w, b, out, padding[0], padding[2], g.hp, g.wp, g.plane_size, g.lqp, f_pad, code,
             work, parts)


# --------------------------------------------------------------------------- backward


@njit(cache=True, parallel=True)
def _backward(x, w, y, dy, dz, dx, dw, db, beta, code, top, left, hp, wp, plane_size, lqp,
              f_pad, k_pad, c_pad, work, parts):
    """Per image, on one thread: dz[n] = dy[n] * act'(y[n]), copied into the full-width grid
    of the forward (dzf); the weight gradient from dzf and the padded image, and db, summed per
    thread; with dx, the padded input gradient scattered from dzf and cropped into dx[n]. The
    per-thread sums are added in a fixed order at the end."""
    n_img, c_in, h, w_in = x.shape
    f_out, _, kh, kw = w.shape
    oh, ow = dy.shape[2], dy.shape[3]
    k_dim = c_in * kh * kw
    dx_size = plane_size + (c_pad - c_in) * hp * wp
    per = plane_size + f_pad * lqp + f_pad * k_pad + f_pad
    shared = lqp
    if dx is not None:
        per += dx_size
        shared += kh * kw * f_out * c_pad
    valid = work[:lqp]
    _output_lanes(valid, oh * wp, wp, ow)
    wsc = work[lqp:shared].reshape(((shared - lqp) // c_pad, c_pad))
    if dx is not None:
        _transpose_weights(w, True, wsc)
    for t in prange(parts):
        mine = work[shared + t * per:shared + (t + 1) * per]
        xp = mine[:plane_size]
        at = plane_size
        dzf = mine[at:at + f_pad * lqp].reshape((f_pad, lqp))
        at += f_pad * lqp
        part = mine[at:at + f_pad * k_pad]
        at += f_pad * k_pad
        dbt = mine[at:at + f_pad]
        at += f_pad
        mine[:at] = 0
        n0, n1 = _chunk(n_img, t, parts)
        for n in range(n0, n1):
            g = dz[n]
            for f in range(f_out):
                for oy in range(oh):
                    row, grow = dzf[f, oy * wp:], g[f, oy]
                    yrow, dyrow = y[n, f, oy], dy[n, f, oy]
                    for ox in range(ow):
                        v = dyrow[ox] * _act_grad_from_output(yrow[ox], code)
                        if code != 0:             # else dz is dy: left as it is
                            grow[ox] = v
                        row[ox] = v
                dbt[f] += row_sum(dzf[f])
            _padded_copy(x[n], xp, top, left, hp, wp, True)
            _weight_grad_image(dzf, valid, oh * wp, xp, hp, wp, kh, kw, k_dim, part)
            if dx is not None:
                dxp = mine[at:at + dx_size]
                dxp[:] = 0
                _input_grad_image(dzf, valid, wsc, hp, wp, kh, kw, dxp)
                _padded_copy(dx[n], dxp, top, left, hp, wp, False)
    dw2 = dw.reshape((f_out, k_dim))
    scale_or_zero(dw2, beta)
    scale_or_zero(db, beta)
    for t in range(parts):
        base = shared + t * per + plane_size + f_pad * lqp
        part = work[base:base + f_pad * k_pad]
        dbt = work[base + f_pad * k_pad:base + f_pad * k_pad + f_out]
        for f in range(f_out):
            for k in range(k_dim):
                block = (k // _WKB) * (f_pad // _WFB) + f // _WFB
                dw2[f, k] += part[block * 16 + (f % _WFB) * _WKB + k % _WKB]
            db[f] += dbt[f]


def backward(x, w, y, dy, dz, dx, dw, db, padding, code, accumulate, parts):
    """Gradients of :func:`forward` from its output y: dz = dy * act'(y) (written, (N, F, OH,
    OW); may be dy itself when ``code`` is 0), dw (F, C, kh, kw) and db (F,) written or added
    (``accumulate``), dx (N, C, H, W) written unless None."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    lanes = 64 // x.itemsize
    g = _Geometry(c, h, wd, kh, kw, padding, lanes)
    f_pad = _round_up(f, _FB)
    k_pad = _round_up(c * kh * kw, _WKB)
    c_pad = _round_up(c, _FB)
    per = g.plane_size + f_pad * g.lqp + f_pad * k_pad + f_pad
    shared = g.lqp                                  # the output-lane mask, then the weights
    if dx is not None:
        per += g.plane_size + (c_pad - c) * g.hp * g.wp
        shared += kh * kw * f * c_pad
    work = work_buffer(shared + parts * per, x.dtype)
    _backward(x, w, y, dy, dz, dx, dw, db, 1.0 if accumulate else 0.0, code, padding[0],
              padding[2], g.hp, g.wp, g.plane_size, g.lqp, f_pad, k_pad, c_pad, work, parts)
