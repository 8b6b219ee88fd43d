"""Fused optimizer updates (SGD, AdaGrad, RMSProp, Adam / AdamW): one launch over the flat
parameter buffer per step; and the helpers of gradient clipping (the sum of squares, the
in-place scaling) and of the max-norm constraint (a per-unit reduction in the layout of
:mod:`.reduce`).

Same signatures and update rules as :mod:`fastnn.kernels.reference.optimizers` (PyTorch's,
plus L1). The hyper-parameters are passed in the dtype of the parameters, so a float32 model is
updated in float32 arithmetic as NumPy does it.
"""
import math

import numpy as np
from numba import cuda, float64

from .common import THREADS, ScalarResult, block_sum, flat, larger, launch, launch_1d, scalar
from .reduce import channel_element, channel_of_thread, channel_total, launch_channels


@cuda.jit
def _sgd(p, g, buf, lr, momentum, undamped, nesterov, weight_decay, l1, first_step):
    """p, g, buf: (n,) flat buffers; buf is not touched when momentum == 0;
    undamped = 1 - dampening."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.size, step):
        w = p[i]
        d = g[i]
        if weight_decay != 0:
            d += weight_decay * w
        if l1 != 0:
            if w > 0:
                d += l1
            elif w < 0:
                d -= l1
        if momentum != 0:
            if first_step:
                v = d
            else:
                v = momentum * buf[i] + undamped * d
            buf[i] = v
            d = d + momentum * v if nesterov else v
        p[i] = w - lr * d


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, first_step=False):
    """One SGD step on flat device arrays (see reference.sgd_step); ``buf`` may be None without
    momentum. One launch."""
    pf = flat(p)
    launch_1d(_sgd, pf.size, pf, flat(g), pf if buf is None else flat(buf), scalar(pf, lr),
              scalar(pf, momentum), scalar(pf, 1.0 - dampening), bool(nesterov),
              scalar(pf, weight_decay), scalar(pf, l1), bool(first_step))


@cuda.jit
def _adagrad(p, g, state_sum, clr, weight_decay, eps):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.size, step):
        d = g[i]
        if weight_decay != 0:
            d += weight_decay * p[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] -= clr * d / (math.sqrt(s) + eps)


def adagrad_step(p, g, state_sum, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1):
    """One AdaGrad step on flat device arrays (see reference.adagrad_step). One launch."""
    pf = flat(p)
    clr = lr / (1.0 + (step - 1) * lr_decay)
    launch_1d(_adagrad, pf.size, pf, flat(g), flat(state_sum), scalar(pf, clr),
              scalar(pf, weight_decay), scalar(pf, eps))


@cuda.jit
def _rmsprop(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha, undecayed, eps, weight_decay,
             momentum, centered, nesterov):
    """undecayed = 1 - alpha; momentum_buffer / grad_avg are not touched when unused."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.size, step):
        d = g[i]
        if weight_decay != 0:
            d += weight_decay * p[i]
        sq = alpha * square_avg[i] + undecayed * d * d
        square_avg[i] = sq
        if centered:
            ga = alpha * grad_avg[i] + undecayed * d
            grad_avg[i] = ga
            u = d / (math.sqrt(sq - ga * ga) + eps)
        else:
            u = d / (math.sqrt(sq) + eps)
        if momentum != 0:
            b = momentum * momentum_buffer[i] + u
            momentum_buffer[i] = b
            u = u + momentum * b if nesterov else b
        p[i] -= lr * u


def rmsprop_step(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, nesterov=False):
    """One RMSProp step on flat device arrays (see reference.rmsprop_step); ``momentum_buffer``
    may be None without momentum, ``grad_avg`` when not centered. One launch."""
    pf = flat(p)
    launch_1d(_rmsprop, pf.size, pf, flat(g), flat(square_avg),
              pf if momentum_buffer is None else flat(momentum_buffer),
              pf if grad_avg is None else flat(grad_avg), scalar(pf, lr), scalar(pf, alpha),
              scalar(pf, 1.0 - alpha), scalar(pf, eps), scalar(pf, weight_decay),
              scalar(pf, momentum), bool(centered), bool(nesterov))


