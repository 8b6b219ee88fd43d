"""Nonlinear conjugate gradients (Fletcher-Reeves, Polak-Ribiere) with restarts."""
from .closure import ClosureOptimizer
from .line_search import LineSearchOptimizer, line_search_hyper

BETAS = ("polak-ribiere", "fletcher-reeves")


class ConjugateGradient(LineSearchOptimizer, ClosureOptimizer):
    """Nonlinear conjugate gradients (Nocedal and Wright, *Numerical Optimization*, section
    5.2; the texts' section 8.6.2): ``d = -g + beta d_previous`` with

    * "polak-ribiere": ``beta = max(0, g'(g - g_previous) / g_previous'g_previous)`` (PR+, as
      ``scipy.optimize.minimize(method="CG")``),
    * "fletcher-reeves": ``beta = g'g / g_previous'g_previous``,

    restarted to steepest descent every ``restart`` iterations and whenever ``d`` is not a
    descent direction; each step length from the strong Wolfe search (c2 = 0.4, SciPy's).

    Parameters
    ----------
    params : list of Parameter (one group)
    lr : float, default 1
        Scale of the line search's first trial step.
    beta : {"polak-ribiere", "fletcher-reeves"}
    restart : int or None, default None
        Iterations between restarts; None: the number of parameters.
    max_iter : int, default 20
        Iterations per :meth:`step`.
    max_eval : int or None
        Closure calls per :meth:`step` (None: ``5 * max_iter``).
    tolerance_grad : float, default 1e-5
        Stop when ``max|g| <= tolerance_grad`` (SciPy's ``gtol``).
    tolerance_change : float, default 1e-9
        Stop when the change of the cost or the step ``max|s|`` falls below it.
    line_search : "strong_wolfe"
        The only one.
    """

    c2 = 0.4

    def __init__(self, params, lr=1, beta="polak-ribiere", restart=None, max_iter=20,
                 max_eval=None, tolerance_grad=1e-5, tolerance_change=1e-9,
                 line_search="strong_wolfe"):
        if beta not in BETAS:
            raise ValueError(f"beta must be one of {BETAS}, got {beta!r}")
        if line_search != "strong_wolfe":
            raise ValueError(f"line_search must be 'strong_wolfe', got {line_search!r}")
        if restart is not None and (int(restart) != restart or restart < 1):
            raise ValueError(f"restart must be a whole number >= 1 or None, got {restart!r}")
        hyper = line_search_hyper(max_iter, max_eval, tolerance_grad, tolerance_change)
        hyper.update(beta=beta, restart=None if restart is None else int(restart),
                     line_search=line_search)
        super().__init__(params, lr, hyper)
        self.memory = {}

    def _reset(self):
        self.memory.pop("d", None)

    def _direction(self, g):
        mem = self.memory
        restart = self.hyper["restart"] or g.size
        if "d" not in mem or mem["since_restart"] >= restart:
            mem["since_restart"] = 0
            return -g
        g_prev, d_prev = mem["g"], mem["d"]
        if self.hyper["beta"] == "fletcher-reeves":
            beta = float(g @ g) / float(g_prev @ g_prev)
        else:
            beta = max(0.0, float(g @ (g - g_prev)) / float(g_prev @ g_prev))
        return -g + beta * d_prev

    def _learn(self, d, t, g, g_new):
        mem = self.memory
        mem["d"], mem["g"] = d, g
        mem["since_restart"] = mem.get("since_restart", 0) + 1
