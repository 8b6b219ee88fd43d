"""Learning-rate schedules: :class:`Schedule` sets ``optimizer.lr`` from the number of its steps."""
import math


class Schedule:
    """Sets ``optimizer.lr`` from the number of times :meth:`step` was called.

    ``value(k)`` is the learning rate after ``k`` steps (``value(0)`` is the optimizer's rate
    when the schedule was made); ``step()`` advances ``k`` and sets the optimizer's rate (every
    parameter group follows it, scaled, see :class:`~fastnn.optim.Optimizer`). A schedule
    counts whatever calls its ``step``: once per epoch (the default; ``per_batch=False``) or
    once per mini-batch (``per_batch=True``); the flag tells a ``LearningRateScheduler``
    callback which, so ``steps`` and ``step_size`` are in epochs or in batches accordingly.

    Parameters
    ----------
    optimizer : Optimizer
    per_batch : bool, default False
    """

    def __init__(self, optimizer, per_batch=False):
        self.optimizer = optimizer
        self.initial_lr = optimizer.lr
        self.per_batch = bool(per_batch)
        self.k = 0

    def step(self):
        """Advance one step; returns the new learning rate (also set on the optimizer)."""
        self.k += 1
        self.optimizer.lr = self.value(self.k)
        return self.optimizer.lr

    def value(self, k):
        raise NotImplementedError

    def state_dict(self):
        """``{"k": steps taken, "initial_lr": ε_0}``, to resume the schedule."""
        return {"k": self.k, "initial_lr": self.initial_lr}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned and set the optimizer's rate to ``value(k)``."""
        self.k, self.initial_lr = int(state["k"]), float(state["initial_lr"])
        self.optimizer.lr = self.value(self.k)

    @staticmethod
    def _positive(name, value):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
        return int(value)


class LinearDecay(Schedule):
    """ε_k = (1 − k/τ) ε_0 + (k/τ) ε_τ for k <= τ, then constant ε_τ (τ = ``steps``)."""

    def __init__(self, optimizer, final_lr, steps, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.final_lr, self.steps = float(final_lr), self._positive("steps", steps)

    def value(self, k):
        a = min(k / self.steps, 1.0)
        return (1 - a) * self.initial_lr + a * self.final_lr


class StepDecay(Schedule):
    """ε_k = ε_0 · gamma^floor(k / step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.step_size, self.gamma = self._positive("step_size", step_size), float(gamma)

    def value(self, k):
        return self.initial_lr * self.gamma ** (k // self.step_size)


class ExponentialDecay(Schedule):
    """ε_k = ε_0 · gamma^k."""

    def __init__(self, optimizer, gamma, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.gamma = float(gamma)

    def value(self, k):
        return self.initial_lr * self.gamma ** k


class CosineDecay(Schedule):
    """ε_k = ε_min + (ε_0 − ε_min) (1 + cos(π min(k, τ)/τ)) / 2 (τ = ``steps``, ε_min = ``final_lr``)."""

    def __init__(self, optimizer, steps, final_lr=0.0, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.steps, self.final_lr = self._positive("steps", steps), float(final_lr)

    def value(self, k):
        c = (1 + math.cos(math.pi * min(k, self.steps) / self.steps)) / 2
        return self.final_lr + (self.initial_lr - self.final_lr) * c
