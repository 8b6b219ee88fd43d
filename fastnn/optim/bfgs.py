"""BFGS with a dense inverse-Hessian approximation (for small models)."""
import numpy as np

from .closure import ClosureOptimizer
from .line_search import LineSearchOptimizer, line_search_hyper


class BFGS(LineSearchOptimizer, ClosureOptimizer):
    """Broyden-Fletcher-Goldfarb-Shanno (Nocedal and Wright, *Numerical Optimization*,
    algorithm 6.1; the texts' section 8.6.3), as ``scipy.optimize.minimize(method="BFGS")``:
    direction ``d = -H g`` from the dense inverse-Hessian approximation ``H`` (n_params x
    n_params on the host, started at the identity), step length from the strong Wolfe search
    (c2 = 0.9), then ``H <- (I - rho s y') H (I - rho y s') + rho s s'`` with ``rho = 1 / y's``
    (skipped when ``y's <= 0``, which keeps ``H`` positive definite).

    Memory ``n_params ** 2`` values: use :class:`LBFGS` beyond a few thousand parameters.

    Parameters
    ----------
    params : list of Parameter (one group)
    lr : float, default 1
        Scale of the line search's first trial step.
    max_iter, max_eval, tolerance_grad, tolerance_change
        As :class:`ConjugateGradient` (``tolerance_grad`` SciPy's ``gtol``, default 1e-5).
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-5,
                 tolerance_change=1e-9):
        super().__init__(params, lr, line_search_hyper(max_iter, max_eval, tolerance_grad,
                                                       tolerance_change))
        self.memory = {}

    def _reset(self):
        self.memory.pop("H", None)

    def _direction(self, g):
        H = self.memory.get("H")
        return -g if H is None else -(H @ g)

    def _learn(self, d, t, g, g_new):
        s, y = t * d, g_new - g
        ys = float(y @ s)
        H = self.memory.get("H")
        if H is None:
            H = self.memory["H"] = np.eye(s.size, dtype=s.dtype)
        if ys > 0:
            rho = 1.0 / ys
            Hy = H @ y
            # (I - rho s y') H (I - rho y s') + rho s s', expanded
            H += (rho * rho * float(y @ Hy) + rho) * np.outer(s, s) \
                - rho * (np.outer(Hy, s) + np.outer(s, Hy))
