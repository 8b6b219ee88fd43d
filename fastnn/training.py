"""The fit loop and History; the callbacks live in :mod:`fastnn.callbacks`."""
import json
import math
import time

import numpy as np

from . import losses as losses_mod
from . import optim
from .errors import ShapeError
from .callbacks import Callback, LearningRateScheduler, ModelCheckpoint
from .io import atomic_write_text
from .epochs import Batches, make_epoch
from .optim.closure_fit import closure_epoch
from .progress import ProgressBar, check_verbose


class History:
    """Per-epoch metrics of a fit: ``history.history["loss"]``, ``["val_accuracy"]`` ...

    Keys: loss, accuracy (integer labels only), val_loss, val_accuracy (with validation data),
    lr, time (seconds of training in the epoch, validation excluded).
    """

    def __init__(self):
        self.history = {}
        self.epoch = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def to_dict(self):
        """``{"epoch": [...], <metric>: [...]}``, JSON-serialisable (saved in checkpoints)."""
        return {"epoch": list(self.epoch), **{k: list(v) for k, v in self.history.items()}}

    @classmethod
    def from_dict(cls, d):
        """The History :meth:`to_dict` describes."""
        h = cls()
        h.epoch = [int(e) for e in d.get("epoch", [])]
        h.history = {k: list(v) for k, v in d.items() if k != "epoch"}
        return h

    def to_json(self, path):
        atomic_write_text(path, json.dumps({"epoch": self.epoch, **self.history}, indent=1))

    def to_csv(self, path):
        keys = list(self.history)
        rows = [",".join(["epoch"] + keys)]
        for i, e in enumerate(self.epoch):
            rows.append(",".join([str(e)] + [repr(self.history[k][i]) for k in keys]))
        atomic_write_text(path, "\n".join(rows) + "\n")

    def plot(self, path):
        """Learning curves (loss; accuracy) for training and validation, saved as a PNG."""
        from .plotting import plot_history
        plot_history(self, path)


class TrainingState:
    """What resuming a fit exactly needs, kept by ``fit`` as ``model.training_state`` and
    written by ``model.save(path, optimizer=...)`` (so by ``ModelCheckpoint``) as JSON.

    Attributes
    ----------
    epoch : int, the last epoch completed; seed : the fit's ``seed`` (int or None);
    rng : numpy Generator, the fit's random stream (shuffling, dropout, augmentation);
    schedules : the schedules of the fit's LearningRateScheduler callbacks, in order;
    history : History of the fit (with the epochs of the run it resumed).
    """

    def __init__(self, seed, rng, schedules, history):
        self.epoch, self.seed, self.rng = 0, seed, rng
        self.schedules, self.history = list(schedules), history

    def to_dict(self):
        """JSON-serialisable state: epoch, seed, the generator's state, the schedules'
        ``state_dict()``, the history."""
        return {"epoch": self.epoch, "seed": self.seed, "rng": self.rng.bit_generator.state,
                "schedules": [_schedule_state(s) for s in self.schedules],
                "history": self.history.to_dict()}

    def __getstate__(self):            # pickled as its saved form, without the optimizer
        return {"saved": self.to_dict()}

    def __setstate__(self, state):
        self.__dict__.update(resumed_state(state["saved"]).__dict__)


def _schedule_state(schedule):
    """A schedule's ``state_dict()``; a loaded TrainingState holds these dicts themselves."""
    return schedule if isinstance(schedule, dict) else schedule.state_dict()


def resumed_state(saved):
    """A TrainingState from the dict :meth:`TrainingState.to_dict` wrote; the schedules stay
    dicts, restored into the resumed fit's schedules by ``fit(initial_epoch=...)``."""
    rng = np.random.default_rng()
    rng.bit_generator.state = saved["rng"]
    state = TrainingState(saved["seed"], rng, saved["schedules"],
                          History.from_dict(saved["history"]))
    state.epoch = int(saved["epoch"])
    return state


