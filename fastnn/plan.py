"""How fit runs an epoch: layer by layer from Python, or as one compiled plan.

``GenericEpoch`` calls each layer's forward/backward, the loss and the optimizer from Python;
it works for every model, backend, loss and optimizer, and is the oracle for the fast path.

``DenseStackEpoch`` is used when the model is a chain of Dense layers (with fusable
activations and an optional leading Flatten), the loss is cross-entropy, MSE or BCE, and the
backend offers ``dense_stack_steps`` (the cpu backend): the model is turned once into a table
of layers and flat work buffers, and compiled code runs whole ranges of mini-batches. Plain
SGD is folded into the weight-gradient GEMMs; any other optimizer runs after each batch.
"""
import math

import numpy as np

from . import threads
from .errors import DivergenceError
from .layers import Dense, Flatten
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

LOSS_CODES = {CrossEntropyLoss: 0, MSELoss: 1, BCEWithLogitsLoss: 2}
ACT_CODES = {None: 0, "relu": 1, "sigmoid": 2, "tanh": 3}


def divergence(value, epoch, batch, steps, optimizer):
    return DivergenceError(f"loss became {value} at epoch {epoch}, batch {batch + 1} of {steps}; "
                           f"lower the learning rate (now {optimizer.lr}) or check the data")


class GenericEpoch:
    """One epoch, layer by layer from Python."""

    def __init__(self, model, loss, optimizer, x, y, labels, batch_size, augment=None, rng=None):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.batches = Batches(model.be, x, y, labels, batch_size)
        self.steps = self.batches.steps
        self.augment, self.rng = augment, rng
        self._augmented = {}

    def _augment(self, xb):
        """The augmented copy of batch ``xb`` (made on the host, copied to a reused device buffer
        on a device backend); ``xb`` itself, a view of the data set, is left unchanged."""
        out = self.augment(self.model.be.to_host(xb), self.rng)
        if isinstance(xb, np.ndarray):
            return out
        key = (tuple(out.shape), out.dtype.str)
        dev = self._augmented.get(key)
        if dev is None:
            dev = self._augmented[key] = self.model.be.empty(out.shape, out.dtype)
        self.model.be.copy_into(dev, out)
        return dev

    def run(self, epoch, order, on_batch_end):
        """Train on every batch of ``order``; returns (sum of per-sample losses, number correct)."""
        model, loss, be = self.model, self.loss, self.model.be
        total_loss, correct = 0.0, 0
        if order is not None:
            order = be.to_device(order)      # one upload per epoch on a device backend
        for b in range(self.steps):
            xb, yb, lb = self.batches.get(b, order)
            if self.augment is not None:
                xb = self._augment(xb)
            out = model._forward(xb, training=True)
            value = loss.compute(out, yb)
            if not np.isfinite(value):
                raise divergence(value, epoch, b, self.steps, self.optimizer)
            total_loss += value * out.shape[0]
            if lb is not None:
                correct += be.count_correct(out, lb)
            model._backward(loss.grad, need_input_grad=False, accumulate=False)
            self.optimizer.step()
            on_batch_end(b, total_loss)
        return total_loss, correct


