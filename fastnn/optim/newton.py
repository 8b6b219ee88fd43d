"""Newton's method with Hessian-vector products, regularised (damped) for non-convex costs."""
import numpy as np

from .closure import ClosureOptimizer

SOLVERS = ("cg", "direct")


class Newton(ClosureOptimizer):
    """Newton's method (the texts' section 8.6.1): per iteration solve
    ``(H + damping I) p = -g`` and move to ``x + t p``, ``t`` the first of 1, 1/2, 1/4, ...
    that lowers the cost by at least ``1e-4 t |g'p|`` (Armijo backtracking).

    ``damping > 0`` is the regularised form for non-convex costs (Levenberg's ``H + alpha I``):
    far from a minimum, where ``H`` may have negative eigenvalues, it shortens and turns the
    step towards the gradient; ``damping = 0`` is the pure method, quadratically convergent near
    a minimum with a positive definite Hessian. When the solve does not give a descent
    direction (negative curvature), the step falls back to ``-g``.

    Parameters
    ----------
    params : list of Parameter (one group)
    damping : float >= 0, default 1e-4
    solver : {"cg", "direct"}
        "cg": linear conjugate gradients on Hessian-vector products (truncated at
        ``cg_max_iter`` iterations, at relative residual ``cg_tol`` or at the first direction
        of non-positive curvature, as Steihaug's). "direct": the whole Hessian from
        ``n_params`` products, then ``numpy.linalg.solve`` (small models only).
    hvp : callable ``v -> H v`` or None
        The exact product, e.g. ``lambda v: model.hessian_vector_product(x, y, loss, v)``;
        None: central differences of the closure's gradients, ``(g(x + h v) - g(x - h v)) /
        (2 h)`` with ``h = u^(1/3) max(1, |x|) / |v|`` (two closure calls a product, relative
        error about ``u^(2/3)``: 1e-10 in float64; see :mod:`fastnn.hvp`).
    max_iter : int, default 1
        Newton iterations per :meth:`step`.
    tolerance_grad : float, default 1e-7
        Stop when ``max|g| <= tolerance_grad``.
    cg_max_iter : int or None
        None: the number of parameters.
    cg_tol : float, default 1e-10
    """

    def __init__(self, params, damping=1e-4, solver="cg", hvp=None, max_iter=1,
                 tolerance_grad=1e-7, cg_max_iter=None, cg_tol=1e-10):
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"max_iter must be a whole number >= 1, got {max_iter!r}")
        super().__init__(params, 1.0, {"damping": float(damping), "solver": solver,
                                       "max_iter": int(max_iter),
                                       "tolerance_grad": float(tolerance_grad),
                                       "cg_max_iter": cg_max_iter, "cg_tol": float(cg_tol)})
        self.hvp = hvp
        self.hvp_calls = 0

    def _minimize(self, closure):
        h = self.hyper
        f, g = self.evaluate(closure)
        start = f
        x = self.params_vector()
        for _ in range(h["max_iter"]):
            if np.max(np.abs(g)) <= h["tolerance_grad"]:
                break
            self.n_iter += 1

            def product(v):
                self.hvp_calls += 1
                hv = self.hvp(v) if self.hvp is not None else self._fd_product(closure, x, v)
                return np.asarray(hv, dtype=x.dtype) + h["damping"] * v
            p = self._solve(product, g)
            if not float(g @ p) < 0:
                p = -g
            gtd, t = float(g @ p), 1.0
            while True:                                     # Armijo backtracking
                self.set_params(x + t * p)
                f_new, g_new = self.evaluate(closure)
                if f_new <= f + 1e-4 * t * gtd or t < 1e-10:
                    break
                t /= 2
            x = x + t * p
            f, g = f_new, g_new
        self.set_params(x)
        return start

    def _fd_product(self, closure, x, v):
        norm_v = float(np.linalg.norm(v))
        if norm_v == 0:
            return np.zeros_like(v)
        eps = np.finfo(x.dtype).eps ** (1 / 3) * max(1.0, float(np.linalg.norm(x))) / norm_v
        self.set_params(x + eps * v)
        _, plus = self.evaluate(closure)
        self.set_params(x - eps * v)
        _, minus = self.evaluate(closure)
        self.set_params(x)
        return (plus - minus) / (2 * eps)

    def _solve(self, product, g):
        """``p`` with ``(H + damping I) p = -g`` (approximately, for "cg")."""
        if self.hyper["solver"] == "direct":
            eye = np.eye(g.size, dtype=g.dtype)
            A = np.stack([product(e) for e in eye], axis=1)
            return np.linalg.solve((A + A.T) / 2, -g)
        p, r = np.zeros_like(g), -g.copy()
        d, rr = r.copy(), float(r @ r)
        stop = self.hyper["cg_tol"] ** 2 * rr
        for _ in range(self.hyper["cg_max_iter"] or g.size):
            Ad = product(d)
            curvature = float(d @ Ad)
            if curvature <= 0:                      # negative curvature: stop (Steihaug)
                return p if p.any() else -g
            alpha = rr / curvature
            p += alpha * d
            r -= alpha * Ad
            rr_new = float(r @ r)
            if rr_new <= stop:
                break
            d = r + (rr_new / rr) * d
            rr = rr_new
        return p
