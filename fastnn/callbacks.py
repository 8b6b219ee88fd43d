"""Callbacks: code that fit runs at the start and end of training, epochs and batches.

A callback subclasses :class:`Callback` and overrides the hooks it needs; ``self.model`` is set
before training starts and ``self.model.stop_training = True`` ends training after the epoch.
A callback that overrides ``on_batch_end`` makes the cpu backend's compiled epoch return to
Python after every batch (slower); the others cost nothing per batch.
"""
import math


class Callback:
    """Hooks called by fit; ``self.model`` and ``self.params`` (``{"epochs", "steps",
    "verbose"}``, as Keras) are set before training starts."""

    model = None
    params = None

    def on_train_begin(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_end(self, logs=None): ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode`` is "min", "max" or "auto" (max for accuracies). With ``restore_best`` the model of
    the best epoch is put back at the end of training: its weights and its non-trainable state
    (BatchNorm running statistics), see :meth:`Sequential.get_state`.
    """

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, restore_best=False, mode="auto"):
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(float(min_delta))
        self.restore_best = restore_best
        self.sign = _sign_for(monitor, mode)

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.wait, self.best_state = math.inf, None, 0, None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = self.sign * _logged(logs, self.monitor, self)
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = self.model.get_state()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_state is not None:
            self.model.set_state(self.best_state)


class ModelCheckpoint(Callback):
    """Save the model (and the optimizer state, when given) after each epoch, atomically.

    Parameters
    ----------
    path : str, may contain ``{epoch}`` and any logged metric, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``
    monitor : str, the metric that decides what "best" is
    save_best_only : bool, only write when ``monitor`` improved
    mode : "min", "max" or "auto" (max for accuracies)
    optimizer : Optimizer or None, saved with the model so training resumes exactly

    The file also holds the fit's training state (epoch, random stream, schedules, history;
    see :class:`fastnn.training.TrainingState`): load it with ``Sequential.load`` and
    ``load_optimizer_state``, then ``fit(..., initial_epoch=<saved epoch>)`` continues the run
    bit for bit. fit runs checkpoints after its other callbacks at the end of an epoch.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", optimizer=None):
        self.path, self.monitor, self.save_best_only = str(path), monitor, save_best_only
        self.sign = _sign_for(monitor, mode)
        self.optimizer = optimizer

    def on_train_begin(self, logs=None):
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            value = self.sign * _logged(logs, self.monitor, self)
            if not value < self.best:
                return
            self.best = value
        self.model.save(self.path.format(epoch=epoch, **logs), optimizer=self.optimizer)


class LearningRateScheduler(Callback):
    """Step a schedule of :mod:`fastnn.optim` (``LinearDecay`` ...) once per epoch, or once per
    batch when the schedule was made with ``per_batch=True``."""

    def __init__(self, schedule):
        self.schedule = schedule
        self.per_batch = getattr(schedule, "per_batch", False)
        if self.per_batch:          # a bound method, not a lambda, so the callback pickles
            self.on_batch_end = self._step_per_batch

    def _step_per_batch(self, batch, logs=None):
        self.schedule.step()

    def on_epoch_end(self, epoch, logs=None):
        if not self.per_batch:
            self.schedule.step()


class CSVLogger(Callback):
    """Append one CSV row of the epoch's logs per epoch to ``path`` (rewritten atomically)."""

    def __init__(self, path):
        self.path = str(path)
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        from .io import atomic_write_text
        if not self.rows:
            self.keys = list(logs)
            self.rows.append(",".join(["epoch"] + self.keys))
        self.rows.append(",".join([str(epoch)] + [repr(logs.get(k, "")) for k in self.keys]))
        atomic_write_text(self.path, "\n".join(self.rows) + "\n")


class WeightAveraging(Callback):
    """Polyak / exponential moving average of the weights, swapped in at the end of training.

    After every batch, ``avg <- decay * avg + (1 - decay) * w`` (``decay=None``: the plain running
    mean of all iterates, Polyak averaging). ``start_epoch`` delays the averaging. Runs the
    compiled cpu epoch batch by batch. BatchNorm running statistics are not averaged: they
    still describe the last weights; refresh them after training with forward passes over
    training batches (``model.forward(xb, training=True)``), as PyTorch's ``update_bn``.
    """

    def __init__(self, decay=0.999, start_epoch=1):
        self.decay, self.start_epoch = decay, start_epoch

    def on_train_begin(self, logs=None):
        self.average, self.count, self.epoch = None, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.epoch < self.start_epoch:
            return
        w = self.model.get_weights()
        self.count += 1
        if self.average is None:
            self.average = w
        else:
            rate = 1.0 / self.count if self.decay is None else 1.0 - self.decay
            self.average += rate * (w - self.average)

    def on_train_end(self, logs=None):
        if self.average is not None:
            self.model.set_weights(self.average)


def _sign_for(monitor, mode):
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return 1.0 if mode == "min" else -1.0


def _logged(logs, key, who):
    if key not in logs:
        raise KeyError(f"{type(who).__name__} monitors {key!r}, which fit does not log; "
                       f"available: {sorted(logs)}")
    return logs[key]
