"""The strong Wolfe line search shared by L-BFGS, BFGS and conjugate gradients.

A port of PyTorch's ``torch.optim.lbfgs._strong_wolfe`` (itself minFunc's / torch7's
``lswolfe``): bracketing with cubic extrapolation, then zoom by safeguarded cubic
interpolation (Nocedal and Wright, *Numerical Optimization*, algorithms 3.5 and 3.6). The
same decisions in the same order, so L-BFGS with ``line_search_fn="strong_wolfe"`` follows
PyTorch's trajectory.

Along the line ``x + t d`` the search accepts a step ``t`` with
``f(x + t d) <= f(x) + c1 t g'd`` (sufficient decrease) and ``|g(x + t d)'d| <= c2 |g'd|``
(curvature, the strong form).
"""
import math

import numpy as np


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through ``(x1, f1)`` and ``(x2, f2)`` with slopes ``g1``, ``g2``,
    clipped to ``bounds`` (default: the interval between the points); the midpoint of the
    bounds when the cubic has no minimiser. Floats in, float out."""
    if bounds is not None:
        lo, hi = bounds
    else:
        lo, hi = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, lo), hi)
    return (lo + hi) / 2.0


def strong_wolfe(obj_func, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Search along ``d`` for a step satisfying the strong Wolfe conditions.

    Parameters
    ----------
    obj_func : callable ``t -> (f, g)``
        The cost (float) and its gradient (ndarray (n,)) at ``x + t d``.
    t : float
        The first trial step.
    d : ndarray of shape (n,)
        The search direction (a descent direction: ``gtd < 0``).
    f, g, gtd : float, ndarray (n,), float
        Cost, gradient and directional derivative ``g'd`` at ``t = 0``.
    c1, c2 : float
        Sufficient-decrease and curvature constants, 0 < c1 < c2 < 1.
    tolerance_change : float
        The zoom stops when the bracket's width times ``max|d|`` falls below it.
    max_ls : int
        The most evaluations of ``obj_func``.

    Returns
    -------
    (f_new, g_new, t, evaluations) : the accepted step's cost, gradient, step and the number of
    calls of ``obj_func``.
    """
    d_norm = float(np.max(np.abs(d)))
    g = g.copy()
    f_new, g_new = obj_func(t)
    evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket = bracket_f = bracket_g = bracket_gtd = None
    while ls_iter < max_ls:                                   # bracketing
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                              bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:                      # zoom
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                              bracket[1], bracket_f[1], bracket_gtd[1])
        hi, lo = max(bracket), min(bracket)
        eps = 0.1 * (hi - lo)
        if min(hi - t, t - lo) < eps:                         # too close to an end
            if insuf_progress or t >= hi or t <= lo:
                t = hi - eps if abs(t - hi) < abs(t - lo) else lo + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(t)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evals


class LineSearchOptimizer:
    """The loop of the line-search methods (conjugate gradients, BFGS), mixed into a
    :class:`~fastnn.optim.closure.ClosureOptimizer`: per iteration a direction ``d`` from the
    subclass (:meth:`_direction`; steepest descent whenever it is not a descent direction), a
    strong Wolfe search along it with SciPy's first trial step
    ``lr * min(1, 1.01 * 2 * (f - f_previous) / g'd)`` and curvature constant ``c2``, then
    :meth:`_learn` with the direction, the step length and the gradients before and after.
    State carries over from one ``step`` to the next. A subclass sets ``c2`` and writes
    :meth:`_direction`, :meth:`_learn` and :meth:`_reset`.
    """

    c2 = 0.9

    def _minimize(self, closure):
        h, mem = self.hyper, self.memory
        f, g = self.evaluate(closure)
        start, evals = f, 1
        if np.max(np.abs(g)) <= h["tolerance_grad"]:
            return start
        x = self.params_vector()
        f_old = mem.get("f_old", f + float(np.linalg.norm(g)) / 2)   # SciPy's first guess
        for _ in range(h["max_iter"]):
            self.n_iter += 1
            d = self._direction(g)
            gtd = float(g @ d)
            if not gtd < 0:                                          # restart
                self._reset()
                d = -g
                gtd = float(g @ d)
            t = min(1.0, 1.01 * 2 * (f - f_old) / gtd) if gtd != 0 else 1.0
            t = self.lr * (t if t > 0 else 1.0)

            def obj_func(step):
                self.set_params(x + step * d)
                return self.evaluate(closure)
            f_new, g_new, t, ls = strong_wolfe(obj_func, t, d, f, g, gtd, c2=self.c2,
                                               max_ls=max(1, h["max_eval"] - evals))
            evals += ls
            s = t * d
            x = x + s
            self.set_params(x)
            self._learn(d, t, g, g_new)
            f_old, f, g = f, f_new, g_new
            if (np.max(np.abs(g)) <= h["tolerance_grad"] or evals >= h["max_eval"]
                    or abs(f - f_old) < h["tolerance_change"]
                    or np.max(np.abs(s)) <= h["tolerance_change"]):
                break
        mem["f_old"] = f_old
        return start


def line_search_hyper(max_iter, max_eval, tolerance_grad, tolerance_change):
    """The checked hyper-parameters every line-search method has (``max_eval=None``: 5 per
    iteration)."""
    max_eval = max_iter * 5 if max_eval is None else max_eval
    for name, value in (("max_iter", max_iter), ("max_eval", max_eval)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return {"max_iter": int(max_iter), "max_eval": int(max_eval),
            "tolerance_grad": float(tolerance_grad), "tolerance_change": float(tolerance_change)}
