"""Reductions: per-channel sums (bias gradients of dense and convolution layers, PReLU's slope,
the max-norm constraint), with the element-wise part of their op fused into the same pass; and
the sum of squares of a whole array (gradient clipping).

A tensor of ``outer * f * p`` elements is seen as ``(outer, f, p)``: channel ``j`` owns the
elements ``(o * f + j) * p + q``. Dense rows ``(N, F)`` are ``(N, F, 1)``; images
``(N, C, H, W)`` are ``(N, C, H * W)``; a quantity shared by all features is ``(N, 1, rest)``.

A block is an ``(ry, rx)`` table of threads: column ``tx`` is channel ``blockIdx.x * rx + tx``,
and its ``ry`` threads stride over that channel's ``outer * p`` terms, then add up in a fixed
tree order in shared memory (float64). For dense rows (p == 1) neighbouring threads read
neighbouring channels (coalesced: ``rx = COLUMNS``); for images (p > 1) a block is one channel
(``rx = 1``) and its threads read along the plane. Deterministic: no atomics.
"""
import math

import numpy as np
from numba import cuda, float64

from .common import (ACT_CODES, COLUMNS, THREADS, ScalarResult, act_backward, block_sum, flat,
                     launch)


@cuda.jit(device=True)
def channel_element(e, j, f, p):
    """Flat index of the ``e``-th element (0 <= e < outer * p) of channel ``j`` of (outer, f, p)."""
    o = e // p
    return (o * f + j) * p + (e - o * p)


@cuda.jit(device=True)
def _store(out, j, total, beta):
    """out[j] = total, or total + beta * out[j] (beta is 0 or 1: accumulate)."""
    out[j] = total + beta * out[j] if beta != 0 else total


@cuda.jit
def _channel_sum(a, out, outer, f, p, beta):
    """out[j] = beta * out[j] + sum of channel j of a (outer, f, p)."""
    sh = cuda.shared.array(THREADS, float64)
    tx, ty, rx, ry = cuda.threadIdx.x, cuda.threadIdx.y, cuda.blockDim.x, cuda.blockDim.y
    j = cuda.blockIdx.x * rx + tx
    s = 0.0
    if j < f:
        for e in range(ty, outer * p, ry):
            s += a[channel_element(e, j, f, p)]
    sh[ty * rx + tx] = s
    total = block_sum(sh, tx, ty, rx, ry)
    if ty == 0 and j < f:
        _store(out, j, total, beta)


@cuda.jit
def _act_backward_channel_sum(y, dy, dz, out, outer, f, p, code, beta):
    """dz = dy * act'(.) (from the output y) and out[j] = beta * out[j] + sum of channel j of dz."""
    sh = cuda.shared.array(THREADS, float64)
    tx, ty, rx, ry = cuda.threadIdx.x, cuda.threadIdx.y, cuda.blockDim.x, cuda.blockDim.y
    j = cuda.blockIdx.x * rx + tx
    s = 0.0
    if j < f:
        for e in range(ty, outer * p, ry):
            i = channel_element(e, j, f, p)
            dz[i] = act_backward(y[i], dy[i], code)
            s += dz[i]
    sh[ty * rx + tx] = s
    total = block_sum(sh, tx, ty, rx, ry)
    if ty == 0 and j < f:
        _store(out, j, total, beta)


@cuda.jit
def _prelu_backward(x, a, dy, dx, da, outer, f, p, beta):
    """dx = dy where x > 0 else a[j] * dy; da[j] = beta * da[j] + sum of dy * x where x <= 0."""
    sh = cuda.shared.array(THREADS, float64)
    tx, ty, rx, ry = cuda.threadIdx.x, cuda.threadIdx.y, cuda.blockDim.x, cuda.blockDim.y
    j = cuda.blockIdx.x * rx + tx
    s = 0.0
    if j < f:
        slope = a[j]
        for e in range(ty, outer * p, ry):
            i = channel_element(e, j, f, p)
            if x[i] > 0:
                dx[i] = dy[i]
            else:
                dx[i] = slope * dy[i]
                s += dy[i] * x[i]
    sh[ty * rx + tx] = s
    total = block_sum(sh, tx, ty, rx, ry)
    if ty == 0 and j < f:
        _store(da, j, total, beta)