class DenseStackEpoch:
    """One epoch of a dense stack in compiled code (see the module docstring)."""

    chunk = 64   # batches per compiled call when nothing needs to run between batches

    @classmethod
    def build(cls, model, loss, optimizer, x, y, labels, batch_size, per_batch_callbacks,
              augment=None):
        """The plan, or None when the model, loss, optimizer or backend does not fit it (also
        with data augmentation or a class-weighted loss: the generic loop handles those)."""
        steps_fn = getattr(model.be, "dense_stack_steps", None)
        if steps_fn is None or type(loss) not in LOSS_CODES or not model._steps:
            return None
        if augment is not None or getattr(loss, "weight", None) is not None:
            return None
        layers = model._steps[1:] if isinstance(model._steps[0], Flatten) else model._steps
        if not layers or not all(isinstance(l, Dense) for l in layers):
            return None
        return cls(model, loss, optimizer, x, y, labels, batch_size, layers, per_batch_callbacks)

    def __init__(self, model, loss, optimizer, x, y, labels, batch_size, layers, per_batch_callbacks):
        self.model, self.optimizer, self.batch_size = model, optimizer, batch_size
        self.steps_fn = model.be.dense_stack_steps
        self.loss_code = LOSS_CODES[type(loss)]
        dt = model.dtype
        self.x = np.ascontiguousarray(x.reshape(len(x), -1))
        self.n = len(x)
        self.steps = -(-self.n // batch_size)
        self.labels = labels if labels is not None else np.zeros(0, np.int64)
        self.targets = y if self.loss_code != 0 else np.zeros((0, 0), dt)
        table, ws_off = [], 0
        for layer in layers:
            table.append([layer.weight.offset, layer.bias.offset, layer.in_features,
                          layer.out_features, ACT_CODES[layer.fused_activation], ws_off])
            ws_off += batch_size * layer.out_features
        self.table = np.array(table, dtype=np.int64)
        self.ws, self.dws = np.empty(ws_off, dt), np.empty(ws_off, dt)
        self.xb = np.empty((batch_size, self.x.shape[1]), dt)
        self.lb = np.empty(batch_size, np.int64)
        self.tb = np.empty((batch_size, y.shape[1] if y.ndim == 2 else 0), dt)
        self.stats = np.zeros(3)
        self.fold_sgd = optimizer.foldable_into_gemm(model)
        self.chunk = self.chunk if self.fold_sgd and not per_batch_callbacks else 1

    def run(self, epoch, order, on_batch_end):
        model, opt, stats = self.model, self.optimizer, self.stats
        order = np.arange(self.n) if order is None else order
        stats[:2] = 0
        for first in range(0, self.steps, self.chunk):
            stop = min(self.steps, first + self.chunk)
            threads.use_pool("numba")   # the GEMMs split over Numba's threads, BLAS on one
            self.steps_fn(self.x, self.labels, self.targets, order, first, stop, self.batch_size,
                          model.flat_params, model.flat_grads, self.table, self.ws, self.dws,
                          self.xb, self.lb, self.tb, self.loss_code, len(self.labels) > 0,
                          opt.lr, self.fold_sgd, stats, threads.numba_threads())
            if stats[2] >= 0:
                raise divergence("NaN or Inf", epoch, int(stats[2]), self.steps, opt)
            if self.fold_sgd:
                opt.step_count += stop - first
            else:
                opt.step()
            on_batch_end(stop - 1, stats[0])
        return float(stats[0]), int(stats[1])


class Batches:
    """Mini-batches of (x, targets, labels) gathered into buffers reused from batch to batch.

    The data go to the device once; ``get(b, order)`` returns batch ``b`` of the permutation
    ``order`` (or of the data in order when ``order`` is None) without allocating.
    """

    def __init__(self, be, x, y, labels, batch_size):
        self.be, self.n, self.batch_size = be, len(x), batch_size
        self.steps = max(1, math.ceil(self.n / batch_size))
        self.arrays = [be.to_device(a) if a is not None else None for a in (x, y, labels)]
        self._buffers = {}

    def get(self, b, order=None):
        start, stop = b * self.batch_size, min(self.n, (b + 1) * self.batch_size)
        if order is None:
            return tuple(a[start:stop] if a is not None else None for a in self.arrays)
        idx = order[start:stop]
        bufs = self._buffers.get(len(idx))
        if bufs is None:
            bufs = self._buffers[len(idx)] = [
                self.be.empty((len(idx),) + a.shape[1:], a.dtype) if a is not None else None
                for a in self.arrays]
        for a, buf in zip(self.arrays, bufs):
            if a is not None:
                self.be.take_rows(a, idx, buf)
        return tuple(bufs)
