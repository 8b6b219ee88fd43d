"""Fused optimizer updates: one Numba pass over the flat parameter buffer per step, and the
helpers of gradient clipping and the max-norm constraint.

Same signatures and update rules as the reference (:mod:`fastnn.kernels.reference.optimizers`).
"""
import numpy as np
from numba import njit

from ..reference.optimizers import renorm_units as _reference_renorm_units


@njit(cache=True)
def _sgd(p, g, buf, lr, momentum, dampening, nesterov, weight_decay, l1, first_step):
    use_momentum = momentum != 0
    for i in range(p.size):
        d = g[i] + weight_decay * p[i]
        if l1 != 0:
            d += l1 * np.sign(p[i])
        if use_momentum:
            if first_step:
                v = d
            else:
                v = momentum * buf[i] + (1 - dampening) * d
            buf[i] = v
            d = d + momentum * v if nesterov else v
        p[i] -= lr * d


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, first_step=False):
    """SGD on flat arrays (see reference.sgd_step); ``buf`` may be None without momentum."""
    _sgd(p, g, p if buf is None else buf, lr, momentum, dampening, nesterov,
         weight_decay, l1, first_step)


@njit(cache=True)
def _adagrad(p, g, state_sum, clr, weight_decay, eps):
    for i in range(p.size):
        d = g[i] + weight_decay * p[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] -= clr * d / (np.sqrt(s) + eps)


def adagrad_step(p, g, state_sum, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1):
    """AdaGrad on flat arrays (see reference.adagrad_step); one pass."""
    _adagrad(p, g, state_sum, lr / (1.0 + (step - 1) * lr_decay), weight_decay, eps)


@njit(cache=True)
def _rmsprop(p, g, square_avg, buf, grad_avg, lr, alpha, eps, weight_decay, momentum,
             centered, nesterov):
    beta = 1.0 - alpha
    for i in range(p.size):
        d = g[i] + weight_decay * p[i]
        s = alpha * square_avg[i] + beta * d * d
        square_avg[i] = s
        if centered:
            a = alpha * grad_avg[i] + beta * d
            grad_avg[i] = a
            s = s - a * a
        u = d / (np.sqrt(s) + eps)
        if momentum != 0:
            v = momentum * buf[i] + u
            buf[i] = v
            u = u + momentum * v if nesterov else v
        p[i] -= lr * u


def rmsprop_step(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, nesterov=False):
    """RMSProp on flat arrays (see reference.rmsprop_step); ``momentum_buffer`` may be None
    without momentum, ``grad_avg`` when not centered. One pass."""
    _rmsprop(p, g, square_avg, p if momentum_buffer is None else momentum_buffer,
             p if grad_avg is None else grad_avg, lr, alpha, eps, weight_decay, momentum,
             bool(centered), bool(nesterov))


@njit(cache=True)
def _adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, beta2, eps, weight_decay, decay,
          step_size, bias_correction2_sqrt, amsgrad, decoupled):
    for i in range(p.size):
        w = p[i]
        d = g[i]
        if decoupled:
            w = w * decay
        else:
            d = d + weight_decay * w
        m = beta1 * exp_avg[i] + (1.0 - beta1) * d
        v = beta2 * exp_avg_sq[i] + (1.0 - beta2) * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            if max_exp_avg_sq[i] > v:
                v = max_exp_avg_sq[i]
            max_exp_avg_sq[i] = v
        p[i] = w - step_size * m / (np.sqrt(v) / bias_correction2_sqrt + eps)


def adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, step=1, amsgrad=False, decoupled=False):
    """Adam / AdamW on flat arrays (see reference.adam_step); ``max_exp_avg_sq`` may be None
    without amsgrad. One pass."""
    _adam(p, g, exp_avg, exp_avg_sq, p if max_exp_avg_sq is None else max_exp_avg_sq,
          beta1, beta2, eps, 0.0 if decoupled else weight_decay, 1.0 - lr * weight_decay,
          lr / (1.0 - beta1 ** step), (1.0 - beta2 ** step) ** 0.5, bool(amsgrad), bool(decoupled))


@njit(cache=True)
def _sum_of_squares(x):
    s = 0.0
    for i in range(x.size):
        s += x[i] * x[i]
    return s


def sum_of_squares(x):
    """sum(x ** 2) as a Python float, accumulated in float64 (see reference.sum_of_squares)."""
    return float(_sum_of_squares(np.ravel(x)))


@njit(cache=True)
def _scale(x, factor):
    for i in range(x.size):
        x[i] *= factor


def scale_inplace(x, factor):
    """x *= factor, in place (see reference.scale_inplace)."""
    if x.flags.c_contiguous:
        _scale(x.reshape(-1), factor)
    else:
        x *= factor


@njit(cache=True)
def _renorm_units(w, max_norm, norms):
    a, u, b = w.shape
    norms[:] = 0.0
    for i in range(a):
        for j in range(u):
            for k in range(b):
                norms[j] += w[i, j, k] * w[i, j, k]
    for j in range(u):
        n = np.sqrt(norms[j])
        norms[j] = max_norm / n if n > max_norm else 1.0
    for i in range(a):
        for j in range(u):
            f = norms[j]
            if f != 1.0:
                for k in range(b):
                    w[i, j, k] *= f


def renorm_units(w, max_norm, unit_axis):
    """Max-norm constraint on the units along ``unit_axis`` (see reference.renorm_units), in
    place. Two passes over ``w``; one float64 per unit."""
    if not w.flags.c_contiguous:
        return _reference_renorm_units(w, max_norm, unit_axis)
    axis = unit_axis % w.ndim
    units = w.shape[axis]
    before = int(np.prod(w.shape[:axis]))
    w3 = w.reshape(before, units, -1)
    _renorm_units(w3, float(max_norm), np.empty(units, np.float64))
