"""Fused optimizer updates: one Numba pass over the flat parameter buffer per step, split over
the Numba threads, and the helpers of gradient clipping and the max-norm constraint.

Same signatures and update rules as the reference (:mod:`fastnn.kernels.reference.optimizers`).
Written for memory speed:

* arithmetic in the parameter dtype: the Python wrappers turn every hyper-parameter and
  derived constant (1 - beta, the bias corrections) into a scalar of ``p.dtype`` before the
  call, so a float32 buffer is updated in float32 (as the NumPy reference and PyTorch do)
  and the loop body vectorises to full SIMD width;
* options are loop-invariant booleans, so the loop has no data-dependent branches (LLVM
  unswitches them); an unused state buffer is passed as ``p`` and never touched;
* one pass: each element is read and written once;
* the buffer is cut into one contiguous chunk per thread (``prange``) when it is long enough
  for the split to pay (``MIN_PER_THREAD`` elements a thread), else one thread does it all.
"""
import numpy as np
from numba import njit, prange

from ..reference.optimizers import renorm_units as _reference_renorm_units
from .parallel import chunk, parts

MIN_PER_THREAD = 1 << 15
"""Elements per thread below which a step runs on one thread: a parallel region costs a few
microseconds, about what one thread needs for 2**15 elements of Adam."""

_KERNEL = dict(cache=True, error_model="numpy")
"""Every loop here: NumPy's float semantics (x / 0 is inf, not ZeroDivisionError), without
which Numba's division check keeps LLVM from vectorising the loop."""


def _split(n):
    """Threads to split a flat run of ``n`` elements over."""
    return parts(max(1, n // MIN_PER_THREAD))


_UNUSED = {np.dtype(t): np.zeros(1, t) for t in (np.float32, np.float64)}


def _unused(p):
    """The stand-in for a state buffer an option does not use: one element of p's dtype, made
    once, never read (passing ``p`` itself would make LLVM's alias check fail and keep the loop
    scalar)."""
    return _UNUSED[p.dtype]


def _run(serial, split, args, n):
    """``serial(*args)`` on one thread, or ``split(*args, n_parts)`` over the threads."""
    n_parts = _split(n)
    if n_parts == 1:
        serial(*args)
    else:
        split(*args, n_parts)


# Each rule is one loop over a run, ``_<rule>(...)``, vectorisable (``range(p.size)``, no
# negative-index wrap, loop-invariant options), and ``_<rule>_split`` runs it on one slice per
# thread. The Python wrapper turns every scalar into p's dtype and picks one of the two.


@njit(**_KERNEL)
def _sgd(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, l1, has_decay, has_l1,
         use_momentum, nesterov, first_step):
    for i in range(p.size):
        w = p[i]
        d = g[i]
        if has_decay:
            d += weight_decay * w
        if has_l1:
            d += l1 * np.sign(w)
        if use_momentum:
            v = d if first_step else momentum * buf[i] + one_minus_dampening * d
            buf[i] = v
            d = d + momentum * v if nesterov else v
        p[i] = w - lr * d


@njit(parallel=True, **_KERNEL)
def _sgd_split(p, g, buf, lr, momentum, one_minus_dampening, weight_decay, l1, has_decay,
               has_l1, use_momentum, nesterov, first_step, n_parts):
    n = p.size
    for t in prange(n_parts):
        lo, hi = chunk(n, t, n_parts)
        b = buf[lo:hi] if use_momentum else buf
        _sgd(p[lo:hi], g[lo:hi], b, lr, momentum, one_minus_dampening, weight_decay, l1,
             has_decay, has_l1, use_momentum, nesterov, first_step)


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, first_step=False):
    """SGD on flat arrays (see reference.sgd_step); ``buf`` may be None without momentum."""
    dt = p.dtype.type
    args = (p, g, _unused(p) if buf is None else buf, dt(lr), dt(momentum), dt(1.0 - dampening),
            dt(weight_decay), dt(l1), weight_decay != 0, l1 != 0, momentum != 0, bool(nesterov),
            bool(first_step))
    _run(_sgd, _sgd_split, args, p.size)


@njit(**_KERNEL)
def _adagrad(p, g, state_sum, clr, weight_decay, eps, has_decay):
    for i in range(p.size):
        w = p[i]
        d = g[i] + weight_decay * w if has_decay else g[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] = w - clr * d / (np.sqrt(s) + eps)


@njit(parallel=True, **_KERNEL)
def _adagrad_split(p, g, state_sum, clr, weight_decay, eps, has_decay, n_parts):
    n = p.size
    for t in prange(n_parts):
        lo, hi = chunk(n, t, n_parts)
        _adagrad(p[lo:hi], g[lo:hi], state_sum[lo:hi], clr, weight_decay, eps, has_decay)


def adagrad_step(p, g, state_sum, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1):
    """AdaGrad on flat arrays (see reference.adagrad_step); one pass."""
    dt = p.dtype.type
    args = (p, g, state_sum, dt(lr / (1.0 + (step - 1) * lr_decay)), dt(weight_decay), dt(eps),
            weight_decay != 0)
    _run(_adagrad, _adagrad_split, args, p.size)


@njit(**_KERNEL)
def _rmsprop(p, g, square_avg, buf, grad_avg, lr, alpha, one_minus_alpha, eps, weight_decay,
             momentum, has_decay, use_momentum, centered, nesterov):
    for i in range(p.size):
        w = p[i]
        d = g[i] + weight_decay * w if has_decay else g[i]
        s = alpha * square_avg[i] + one_minus_alpha * d * d
        square_avg[i] = s
        if centered:
            a = alpha * grad_avg[i] + one_minus_alpha * d
            grad_avg[i] = a
            s = s - a * a
        u = d / (np.sqrt(s) + eps)
        if use_momentum:
            v = momentum * buf[i] + u
            buf[i] = v
            u = u + momentum * v if nesterov else v
        p[i] = w - lr * u


@njit(parallel=True, **_KERNEL)
def _rmsprop_split(p, g, square_avg, buf, grad_avg, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, has_decay, use_momentum, centered, nesterov, n_parts):
    n = p.size
    for t in prange(n_parts):
        lo, hi = chunk(n, t, n_parts)
        b = buf[lo:hi] if use_momentum else buf
        a = grad_avg[lo:hi] if centered else grad_avg
        _rmsprop(p[lo:hi], g[lo:hi], square_avg[lo:hi], b, a, lr, alpha, one_minus_alpha, eps,
                 weight_decay, momentum, has_decay, use_momentum, centered, nesterov)


def rmsprop_step(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, nesterov=False):
    """RMSProp on flat arrays (see reference.rmsprop_step); ``momentum_buffer`` may be None
    without momentum, ``grad_avg`` when not centered. One pass."""
    dt = p.dtype.type
    args = (p, g, square_avg, _unused(p) if momentum_buffer is None else momentum_buffer,
            _unused(p) if grad_avg is None else grad_avg, dt(lr), dt(alpha), dt(1.0 - alpha),
            dt(eps), dt(weight_decay), dt(momentum), weight_decay != 0, momentum != 0,
            bool(centered), bool(nesterov))
    _run(_rmsprop, _rmsprop_split, args, p.size)


@njit(**_KERNEL)
def _adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1, beta2,
          one_minus_beta2, eps, weight_decay, decay, step_size, bias_correction2_sqrt,
          coupled_decay, decoupled_decay, amsgrad):
    for i in range(p.size):
        w = p[i]
        d = g[i]
        if decoupled_decay:
            w = w * decay
        if coupled_decay:
            d = d + weight_decay * w
        m = beta1 * exp_avg[i] + one_minus_beta1 * d
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * d * d
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            top = max_exp_avg_sq[i]
            v = v if v > top else top
            max_exp_avg_sq[i] = v
        p[i] = w - step_size * m / (np.sqrt(v) / bias_correction2_sqrt + eps)


