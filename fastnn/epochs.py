"""How ``fit`` runs an epoch: layer by layer from Python, or as one compiled epoch.

``LoopEpoch`` calls each step's forward/backward (``model.forward_batch`` /
``model.backward_batch``), the loss and the optimizer from Python; it works for every model,
backend, loss and optimizer, and is the oracle for the fast path.

``CompiledEpoch`` (the *compiled epoch*, the only name of the fast path) is used when the
backend declares it (``be.COMPILED_EPOCH_LOSSES`` holds the loss's ``kind``), the model is a
chain of Dense layers (each with its fused activation, after an optional leading Flatten),
and neither data augmentation nor class weights are on: the model is described once as a
table of :data:`~fastnn.kernels.contract.COMPILED_LAYER` records over the flat buffers, and
``be.compiled_epoch_steps`` runs whole ranges of mini-batches. Plain SGD is folded into the
weight-gradient GEMMs; any other optimizer runs after each batch.

:func:`make_epoch` chooses; ``fit(..., compiled=False)`` forces the loop, ``compiled=True``
demands the compiled epoch (ValueError saying why when it cannot run).
"""
import math

import numpy as np

from . import threads
from .errors import DivergenceError
from .kernels.contract import COMPILED_LAYER, Activation, EpochData, EpochWork, Loss
from .layers import Dense, Flatten
from .optim import SGD


def divergence(value, epoch, batch, steps, optimizer):
    return DivergenceError(f"loss became {value} at epoch {epoch}, batch {batch + 1} of {steps}; "
                           f"lower the learning rate (now {optimizer.lr}) or check the data")


def make_epoch(model, loss, optimizer, x, y, labels, batch_size, per_batch_callbacks,
               augment=None, rng=None, compiled=None):
    """The epoch runner ``fit`` uses: a CompiledEpoch when ``compiled`` is None (if it can run)
    or True (required), else a LoopEpoch."""
    if compiled is not False:
        reason = CompiledEpoch.unsupported(model, loss, augment)
        if reason is None:
            return CompiledEpoch(model, loss, optimizer, x, y, labels, batch_size,
                                 per_batch_callbacks)
        if compiled:
            raise ValueError(f"fit(compiled=True): the compiled epoch cannot run this model: {reason}")
    return LoopEpoch(model, loss, optimizer, x, y, labels, batch_size, augment=augment, rng=rng)


class LoopEpoch:
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
            out = model.forward_batch(xb, training=True)
            value = loss.compute(out, yb)
            if not np.isfinite(value):
                raise divergence(value, epoch, b, self.steps, self.optimizer)
            total_loss += value * out.shape[0]
            if lb is not None:
                correct += be.count_correct(out, lb)
            model.backward_batch(loss.grad, need_input_grad=False, accumulate=False)
            self.optimizer.step()
            on_batch_end(b, total_loss)
        return total_loss, correct


class CompiledEpoch:
    """One epoch of a dense stack in compiled code (see the module docstring)."""

    chunk = 64   # batches per compiled call when nothing needs to run between batches

    @staticmethod
    def unsupported(model, loss, augment=None):
        """Why the compiled epoch cannot train ``model`` with ``loss`` (a sentence), or None."""
        be = model.be
        if loss.kind is None or loss.kind not in be.COMPILED_EPOCH_LOSSES:
            return f"backend {be.NAME!r} has no compiled epoch for {loss!r}"
        if augment is not None:
            return "data augmentation runs in the layer-by-layer loop"
        if not all(layer.trainable for layer in model.layers):
            return "frozen layers (trainable=False) run in the layer-by-layer loop"
        if loss.weight is not None:
            return "class-weighted losses run in the layer-by-layer loop"
        steps = model.steps[1:] if model.steps and isinstance(model.steps[0].layer, Flatten) \
            else model.steps
        if not steps or not all(isinstance(s.layer, Dense) for s in steps):
            return "it compiles chains of Dense layers (with fused sigmoid/tanh/ReLU) only"
        return None

    def __init__(self, model, loss, optimizer, x, y, labels, batch_size, per_batch_callbacks):
        self.model, self.optimizer, self.batch_size = model, optimizer, batch_size
        self.loss_code = int(loss.kind)   # a plain int: typing an IntEnum costs ~20 us a call
        dt = model.dtype
        x = np.ascontiguousarray(x.reshape(len(x), -1))
        self.n = len(x)
        self.steps = -(-self.n // batch_size)
        steps = [s for s in model.steps if isinstance(s.layer, Dense)]
        self.layers = np.zeros(len(steps), COMPILED_LAYER)
        offset = 0
        threads.use_backend(model.be)     # the plan may time GEMMs: in the backend's pool
        for record, (layer, act) in zip(self.layers, steps):
            record["weight"], record["bias"] = layer.weight.offset, layer.bias.offset
            record["n_in"], record["n_out"] = layer.in_features, layer.out_features
            record["act"] = Activation.IDENTITY if act is None else act
            record["work"] = offset
            record["gemm"] = model.be.dense_gemm_plan(batch_size, layer.in_features,
                                                      layer.out_features, dt,
                                                      threads.numba_threads())
            offset += batch_size * layer.out_features
        self.data = EpochData(
            x=x, labels=labels if labels is not None else np.zeros(0, np.int64),
            targets=y if self.loss_code != Loss.CROSS_ENTROPY else np.zeros((0, 0), dt),
            order=np.arange(self.n), params=model.flat_params, grads=model.flat_grads)
        self.work = EpochWork(ws=np.empty(offset, dt), dws=np.empty(offset, dt),
                              xb=np.empty((batch_size, x.shape[1]), dt),
                              lb=np.empty(batch_size, np.int64),
                              tb=np.empty((batch_size, y.shape[1] if y.ndim == 2 else 0), dt))
        self.stats = np.zeros(3)
        self.fold_sgd = isinstance(optimizer, SGD) and optimizer.foldable_into_gemm(model)
        self.chunk = self.chunk if self.fold_sgd and not per_batch_callbacks else 1

    def run(self, epoch, order, on_batch_end):
        model, opt, stats = self.model, self.optimizer, self.stats
        data = self.data if order is None else self.data._replace(order=order)
        stats[:2] = 0
        threads.use_backend(model.be)
        for first in range(0, self.steps, self.chunk):
            stop = min(self.steps, first + self.chunk)
            model.be.compiled_epoch_steps(self.layers, data, self.work, self.loss_code, first,
                                          stop, opt.lr, self.fold_sgd, stats,
                                          threads.numba_threads())
            if stats[2] >= 0:
                raise divergence("NaN or Inf", epoch, int(stats[2]), self.steps, opt)
            if self.fold_sgd:
                opt.count_steps(stop - first)
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
