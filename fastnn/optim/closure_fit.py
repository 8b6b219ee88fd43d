"""The epoch runner ``fit`` uses for the closure optimizers (L-BFGS, BFGS, CG, Newton):
one ``optimizer.step(closure)`` per batch, the whole training set for ``batch_size=None``."""
import numpy as np

from ..epochs import Batches, divergence


def closure_epoch(model, loss, optimizer, x, y, labels, batch_size, per_batch_callbacks,
                  augment=None, rng=None, compiled=None):
    """A :class:`ClosureEpoch` (``make_epoch``'s arguments); ValueError for what it cannot run."""
    if augment is not None:
        raise ValueError(f"{type(optimizer).__name__} re-evaluates each batch many times, so "
                         "fit(augment=...) cannot be used with it (augment the data set first)")
    if compiled:
        raise ValueError(f"fit(compiled=True): {type(optimizer).__name__} runs the layer-by-layer "
                         "loop (its closure evaluates the model many times a step)")
    return ClosureEpoch(model, loss, optimizer, x, y, labels, batch_size)


class ClosureEpoch:
    """One epoch of a closure optimizer: per batch, ``optimizer.step(closure)``.

    The closure runs the forward pass (training mode), the loss and the backward pass on the
    batch and returns the loss. The epoch's loss and accuracy are those of each batch at the
    start of its step (the closure's first call), as for the gradient methods. A non-finite
    loss at any call raises DivergenceError, with the weights restored to what they were before
    that batch's step.
    """

    def __init__(self, model, loss, optimizer, x, y, labels, batch_size):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.batches = Batches(model.be, x, y, labels, batch_size)
        self.steps = self.batches.steps

    def run(self, epoch, order, on_batch_end):
        """Train on every batch of ``order``; returns (sum of per-sample losses, number correct)."""
        model, loss, be = self.model, self.loss, self.model.be
        total_loss, correct = 0.0, 0
        if order is not None:
            order = be.to_device(order)
        for b in range(self.steps):
            xb, yb, lb = self.batches.get(b, order)
            first = {}
            before = model.get_weights()

            def closure():
                out = model.forward_batch(xb, training=True)
                value = loss.compute(out, yb)
                if not np.isfinite(value):
                    model.set_weights(before)
                    raise divergence(value, epoch, b, self.steps, self.optimizer)
                if not first:
                    first["correct"] = be.count_correct(out, lb) if lb is not None else 0
                model.backward_batch(loss.grad, need_input_grad=False, accumulate=False)
                return value

            value = self.optimizer.step(closure)
            total_loss += value * len(xb)
            correct += first["correct"]
            on_batch_end(b, total_loss)
        return total_loss, correct