def _channels(shape, per_channel):
    """(outer, f, p) of an (N, F) or (N, C, ...) array: channels along axis 1, or one for all."""
    n, rest = shape[0], 1
    for s in shape[1:]:
        rest *= s
    if not per_channel:
        return n, 1, rest
    f = shape[1]
    return n, f, rest // f if f else 0


def _launch(kernel, f, p, *args):
    """One launch over f channels: (blocks, (rx, ry)) as described in the module docstring."""
    if f == 0:
        return
    rx = COLUMNS if p == 1 else 1
    launch(kernel, -(-f // rx), (rx, THREADS // rx), *args)


def channel_sum(a, out, accumulate=False):
    """out (+)= sum of ``a`` over every axis but 1. a : (N, F) or (N, C, H, W); out : (F,) or (C,).
    One launch."""
    outer, f, p = _channels(a.shape, True)
    _launch(_channel_sum, f, p, flat(a), flat(out), outer, f, p, 1.0 if accumulate else 0.0)


def column_sum(a, out, accumulate=False):
    """out (+)= a.sum(axis=0) for a : (N, F); out : (F,). One launch."""
    channel_sum(a, out, accumulate)


def act_backward_column_sum(y, dy, dz, out, act, accumulate=False):
    """dz = dy * act'(.) and out (+)= dz.sum(axis=0), in one launch. y, dy, dz : (N, F)."""
    outer, f, p = _channels(y.shape, True)
    _launch(_act_backward_channel_sum, f, p, flat(y), flat(dy), flat(dz), flat(out), outer, f, p,
            ACT_CODES[act], 1.0 if accumulate else 0.0)


def prelu_backward(x, a, dy, dx, da, accumulate=False):
    """dx = dy * (1 if x > 0 else a); da (+)= sum of dy * x over the positions where x <= 0.

    x, dy, dx : (N, F) or (N, C, H, W); a, da : (1,) shared or (F,) / (C,) per axis-1 channel.
    One launch.
    """
    outer, f, p = _channels(x.shape, a.size > 1)
    _launch(_prelu_backward, f, p, flat(x), flat(a), flat(dy), flat(dx), flat(da), outer, f, p,
            1.0 if accumulate else 0.0)


# --------------------------------------------------------------------------- norms


@cuda.jit
def _sum_of_squares(x, result):
    """result[0] = sum of x * x (float64), one block."""
    sh = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    s = 0.0
    for i in range(tid, x.size, THREADS):
        v = x[i]
        s += v * v
    sh[tid] = s
    total = block_sum(sh, 0, tid, 1, THREADS)
    if tid == 0:
        result[0] = total


_sum_result = ScalarResult(np.float64)


def sum_of_squares(x):
    """sum(x ** 2) over every element of device array ``x``, as a Python float: one launch,
    one scalar copied back."""
    xf = flat(x)
    launch(_sum_of_squares, 1, THREADS, xf, _sum_result.device)
    return float(_sum_result.fetch())


@cuda.jit
def _renorm(w, outer, f, p, max_norm):
    """Scale channel j of w (outer, f, p) by max_norm / max(norm_j, max_norm)."""
    sh = cuda.shared.array(THREADS, float64)
    tx, ty, rx, ry = cuda.threadIdx.x, cuda.threadIdx.y, cuda.blockDim.x, cuda.blockDim.y
    j = cuda.blockIdx.x * rx + tx
    s = 0.0
    if j < f:
        for e in range(ty, outer * p, ry):
            v = w[channel_element(e, j, f, p)]
            s += v * v
    sh[ty * rx + tx] = s
    norm = math.sqrt(block_sum(sh, tx, ty, rx, ry))
    if j < f and norm > max_norm:
        factor = max_norm / norm
        for e in range(ty, outer * p, ry):
            i = channel_element(e, j, f, p)
            w[i] = w[i] * factor


def renorm_units(w, max_norm, unit_axis):
    """Max-norm constraint, in place: each unit along ``unit_axis`` of ``w`` (-1 for a Dense
    weight (in, out), 0 for a Conv2D weight (out, in, kh, kw)) whose L2 norm over the other axes
    exceeds ``max_norm`` is rescaled to ``max_norm``. One launch: a block per unit computes the
    norm, then scales the unit."""
    axis = unit_axis % len(w.shape)
    outer = p = 1
    for s in w.shape[:axis]:
        outer *= s
    for s in w.shape[axis + 1:]:
        p *= s
    f = w.shape[axis]
    _launch(_renorm, f, p, flat(w), outer, f, p, float(max_norm))