@cuda.jit
def _adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, step_size, beta1, undecayed1, beta2,
          undecayed2, root_correction2, eps, weight_decay, shrink, amsgrad):
    """undecayed = 1 - beta; root_correction2 = sqrt(1 - beta2**step); shrink = 1 - lr * wd
    (AdamW, else 1); weight_decay is the L2 term of Adam (0 for AdamW)."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.size, step):
        w = p[i] * shrink
        d = g[i]
        if weight_decay != 0:
            d += weight_decay * w
        m = beta1 * exp_avg[i] + undecayed1 * d
        v = beta2 * exp_avg_sq[i] + undecayed2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = larger(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        p[i] = w - step_size * m / (math.sqrt(v) / root_correction2 + eps)


def adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, step=1, amsgrad=False, decoupled=False):
    """One Adam / AdamW step on flat device arrays (see reference.adam_step);
    ``max_exp_avg_sq`` may be None without amsgrad. One launch."""
    pf = flat(p)
    shrink = 1.0 - lr * weight_decay if decoupled and weight_decay != 0 else 1.0
    l2 = 0.0 if decoupled else weight_decay
    launch_1d(_adam, pf.size, pf, flat(g), flat(exp_avg), flat(exp_avg_sq),
              pf if max_exp_avg_sq is None else flat(max_exp_avg_sq),
              scalar(pf, lr / (1.0 - beta1 ** step)), scalar(pf, beta1), scalar(pf, 1.0 - beta1),
              scalar(pf, beta2), scalar(pf, 1.0 - beta2), scalar(pf, (1.0 - beta2 ** step) ** 0.5),
              scalar(pf, eps), scalar(pf, l2), scalar(pf, shrink), bool(amsgrad))


# --------------------------------------------------------------------------- clipping and max-norm


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
def _scale(x, factor):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, x.size, step):
        x[i] *= factor


def scale_inplace(x, factor):
    """x *= factor, in place (gradient clipping). One launch."""
    xf = flat(x)
    launch_1d(_scale, xf.size, xf, scalar(xf, factor))


@cuda.jit
def _renorm(w, outer, f, p, max_norm):
    """Scale channel j of w (outer, f, p) by max_norm / max(norm_j, max_norm)."""
    sh = cuda.shared.array(THREADS, float64)
    j, ty, ry = channel_of_thread()
    s = 0.0
    if j < f:
        for e in range(ty, outer * p, ry):
            v = w[channel_element(e, j, f, p)]
            s += v * v
    norm = math.sqrt(channel_total(sh, s))
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
    launch_channels(_renorm, f, p, flat(w), outer, f, p, float(max_norm))


@cuda.jit
def _adadelta(p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.size, step):
        d = g[i]
        if weight_decay != 0:
            d += weight_decay * p[i]
        s = rho * square_avg[i] + one_minus_rho * d * d
        square_avg[i] = s
        a = acc_delta[i]
        delta = math.sqrt(a + eps) / math.sqrt(s + eps) * d
        acc_delta[i] = rho * a + one_minus_rho * delta * delta
        p[i] -= lr * delta


def adadelta_step(p, g, square_avg, acc_delta, lr, rho=0.9, eps=1e-6, weight_decay=0.0):
    """One AdaDelta step on flat device arrays (see reference.adadelta_step). One launch."""
    pf = flat(p)
    launch_1d(_adadelta, pf.size, pf, flat(g), flat(square_avg), flat(acc_delta),
              scalar(pf, lr), scalar(pf, rho), scalar(pf, 1 - rho), scalar(pf, eps),
              scalar(pf, weight_decay))
