"""The base class of the full-batch optimizers that re-evaluate the cost themselves
(L-BFGS, BFGS, conjugate gradients, Newton): PyTorch's ``step(closure)`` contract over the
parameters as one flat vector.

The closure zeroes the gradients, computes the cost, back-propagates and returns the cost as
a float (the gradient is left in ``p.grad``)::

    def closure():
        model.zero_grad()
        value = loss(model.forward(x, training=True), y)
        model.backward(loss.backward())
        return value
    opt.step(closure)

Where the vector arithmetic runs
--------------------------------
These methods are a handful of dot products and axpys per evaluation over the flat buffer: they
run in NumPy on host copies of the parameters and gradients, in the parameters' dtype. On the
host backends (numpy, cpu) those are the flat buffers' own values (one copy each); on cuda each
evaluation copies the gradient to the host and each trial point's parameters to the device
(one vector of ``n_params`` each way: small next to a full-batch forward and backward pass).
"""
import numpy as np

from .base import Optimizer


class ClosureOptimizer(Optimizer):
    """Base of the optimizers whose :meth:`step` takes a closure (see :mod:`.closure`).

    One parameter group only (as torch.optim.LBFGS); no clipping, no max-norm. Subclasses
    write :meth:`_minimize` (one call of :meth:`step`) with :meth:`params_vector`,
    :meth:`set_params` and :meth:`evaluate`.

    Attributes
    ----------
    func_evals : int
        Closure calls made by every :meth:`step` so far (torch's ``state["func_evals"]``).
    n_iter : int
        Iterations made by every :meth:`step` so far (torch's ``state["n_iter"]``).
    """

    def __init__(self, params, lr, hyper):
        super().__init__(params, lr, hyper)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} doesn't support per-parameter options "
                             "(parameter groups): pass one list of parameters")
        self.func_evals = 0
        self.n_iter = 0

    # -- the flat vector ---------------------------------------------------------------
    def _chunks(self):
        """(data, grad) arrays covering the parameters in order: the flat runs, or one pair per
        parameter when they are not in a model's flat buffers."""
        if self._runs is not None:
            return [(p, g) for runs in self._runs for p, g, _ in runs]
        return [(p.data, p.grad) for p in self.params]

    def _gather(self, which):
        parts = [np.asarray(self.be.to_host(c[which])).ravel() for c in self._chunks()]
        return np.array(parts[0]) if len(parts) == 1 else np.concatenate(parts)

    def params_vector(self):
        """A host copy of every parameter, as one flat vector (n_params,) in their dtype."""
        return self._gather(0)

    def grad_vector(self):
        """A host copy of every gradient, as one flat vector (n_params,)."""
        return self._gather(1)

    def set_params(self, x):
        """Write the flat host vector ``x`` (n_params,) into the parameters."""
        pos = 0
        for data, _ in self._chunks():
            size = int(np.prod(data.shape))
            self.be.copy_into(data, x[pos:pos + size].reshape(data.shape))
            pos += size

    def evaluate(self, closure):
        """Call the closure: ``(cost as float, host copy of the gradient)``; counts the call."""
        value = float(closure())
        self.func_evals += 1
        return value, self.grad_vector()

    # -- stepping ----------------------------------------------------------------------
    def step(self, closure=None):
        """One call of the method (up to its iteration limits) from the current parameters;
        returns the cost at the starting point (the closure's first value), as PyTorch."""
        if closure is None:
            raise TypeError(f"{type(self).__name__}.step needs a closure that zeroes the "
                            "gradients, computes the cost, back-propagates and returns the cost")
        self.step_count += 1
        return self._minimize(closure)

    def _minimize(self, closure):
        raise NotImplementedError

    def state_dict(self):
        raise NotImplementedError(f"{type(self).__name__} keeps its curvature history in "
                                  "memory only; pickle the optimizer to keep it")