@njit(parallel=True, **_KERNEL)
def _adam_split(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, one_minus_beta1, beta2,
                one_minus_beta2, eps, weight_decay, decay, step_size, bias_correction2_sqrt,
                coupled_decay, decoupled_decay, amsgrad, n_parts):
    n = p.size
    for t in prange(n_parts):
        lo, hi = chunk(n, t, n_parts)
        top = max_exp_avg_sq[lo:hi] if amsgrad else max_exp_avg_sq
        _adam(p[lo:hi], g[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi], top, beta1,
              one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, step_size,
              bias_correction2_sqrt, coupled_decay, decoupled_decay, amsgrad)


def adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, step=1, amsgrad=False, decoupled=False):
    """Adam / AdamW on flat arrays (see reference.adam_step); ``max_exp_avg_sq`` may be None
    without amsgrad. One pass."""
    dt = p.dtype.type
    args = (p, g, exp_avg, exp_avg_sq, _unused(p) if max_exp_avg_sq is None else max_exp_avg_sq,
            dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(eps), dt(weight_decay),
            dt(1.0 - lr * weight_decay), dt(lr / (1.0 - beta1 ** step)),
            dt((1.0 - beta2 ** step) ** 0.5), weight_decay != 0 and not decoupled,
            weight_decay != 0 and bool(decoupled), bool(amsgrad))
    _run(_adam, _adam_split, args, p.size)


@njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _sum_of_squares(x):
    """Float64 sum of squares, reassociated so that LLVM vectorises it (in order it ran at one
    element per add latency: 187 us over 313 600 floats, scikit-learn's per-batch L2 term)."""
    s = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        s += v * v
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


@njit(**_KERNEL)
def _adadelta(p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay,
              has_decay):
    for i in range(p.size):
        w = p[i]
        d = g[i] + weight_decay * w if has_decay else g[i]
        s = rho * square_avg[i] + one_minus_rho * d * d
        square_avg[i] = s
        a = acc_delta[i]
        delta = np.sqrt(a + eps) / np.sqrt(s + eps) * d
        acc_delta[i] = rho * a + one_minus_rho * delta * delta
        p[i] = w - lr * delta


@njit(parallel=True, **_KERNEL)
def _adadelta_split(p, g, square_avg, acc_delta, lr, rho, one_minus_rho, eps, weight_decay,
                    has_decay, n_parts):
    n = p.size
    for t in prange(n_parts):
        lo, hi = chunk(n, t, n_parts)
        _adadelta(p[lo:hi], g[lo:hi], square_avg[lo:hi], acc_delta[lo:hi], lr, rho,
                  one_minus_rho, eps, weight_decay, has_decay)


def adadelta_step(p, g, square_avg, acc_delta, lr, rho=0.9, eps=1e-6, weight_decay=0.0):
    """AdaDelta on flat arrays (see reference.adadelta_step); one pass."""
    dt = p.dtype.type
    args = (p, g, square_avg, acc_delta, dt(lr), dt(rho), dt(1 - rho), dt(eps),
            dt(weight_decay), weight_decay != 0)
    _run(_adadelta, _adadelta_split, args, p.size)