def _resume(model, initial_epoch, seed, schedules):
    """The model's saved TrainingState when ``initial_epoch`` is the epoch it was saved after
    (its generator state and schedules then continue), else None; ValueError when they differ."""
    state = getattr(model, "training_state", None)
    if initial_epoch == 0 or state is None:
        return None
    if state.epoch != initial_epoch:
        raise ValueError(f"fit(initial_epoch={initial_epoch}): the model's training state is "
                         f"from epoch {state.epoch}; pass initial_epoch={state.epoch} to resume "
                         "it exactly")
    if seed is not None and state.seed is not None and seed != state.seed:
        raise ValueError(f"fit(seed={seed}) cannot resume a run trained with seed={state.seed}; "
                         f"pass seed={state.seed} (or None)")
    if len(schedules) != len(state.schedules):
        raise ValueError(f"the resumed run had {len(state.schedules)} LearningRateScheduler "
                         f"callback(s), this fit has {len(schedules)}")
    for schedule, saved in zip(schedules, state.schedules):
        schedule.load_state_dict(_schedule_state(saved))
    return state


def epoch_line(epoch, logs, n_val):
    """The course texts' epoch line: "Epoch 3: 9712 / 10000, loss 0.104, 41.2 s"."""
    parts = [f"Epoch {epoch}:"]
    if "val_accuracy" in logs:
        parts.append(f"{round(logs['val_accuracy'] * n_val)} / {n_val},")
    parts.append(f"loss {logs['loss']:.4f},")
    if "accuracy" in logs:
        parts.append(f"accuracy {logs['accuracy']:.4f},")
    if "val_loss" in logs:
        parts.append(f"val_loss {logs['val_loss']:.4f},")
    if "val_accuracy" in logs:
        parts.append(f"val_accuracy {logs['val_accuracy']:.4f},")
    parts.append(f"{logs['time']:.2f} s")
    return " ".join(parts)


# ------------------------------------------------------------------------------- fit


def prepare_data(model, loss, x, y, name="x"):
    """Validate ``x`` and ``y`` once (shape, dtype, NaN/Inf, labels) and convert them for the kernels.

    Returns ``(x, targets, labels)``: ``labels`` is the int64 class vector when ``y`` holds
    integer labels (it gives the accuracy), else None.
    """
    x = model.check_inputs(x, name)
    if len(x) == 0:
        raise ShapeError(f"{name} holds no samples; fit and evaluate need at least one")
    out_shape = (len(x),) + model.output_shape(x.shape[1:])
    y_name = "y" if name == "x" else name.replace("x", "y", 1)
    if len(np.shape(y)) == 0 or len(y) != len(x):
        raise ShapeError(f"{name} has {len(x)} samples but {y_name} has "
                         f"{len(y) if np.ndim(y) else 'no'} entries")
    loss.check(out_shape, y)
    y = np.asarray(y)
    labels = y.astype(np.int64) if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) else None
    return x, loss.prepare_targets(y, out_shape[-1], model.dtype), labels


def check_frozen(model, optimizer):
    """ValueError when ``optimizer`` would update a frozen layer (``trainable = False``)."""
    held = {id(p) for p in getattr(optimizer, "params", ())}
    for i, layer in enumerate(model.layers):
        if not layer.trainable and any(id(p) in held for p in layer.params):
            raise ValueError(f"layer {i} ({layer!r}) is frozen (trainable=False) but the "
                             f"optimizer holds its parameters; build the optimizer on "
                             f"model.trainable_parameters()")


