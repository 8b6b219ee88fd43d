"""L-BFGS with PyTorch's update rule and ``step(closure)`` contract (``torch.optim.LBFGS``)."""
import numpy as np

from .closure import ClosureOptimizer
from .line_search import strong_wolfe


class LBFGS(ClosureOptimizer):
    """Limited-memory BFGS (Nocedal and Wright, *Numerical Optimization*, algorithm 7.4; the
    texts' section 8.6.3), step for step as ``torch.optim.LBFGS`` (minFunc's form).

    The inverse Hessian is the two-loop recursion over the last ``history_size`` pairs
    ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k`` (a pair is kept only when ``y's > 1e-10``),
    started from ``H0 = (y's / y'y) I`` of the newest pair. One :meth:`step` makes up to
    ``max_iter`` iterations and ``max_eval`` closure calls; the history carries over to the
    next ``step``, as PyTorch's state does.

    Parameters
    ----------
    params : list of Parameter
        One group only (ValueError for parameter groups, as PyTorch).
    lr : float, default 1
        Step length of every iteration without line search (the first one:
        ``min(1, 1 / sum|g|) * lr``), and the first trial step of the line search.
    max_iter : int, default 20
        Iterations per :meth:`step`.
    max_eval : int or None, default None
        Closure calls per :meth:`step`; None means ``max_iter * 5 // 4``.
    tolerance_grad : float, default 1e-7
        Stop when ``max|g| <= tolerance_grad`` (first-order optimality).
    tolerance_change : float, default 1e-9
        Stop when the step ``max|t d|``, the change of the cost or the directional derivative
        falls below it.
    history_size : int, default 100
        Pairs (s, y) kept (memory ``2 * history_size * n_params`` values, on the host).
    line_search_fn : None or "strong_wolfe"
        None: the fixed step ``lr``; "strong_wolfe": :func:`fastnn.optim.line_search.strong_wolfe`
        (c1 = 1e-4, c2 = 0.9, at most ``max_eval`` minus the calls made so far).

    Attributes
    ----------
    func_evals, n_iter : int
        Totals over every step (torch's ``state["func_evals"]``, ``state["n_iter"]``).
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError("line_search_fn must be None or 'strong_wolfe', "
                             f"got {line_search_fn!r}")
        for name, value in (("max_iter", max_iter), ("max_eval", max_eval),
                            ("history_size", history_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        super().__init__(params, lr, {
            "max_iter": int(max_iter), "max_eval": int(max_eval),
            "tolerance_grad": float(tolerance_grad), "tolerance_change": float(tolerance_change),
            "history_size": int(history_size), "line_search_fn": line_search_fn})
        self.memory = {}

    def _minimize(self, closure):
        h = self.hyper
        lr = self.lr
        max_iter, max_eval = h["max_iter"], h["max_eval"]
        tol_grad, tol_change = h["tolerance_grad"], h["tolerance_change"]
        history_size = h["history_size"]
        mem = self.memory

        orig_loss, flat_grad = self.evaluate(closure)
        loss = orig_loss
        current_evals = 1
        if np.max(np.abs(flat_grad)) <= tol_grad:
            return orig_loss
        x = self.params_vector()
        d, t = mem.get("d"), mem.get("t")
        old_dirs, old_stps, ro = mem.get("old_dirs"), mem.get("old_stps"), mem.get("ro")
        h_diag, prev_flat_grad = mem.get("H_diag"), mem.get("prev_flat_grad")
        prev_loss = mem.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            self.n_iter += 1
            if self.n_iter == 1:                         # steepest descent to start
                d = -flat_grad
                old_dirs, old_stps, ro, h_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:                           # curvature condition: keep the pair
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                d = self._two_loop(flat_grad, old_dirs, old_stps, ro, h_diag)
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            if self.n_iter == 1:
                t = min(1.0, 1.0 / float(np.sum(np.abs(flat_grad)))) * lr
            else:
                t = lr
            gtd = float(flat_grad @ d)
            if gtd > -tol_change:
                break

            ls_func_evals = 0
            opt_cond = False
            if h["line_search_fn"] == "strong_wolfe":
                def obj_func(step):
                    self.set_params(x + step * d)
                    return self.evaluate(closure)
                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj_func, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
                x = x + t * d
                self.set_params(x)
                opt_cond = np.max(np.abs(flat_grad)) <= tol_grad
            else:
                x = x + t * d
                self.set_params(x)
                if n_iter != max_iter:                   # no evaluation after the last move
                    loss, flat_grad = self.evaluate(closure)
                    opt_cond = np.max(np.abs(flat_grad)) <= tol_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.max(np.abs(d * t)) <= tol_change or abs(loss - prev_loss) < tol_change:
                break

        mem.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                   prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    @staticmethod
    def _two_loop(g, old_dirs, old_stps, ro, h_diag):
        """The L-BFGS direction ``-H g`` by the two-loop recursion (host arrays (n,))."""
        q = -g
        al = [0.0] * len(old_dirs)
        for i in range(len(old_dirs) - 1, -1, -1):
            al[i] = float(old_stps[i] @ q) * ro[i]
            q -= al[i] * old_dirs[i]
        r = q * h_diag
        for i in range(len(old_dirs)):
            be_i = float(old_dirs[i] @ r) * ro[i]
            r += (al[i] - be_i) * old_stps[i]
        return r
