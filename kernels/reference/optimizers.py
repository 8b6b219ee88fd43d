"""Optimizer updates of the reference backend, and the helpers of gradient clipping and the
max-norm constraint.

Flat arrays (runs of the parameter, gradient and state buffers), updated in place with
PyTorch's rules (see fastnn.optim). These are also the per-parameter path of the optimizers.
"""
import numpy as np


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, first_step=False):
    """One SGD step on flat arrays, PyTorch's rule (with an optional L1 term).

    g' = g + weight_decay * p + l1 * sign(p)
    with momentum: buf = g' on the first step, else momentum * buf + (1 - dampening) * g';
    the step direction is g' + momentum * buf (nesterov) or buf; p -= lr * direction.
    ``buf`` may be None when momentum == 0.
    """
    d = g
    if weight_decay != 0:
        d = d + weight_decay * p
    if l1 != 0:
        d = d + l1 * np.sign(p)
    if momentum != 0:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1.0 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adagrad_step(p, g, state_sum, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1):
    """One AdaGrad step on flat arrays, PyTorch's rule.

    g' = g + weight_decay * p; clr = lr / (1 + (step - 1) * lr_decay);
    state_sum += g' * g'; p -= clr * g' / (sqrt(state_sum) + eps). ``step`` counts from 1.
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1.0 + (step - 1) * lr_decay)
    state_sum += g * g
    p -= clr * g / (np.sqrt(state_sum) + eps)


def rmsprop_step(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, nesterov=False):
    """One RMSProp step on flat arrays, PyTorch's rule plus a Nesterov variant.

    g' = g + weight_decay * p; square_avg = alpha * square_avg + (1 - alpha) * g'^2;
    centered: grad_avg = alpha * grad_avg + (1 - alpha) * g', a = sqrt(square_avg - grad_avg^2) + eps,
    else a = sqrt(square_avg) + eps; u = g' / a; with momentum:
    momentum_buffer = momentum * momentum_buffer + u and the step direction is
    u + momentum * momentum_buffer (nesterov) or momentum_buffer; p -= lr * direction.
    ``momentum_buffer`` may be None when momentum == 0, ``grad_avg`` when not centered.
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    square_avg *= alpha
    square_avg += (1.0 - alpha) * g * g
    if centered:
        grad_avg *= alpha
        grad_avg += (1.0 - alpha) * g
        u = g / (np.sqrt(square_avg - grad_avg * grad_avg) + eps)
    else:
        u = g / (np.sqrt(square_avg) + eps)
    if momentum != 0:
        momentum_buffer *= momentum
        momentum_buffer += u
        u = u + momentum * momentum_buffer if nesterov else momentum_buffer
    p -= lr * u


def adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, step=1, amsgrad=False, decoupled=False):
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step on flat arrays,
    PyTorch's rule.

    Adam: g' = g + weight_decay * p; AdamW: g' = g and p *= 1 - lr * weight_decay first.
    exp_avg = beta1 * exp_avg + (1 - beta1) * g'; exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g'^2;
    amsgrad: max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq), used in place of exp_avg_sq below;
    p -= lr / (1 - beta1^step) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2^step) + eps).
    ``step`` counts from 1; ``max_exp_avg_sq`` may be None without amsgrad.
    """
    if weight_decay != 0:
        if decoupled:
            p *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * p
    exp_avg *= beta1
    exp_avg += (1.0 - beta1) * g
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * g * g
    second = exp_avg_sq
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    step_size = lr / (1.0 - beta1 ** step)
    denom = np.sqrt(second) / (1.0 - beta2 ** step) ** 0.5 + eps
    p -= step_size * exp_avg / denom


def sum_of_squares(x):
    """sum(x ** 2) over every element, as a Python float (the squared L2 norm; gradient
    clipping by global norm adds it up over the runs of the flat gradient buffer)."""
    x = x.reshape(-1)
    return float(np.dot(x, x))


def scale_inplace(x, factor):
    """x *= factor, in place."""
    x *= factor


def renorm_units(w, max_norm, unit_axis):
    """Max-norm constraint: rescale each unit's weights to L2 norm ``max_norm`` where longer.

    The units lie along ``unit_axis`` of ``w`` (-1 for a Dense weight (in, out), 0 for a
    Conv2D weight (out, in, kh, kw)); each unit's norm is over all the other axes. Units with
    norm <= max_norm are left unchanged; the others are multiplied by max_norm / norm. In place.
    """
    axis = unit_axis % w.ndim
    axes = tuple(i for i in range(w.ndim) if i != axis)
    norms = np.sqrt(np.sum(w * w, axis=axes, keepdims=True))
    w *= (max_norm / np.maximum(norms, max_norm)).astype(w.dtype)


def adadelta_step(p, g, square_avg, acc_delta, lr, rho=0.9, eps=1e-6, weight_decay=0.0):
    """One AdaDelta step on flat arrays, PyTorch's rule (Zeiler 2012, the texts' AdaDelta).

    g' = g + weight_decay * p; square_avg = rho * square_avg + (1 - rho) * g'^2;
    delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g';
    acc_delta = rho * acc_delta + (1 - rho) * delta^2; p -= lr * delta.
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    square_avg *= rho
    square_avg += (1 - rho) * g * g
    delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * g
    acc_delta *= rho
    acc_delta += (1 - rho) * delta * delta
    p -= lr * delta
