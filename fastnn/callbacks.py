"""Callbacks: code that fit runs at the start and end of training, epochs and batches.

A callback subclasses :class:`Callback` and overrides the hooks it needs; ``self.model`` is set
before training starts and ``self.model.stop_training = True`` ends training after the epoch.
A callback that overrides ``on_batch_end`` makes the cpu backend's compiled epoch return to
Python after every batch (slower); the others cost nothing per batch.
"""
import math
import sys
import time


class Callback:
    """Hooks called by fit; ``self.model`` is set before training starts."""

    model = None

    def on_train_begin(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_end(self, logs=None): ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode`` is "min", "max" or "auto" (max for accuracies). With ``restore_best`` the weights
    of the best epoch are put back at the end of training.
    """

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, restore_best=False, mode="auto"):
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(float(min_delta))
        self.restore_best = restore_best
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.sign = 1.0 if mode == "min" else -1.0

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.wait, self.best_weights = math.inf, None, 0, None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which fit does not log; "
                           f"available: {sorted(logs)}")
        value = self.sign * logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ProgressBar(Callback):
    """A one-line text progress bar on stderr (a terminal only), redrawn at most ten times a second."""

    def __init__(self, steps, width=30, stream=None):
        self.steps, self.width, self.stream = steps, width, stream or sys.stderr
        self._last = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.epoch = time.perf_counter(), epoch

    def on_batch_end(self, batch, logs=None):
        if not self.stream.isatty():
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and batch + 1 < self.steps:
            return
        self._last = now
        done = int(self.width * (batch + 1) / self.steps)
        bar = "=" * done + "." * (self.width - done)
        self.stream.write(f"\r  [{bar}] {batch + 1}/{self.steps} loss {logs['loss']:.4f} "
                          f"{now - self.start:.1f} s")
        if batch + 1 == self.steps:
            self.stream.write("\r" + " " * (self.width + 50) + "\r")
        self.stream.flush()