def fit(model, x, y, loss="cross_entropy", optimizer="sgd", epochs=1, batch_size=32,
        validation_data=None, validation_split=0.0, shuffle=True, seed=None, callbacks=(),
        verbose=1, lr=None, augment=None, class_weight=None, compiled=None, initial_epoch=0,
        curriculum=None):
    """Train ``model`` with mini-batch gradient descent.

    Parameters
    ----------
    x : ndarray (N, ...) float; y : (N,) integer labels or (N, K) targets
    loss : Loss or name ("cross_entropy", "mse", "nll", "bce_with_logits")
    optimizer : Optimizer or name ("sgd", "momentum", "nesterov", "adam", ...) built with ``lr``
        (``lr=None``: the optimizer's own default, 0.01 for the SGD family)
    epochs, batch_size : int (``batch_size=None``: the whole training set, one batch)
    validation_data : (x_val, y_val) or None
    validation_split : float in [0, 1): hold out this last fraction of (x, y) instead
    shuffle : bool; seed : int or None (None continues the model's own random stream)
    callbacks : list of Callback (ModelCheckpoint ones run last at the end of an epoch, so
        they save the state after the others, e.g. a schedule's step)
    verbose : 0 silent, 1 progress bar (see :mod:`fastnn.progress`) and epoch lines, 2 lines only
    augment : callable ``aug(x_batch, rng) -> batch`` or None (see :mod:`fastnn.augment`), applied
        to every training batch of images (N, C, H, W) with the fit's random stream; never to
        validation data, and the data set itself is never modified
    class_weight : ``{label: weight}`` (missing labels weigh 1), an array of one weight per
        class, or None; the training loss (cross-entropy or NLL) becomes the weighted mean
        ``sum_i w[y_i] loss_i / sum_i w[y_i]``; validation and ``evaluate`` stay unweighted
    compiled : None, True or False
        How epochs run (see :mod:`fastnn.epochs`): None uses the compiled epoch when the backend,
        model, loss and options allow it, else the layer-by-layer loop; False always the loop;
        True demands the compiled epoch (ValueError saying why it cannot run). Both give the
        same weights up to floating-point rounding.
    initial_epoch : int, default 0
        Epochs already done (as Keras): training runs epochs ``initial_epoch + 1 .. epochs``,
        numbered so in History and callbacks. On a model loaded from a file that
        ``ModelCheckpoint`` / ``save(optimizer=...)`` wrote after epoch ``initial_epoch`` (or
        right after such a fit), the run resumes exactly: the saved random stream (shuffling,
        dropout, augmentation) continues, the schedules of the LearningRateScheduler callbacks
        get their saved state, and History starts with the saved epochs. Restore the optimizer
        first with ``model.load_optimizer_state(path, optimizer)``.

    curriculum : None or a curriculum (:class:`fastnn.curriculum.Stochastic`)
        Draws each epoch's sample order (``curriculum.order(epoch, epochs, n, rng)``) instead of
        the shuffled one.

    Returns
    -------
    History

    Raises
    ------
    DivergenceError (a FloatingPointError) naming epoch and batch when the loss becomes NaN or
    Inf; the weights are left as they were before that batch's update.
    """
    loss = losses_mod.get(loss).bind(model.be)
    model.loss = loss
    if isinstance(optimizer, str):
        if lr is None and optimizer.lower() in ("sgd", "momentum", "nesterov"):
            lr = 0.01                         # SGD has no default rate; Keras's
        optimizer = optim.get(optimizer, model.trainable_parameters(), lr=lr)
    check_frozen(model, optimizer)
    batch_size = len(x) if batch_size is None else batch_size
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
    if not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch must be in [0, epochs={epochs}], got {initial_epoch}")
    verbose = check_verbose(verbose)
    if validation_data is not None and validation_split:
        raise ValueError("pass either validation_data or validation_split, not both")
    if validation_data is None and validation_split:
        if not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
        n_val = max(1, int(round(len(x) * validation_split)))
        if n_val >= len(x):
            raise ShapeError(f"validation_split={validation_split} of {len(x)} samples leaves no "
                             "training sample")
        x, y, validation_data = x[:-n_val], y[:-n_val], (x[-n_val:], y[-n_val:])
    x, y, labels = prepare_data(model, loss, x, y)
    if validation_data is not None:
        val_data = prepare_data(model, loss, *validation_data, name="x_val")
    if augment is not None and x.ndim != 4:
        raise ShapeError(f"augment works on images (N, C, H, W), but x has shape {x.shape}")
    train_loss = loss
    if class_weight is not None:
        if not isinstance(loss, (losses_mod.CrossEntropyLoss, losses_mod.NLLLoss)):
            raise ValueError(f"class_weight needs CrossEntropyLoss or NLLLoss, not {loss!r}")
        if loss.weight is not None:
            raise ValueError(f"pass class weights either in class_weight or in {loss!r}, not both")
        weight = losses_mod.class_weight_vector(class_weight, model.output_shape(x.shape[1:])[-1])
        train_loss = type(loss)(weight=weight).bind(model.be)
    n = len(x)
    callbacks = list(callbacks)
    if verbose == 1:
        callbacks.append(ProgressBar())
    callbacks.sort(key=lambda cb: isinstance(cb, ModelCheckpoint))     # checkpoints last
    schedules = [cb.schedule for cb in callbacks if isinstance(cb, LearningRateScheduler)]
    resumed = _resume(model, initial_epoch, seed, schedules)
    if resumed is not None:        # the saved stream: the model's own one if the run used it
        seed = resumed.seed
    rng = np.random.default_rng(seed) if seed is not None else model.rng
    if resumed is not None:
        rng.bit_generator.state = resumed.rng.bit_generator.state
    model.bind_rng(rng)
    history = History.from_dict(resumed.history.to_dict()) if resumed is not None else History()
    model.history = history
    model.training_state = state = TrainingState(seed, rng, schedules, history)
    state.epoch = initial_epoch
    model.stop_training = False
    params = {"epochs": epochs, "steps": math.ceil(n / batch_size), "verbose": verbose}
    for cb in callbacks:
        cb.model, cb.params = model, params
        cb.on_train_begin()
    per_batch = any(getattr(cb.on_batch_end, "__func__", None) is not Callback.on_batch_end
                    for cb in callbacks if not isinstance(cb, ProgressBar))
    runner = (closure_epoch if isinstance(optimizer, optim.ClosureOptimizer) else make_epoch)(
        model, train_loss, optimizer, x, y, labels, batch_size, per_batch,
        augment=augment, rng=rng, compiled=compiled)
    try:
        for epoch in range(initial_epoch + 1, epochs + 1):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            start = time.perf_counter()
            order = curriculum.order(epoch, epochs, n, rng) if curriculum is not None \
                else rng.permutation(n) if shuffle else None

            def on_batch_end(b, loss_sum):
                logs = {"loss": loss_sum / min(n, (b + 1) * batch_size)}
                for cb in callbacks:
                    cb.on_batch_end(b, logs)

            total_loss, correct = runner.run(epoch, order, on_batch_end)
            train_time = time.perf_counter() - start
            logs = {"loss": total_loss / n}
            if labels is not None:
                logs["accuracy"] = correct / n
            if validation_data is not None:
                val = _evaluate_prepared(model, loss, *val_data)
                logs.update({"val_" + k: v for k, v in val.items()})
            logs["lr"] = optimizer.lr
            logs["time"] = train_time
            history.append(epoch, logs)
            state.epoch = epoch
            if verbose:
                print(epoch_line(epoch, logs, len(val_data[0]) if validation_data is not None else 0), flush=True)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    finally:                       # also after a DivergenceError or Ctrl-C
        model.bind_rng(model.rng)
        for cb in callbacks:
            cb.on_train_end()
    return history


def _evaluate_prepared(model, loss, x, y, labels, batch_size=256):
    batches = Batches(model.be, x, y, labels, batch_size)
    total, correct = 0.0, 0
    for b in range(batches.steps):
        xb, yb, lb = batches.get(b)
        out = model.forward_batch(xb, training=False)
        total += loss.compute(out, yb) * out.shape[0]
        if lb is not None:
            correct += model.be.count_correct(out, lb)
    result = {"loss": total / len(x)}
    if labels is not None:
        result["accuracy"] = correct / len(x)
    return result


def evaluate(model, x, y, loss=None, batch_size=256):
    """``{"loss": float, "accuracy": float}`` of ``model`` on (x, y); see Sequential.evaluate."""
    if loss is None:
        loss = model.loss if model.loss is not None else (
            "cross_entropy" if np.issubdtype(np.asarray(y).dtype, np.integer) else "mse")
    loss = losses_mod.get(loss).bind(model.be)
    return _evaluate_prepared(model, loss, *prepare_data(model, loss, x, y), batch_size=batch_size)
