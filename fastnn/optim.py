"""Optimizers and learning-rate schedules.

Each optimizer has two implementations of its step, as in ``torch.optim``:

* ``_step_reference`` - a plain per-parameter NumPy loop in textbook form: the oracle;
* ``_step_fused``     - one backend kernel call over the flat parameter buffer.

``step()`` uses the fused form whenever the parameters are one contiguous run of a model's
flat buffer (the usual ``model.parameters()``), the loop otherwise. Both read and write the same
state buffers, so they can be swapped mid-training and compared step by step.
"""
import math

import numpy as np

from .parameter import flat_range


class Optimizer:
    """Base class.

    Parameters
    ----------
    params : list of Parameter
    lr : float
        Learning rate (ε in the course texts).

    Subclasses list their state buffers in ``state_names``; each is a flat array over all the
    parameters (``self.state[name]``) with per-parameter views (``self.param_state(name)``).
    """

    state_names = ()

    def __init__(self, params, lr, **hyper):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not lr >= 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.hyper = hyper
        self.step_count = 0
        self.be = getattr(self.params[0], "backend", None)
        self._flat = flat_range(self.params)
        total = sum(p.size for p in self.params)
        dtype = self.params[0].data.dtype
        zeros = self.be.zeros if self.be is not None else np.zeros
        self.state = {name: zeros((total,), dtype) for name in self.state_names}

    # -- state -------------------------------------------------------------------------
    def param_state(self, name):
        """Per-parameter views of state buffer ``name``, shaped like each parameter."""
        views, pos, flat = [], 0, self.state[name]
        for p in self.params:
            views.append(flat[pos:pos + p.size].reshape(p.shape))
            pos += p.size
        return views

    def state_dict(self):
        """Host copies of everything needed to resume: hyper-parameters, step count, state."""
        to_host = self.be.to_host if self.be is not None else np.asarray
        out = {"lr": self.lr, "step_count": self.step_count}
        out.update({f"state.{k}": np.array(to_host(v)) for k, v in self.state.items()})
        return out

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (the parameters must match in size)."""
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        for k, buf in self.state.items():
            self.be.copy_into(buf, np.asarray(state[f"state.{k}"], dtype=buf.dtype))

    # -- stepping ----------------------------------------------------------------------
    def step(self):
        """Update every parameter in place from its ``grad``."""
        self.step_count += 1
        if self._flat is not None:
            self._step_fused()
        else:
            self._step_reference()

    def zero_grad(self):
        """Set every parameter's gradient to zero."""
        if self._flat is not None:
            _, flat_grad, start, stop = self._flat
            flat_grad[start:stop] = 0
        else:
            for p in self.params:
                p.grad[...] = 0

    def flat(self):
        """(parameters, gradients) as flat arrays covering ``self.params``."""
        flat_data, flat_grad, start, stop = self._flat
        return flat_data[start:stop], flat_grad[start:stop]

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}(lr={self.lr}{', ' if args else ''}{args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum, L2 and L1.

    PyTorch's rule: with g' = g + weight_decay * w + l1 * sign(w),
    v <- momentum * v + (1 - dampening) * g' (v = g' at the first step), and
    w <- w - lr * v  (or w - lr * (g' + momentum * v) with ``nesterov``).

    The textbook momentum form v <- αv − εg, θ <- θ + v is the same trajectory for a constant
    learning rate (its v is −lr times PyTorch's). ``weight_decay`` λ' is the L2 term; the
    texts' weight decay factor (1 − ηλ/n) corresponds to ``weight_decay = λ/n``.
    ``l1`` adds l1 * sign(w) (the texts' L1 regulariser with l1 = λ/n).
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, l1=0.0):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        if momentum < 0 or weight_decay < 0 or l1 < 0:
            raise ValueError("momentum, weight_decay and l1 must be >= 0")
        if momentum == 0:
            self.state_names = ()
        super().__init__(params, lr, momentum=float(momentum), dampening=float(dampening),
                         nesterov=bool(nesterov), weight_decay=float(weight_decay), l1=float(l1))

    def _step_fused(self):
        p, g = self.flat()
        self.be.sgd_step(p, g, self.state.get("momentum_buffer"), self.lr,
                         first_step=self.step_count == 1, **self.hyper)

    def _step_reference(self):
        h = self.hyper
        bufs = self.param_state("momentum_buffer") if h["momentum"] else [None] * len(self.params)
        for p, buf in zip(self.params, bufs):
            d = p.grad + h["weight_decay"] * p.data + h["l1"] * np.sign(p.data)
            if h["momentum"]:
                if self.step_count == 1:
                    buf[...] = d
                else:
                    buf[...] = h["momentum"] * buf + (1 - h["dampening"]) * d
                d = d + h["momentum"] * buf if h["nesterov"] else buf
            p.data[...] = p.data - self.lr * d


# ------------------------------------------------------------------------------- schedules


class Schedule:
    """Sets ``optimizer.lr`` from the number of times :meth:`step` was called.

    Step it once per epoch (or once per batch for per-batch schedules); ``value(k)`` is the
    learning rate after ``k`` steps; ``value(0)`` is the optimizer's initial rate.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.initial_lr = optimizer.lr
        self.k = 0

    def step(self):
        self.k += 1
        self.optimizer.lr = self.value(self.k)
        return self.optimizer.lr

    def value(self, k):
        raise NotImplementedError


class LinearDecay(Schedule):
    """ε_k = (1 − k/τ) ε_0 + (k/τ) ε_τ for k <= τ, then constant ε_τ (τ = ``steps``)."""

    def __init__(self, optimizer, final_lr, steps):
        super().__init__(optimizer)
        self.final_lr, self.steps = float(final_lr), int(steps)

    def value(self, k):
        a = min(k / self.steps, 1.0)
        return (1 - a) * self.initial_lr + a * self.final_lr


class StepDecay(Schedule):
    """ε_k = ε_0 · gamma^floor(k / step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def value(self, k):
        return self.initial_lr * self.gamma ** (k // self.step_size)


class ExponentialDecay(Schedule):
    """ε_k = ε_0 · gamma^k."""

    def __init__(self, optimizer, gamma):
        super().__init__(optimizer)
        self.gamma = float(gamma)

    def value(self, k):
        return self.initial_lr * self.gamma ** k


class CosineDecay(Schedule):
    """ε_k = ε_min + (ε_0 − ε_min) (1 + cos(π min(k, τ)/τ)) / 2 (τ = ``steps``)."""

    def __init__(self, optimizer, steps, final_lr=0.0):
        super().__init__(optimizer)
        self.steps, self.final_lr = int(steps), float(final_lr)

    def value(self, k):
        c = (1 + math.cos(math.pi * min(k, self.steps) / self.steps)) / 2
        return self.final_lr + (self.initial_lr - self.final_lr) * c


OPTIMIZERS = {"sgd": SGD}


def get(name, params, lr=None, **kwargs):
    """Build an optimizer by name: 'sgd', 'momentum' (SGD, momentum 0.9), 'nesterov', and the
    names in ``OPTIMIZERS`` ('adam', 'rmsprop', ...)."""
    name = name.lower()
    if name in ("momentum", "nesterov"):
        kwargs.setdefault("momentum", 0.9)
        kwargs["nesterov"] = name == "nesterov"
        name = "sgd"
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of "
                         f"{sorted(set(OPTIMIZERS) | {'momentum', 'nesterov'})}")
    if lr is not None:
        kwargs["lr"] = lr
    return OPTIMIZERS[name](params, **kwargs)
