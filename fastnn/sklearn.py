"""scikit-learn estimators over fastnn models (needs scikit-learn: ``pip install fastnn[sklearn]``).

``MLPClassifier`` and ``MLPRegressor`` take scikit-learn's MLP constructor parameters with their
meanings, and fit the same network (same layer sizes, activations, output unit, Glorot-uniform
initialisation drawn from ``random_state`` exactly as scikit-learn draws it, same loss, same
L2 term, same solvers and schedules, same stopping rules), trained by :func:`fastnn.training.fit`
(the compiled epoch on the cpu backend). ``NeuralNetClassifier`` and ``NeuralNetRegressor`` wrap
any fastnn architecture (``module`` returns its layers), so CNNs go into Pipelines too.

>>> from fastnn.sklearn import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0).fit(X, y)  # doctest: +SKIP

Where the solvers differ from scikit-learn's (all within rounding of the trajectory):

* ``solver="adam"``: PyTorch's Adam adds ``epsilon`` to sqrt(v / (1 - beta_2**t)), scikit-learn
  to sqrt(v): the optimizer's ``eps`` is set to ``epsilon / sqrt(1 - beta_2**t)`` before each
  step (a per-batch callback), so the updates are scikit-learn's.
* ``solver="sgd"``: PyTorch's momentum buffer holds gradients, scikit-learn's velocity holds
  ``-lr * gradient``; the buffer is rescaled whenever the learning rate changes
  ("invscaling", "adaptive"), so the updates are scikit-learn's.
* ``solver="lbfgs"``: :class:`fastnn.optim.LBFGS` (PyTorch's L-BFGS with the strong-Wolfe line
  search, ``history_size=10`` as scipy's default ``maxcor``) instead of scipy's L-BFGS-B:
  ``max_iter`` iterations, ``max_fun`` cost evaluations, ``tol`` on max|gradient|.
* Computations run in ``dtype`` (float32 by default), not in the dtype of X.
"""
import contextlib
import numbers
import warnings

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (_check_partial_fit_first_call, check_classification_targets,
                                      type_of_target, unique_labels)
from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                      validate_data)

from . import losses, optim, threads
from .callbacks import Callback
from .layers import Dense, ReLU, Sigmoid, Tanh
from .model import Sequential

ACTIVATIONS = {"identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
"""scikit-learn's hidden activations and the fastnn layer of each (identity: none)."""


# ------------------------------------------------------------------------- shared helpers

@contextlib.contextmanager
def _thread_count(n):
    """Run the block with ``n`` threads (OpenBLAS and this thread's Numba count), then restore."""
    if n is None:
        yield
        return
    old = threads.get_num_threads()
    threads.set_num_threads(n)
    try:
        yield
    finally:
        threads.set_num_threads(old)


def _as_dense(X):
    return X.toarray() if hasattr(X, "toarray") else X


def _seed(random_state):
    """An int seed for fastnn's own streams (shuffling, dropout) drawn from ``random_state``."""
    return int(random_state.randint(np.iinfo(np.int32).max))


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class _ClassifierTargets:
    """scikit-learn's classifier targets: a LabelBinarizer of ``classes_``; the output unit and
    the fastnn loss per kind of target (multiclass: softmax and cross-entropy on label indices;
    binary: one logistic unit; multilabel: one logistic unit per label, binary cross-entropy)."""

    def __init__(self, binarizer):
        self.binarizer = binarizer
        self.multiclass = binarizer.y_type_ == "multiclass"
        self.out_activation = "softmax" if self.multiclass else "logistic"

    def n_outputs(self):
        return len(self.binarizer.classes_) if self.binarizer.y_type_ != "binary" else 1

    def encode(self, y):
        """(fastnn targets, one-hot or 0/1 matrix (N, n_outputs) float64) of labels ``y``."""
        onehot = self.binarizer.transform(y).astype(np.float64)
        targets = onehot.argmax(axis=1).astype(np.int64) if self.multiclass else onehot
        return targets, onehot

    def loss(self):
        return losses.CrossEntropyLoss() if self.multiclass else losses.BCEWithLogitsLoss()

    def proba(self, logits):
        """Class probabilities (N, n_classes) float64 from the network's logits."""
        z = np.asarray(logits, dtype=np.float64)
        if self.multiclass:
            return _softmax(z)
        if self.binarizer.y_type_ == "binary":          # 1 - p would round to 0
            return np.hstack([expit(-z), expit(z)])
        return expit(z)

    def log_proba(self, logits):
        """``log(proba)``, as scikit-learn's (-inf where a probability rounds to 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.proba(logits))

    def labels(self, logits):
        """Predicted labels (scikit-learn's: arg-max, or probability > 0.5 per logistic unit)."""
        z = np.asarray(logits, dtype=np.float64)
        if self.multiclass:
            return self.binarizer.classes_[z.argmax(axis=1)]
        scores = expit(z)
        return self.binarizer.inverse_transform(scores.ravel() if z.shape[1] == 1 else scores)


class _WeightedLoss(losses.Loss):
    """scikit-learn's sample-weighted loss of one batch: ``sum_i w_i l_i / sum_i w_i`` with the
    gradient ``w_i (a_i - y_i) / sum_i w_i`` w.r.t. the logits, for the three output units
    (softmax + cross-entropy, logistic + binary cross-entropy, identity + half squared error).

    The targets are (N, K + 1): the one-hot / 0-1 / real targets and the weight as the last
    column, so that ``fit`` shuffles and batches weights with their samples. Computed in NumPy
    on the host (``kind`` None: ``fit`` runs the layer-by-layer loop). ``on_batch(sw_sum, n)``
    is called for every batch before its update (the L2 term scales with the batch's weight).
    """

    def __init__(self, out_activation, on_batch=None):
        super().__init__()
        self.out_activation, self.on_batch = out_activation, on_batch

    def check(self, out_shape, y):
        if np.shape(y) != (out_shape[0], out_shape[-1] + 1):
            raise ValueError(f"weighted targets of shape {np.shape(y)}; expected "
                             f"{(out_shape[0], out_shape[-1] + 1)}")

    def compute(self, out, y):
        be = self.be
        z = np.asarray(be.to_host(out), dtype=np.float64)
        yb = np.asarray(be.to_host(y), dtype=np.float64)
        t, w = yb[:, :-1], yb[:, -1]
        sw = w.sum()
        if self.on_batch is not None:
            self.on_batch(sw, len(w))
        if self.out_activation == "softmax":
            per_sample, a = -(t * _log_softmax(z)).sum(axis=1), _softmax(z)
        elif self.out_activation == "logistic":
            per_sample = (np.logaddexp(0.0, z) - t * z).sum(axis=1)
            a = expit(z)
        else:
            per_sample, a = 0.5 * ((z - t) ** 2).sum(axis=1), z
        scale = 1.0 / sw if sw > 0 else 0.0
        grad = self._grad_buffer(out)
        be.copy_into(grad, ((a - t) * (w * scale)[:, None]).astype(out.dtype))
        return float(per_sample @ w * scale)


class _L2Term(Callback):
    """scikit-learn's ``alpha``: the L2 term ``0.5 * alpha * ||W||^2 / sum of the batch's sample
    weights`` (its size without weights) on the weights only, added to every batch's loss; its
    gradient is the optimizer's ``weight_decay`` of the weights' group, set before each batch.

    As a callback it follows the batches of unweighted training (it knows their sizes); with
    sample weights the :class:`_WeightedLoss` reports each batch (:meth:`batch`) instead.
    :meth:`penalty` is the epoch's mean of the term, per sample, as scikit-learn's ``loss_``.
    """

    def __init__(self, alpha, model, group, n, batch_size, follow_batches):
        self.alpha, self.group, self.n, self.batch_size = alpha, group, n, batch_size
        self.weights = [layer.weight for layer in model.layers if isinstance(layer, Dense)]
        self.be = model.be
        self.total = 0.0
        if follow_batches:
            self.on_batch_end = self._after_batch
            self.on_epoch_begin = self._before_epoch

    def batch(self, sw_sum, n_b):
        """Set the weight decay of the coming batch and add its term to the epoch's total."""
        squares = sum(self.be.sum_of_squares(w.data) for w in self.weights)
        self.group["weight_decay"] = self.alpha / sw_sum if sw_sum > 0 else 0.0
        if sw_sum > 0:
            self.total += 0.5 * self.alpha * squares * n_b / sw_sum

    def _size(self, b):
        return min(self.batch_size, self.n - b * self.batch_size)

    def _before_epoch(self, epoch, logs=None):
        self.batch(self._size(0), self._size(0))

    def _after_batch(self, b, logs=None):
        if self._size(b + 1) > 0:
            self.batch(self._size(b + 1), self._size(b + 1))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_penalty, self.total = self.total / self.n, 0.0


class _AdamEpsilon(Callback):
    """scikit-learn's Adam adds ``epsilon`` to sqrt(v), PyTorch's (fastnn's) to
    sqrt(v / (1 - beta_2**t)): before every step the groups' ``eps`` is set to
    ``epsilon / sqrt(1 - beta_2**t)``, which makes the updates scikit-learn's."""

    def __init__(self, optimizer, epsilon, beta_2):
        self.optimizer, self.epsilon, self.beta_2 = optimizer, epsilon, beta_2

    def _set(self):
        t = self.optimizer.step_count + 1
        for group in self.optimizer.param_groups:
            group["eps"] = self.epsilon / np.sqrt(1.0 - self.beta_2 ** t)

    def on_epoch_begin(self, epoch, logs=None):
        self._set()

    def on_batch_end(self, batch, logs=None):
        self._set()


class _Iterations(Callback):
    """Hands every epoch's end to the estimator (scikit-learn's end of an iteration)."""

    def __init__(self, estimator, l2):
        self.estimator, self.l2 = estimator, l2

    def on_epoch_end(self, epoch, logs=None):
        penalty = self.l2.epoch_penalty if self.l2 is not None else 0.0
        if self.estimator._end_iteration(logs["loss"], penalty):
            self.model.stop_training = True


# ------------------------------------------------------------------------------ the MLPs

class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share (see the module docstring)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, dtype="float32", n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.n_threads = n_threads

    # -- parameters ------------------------------------------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _check_params(self):
        choices = {"activation": ACTIVATIONS, "solver": ("sgd", "adam", "lbfgs"),
                   "learning_rate": ("constant", "invscaling", "adaptive")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, got {getattr(self, name)!r}")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, numbers.Integral)
                                              and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {self.batch_size!r}")
        ranges = {"alpha": (0, np.inf), "learning_rate_init": (1e-300, np.inf),
                  "power_t": (0, np.inf), "tol": (0, np.inf), "momentum": (0, 1),
                  "validation_fraction": (0, 1 - 1e-12), "beta_1": (0, 1 - 1e-12),
                  "beta_2": (0, 1 - 1e-12), "epsilon": (1e-300, np.inf)}
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and lo <= value <= hi):
                raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
        for name in ("max_iter", "max_fun", "n_iter_no_change"):
            value = getattr(self, name)
            if not ((isinstance(value, numbers.Integral) and value >= 1)
                    or (name == "n_iter_no_change" and value == np.inf)):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.dtype not in ("float32", "float64", np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    # -- the network -----------------------------------------------------------------------
    def _build(self, n_features, n_outputs):
        """The fastnn Sequential with scikit-learn's Glorot-uniform initial weights and biases
        (bound sqrt(6 / (fan_in + fan_out)), sqrt(2 / ...) for logistic), drawn from
        ``self._random_state`` in scikit-learn's order."""
        units = [n_features] + self._hidden_sizes() + [n_outputs]
        act = ACTIVATIONS[self.activation]
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:])):
            layers.append(Dense(fan_in, fan_out))
            if act is not None and i < len(units) - 2:
                layers.append(act())
        model = Sequential(layers, backend=self.backend, dtype=self.dtype, seed=0)
        factor = 2.0 if self.activation == "logistic" else 6.0
        values = []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            values.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)))
            values.append(self._random_state.uniform(-bound, bound, fan_out))
        model.set_weights(np.concatenate([v.ravel() for v in values]))
        self.n_layers_ = len(units)
        self.n_outputs_ = n_outputs
        return model

    def _dense_layers(self):
        return [layer for layer in self.model_.layers if isinstance(layer, Dense)]

    @property
    def coefs_(self):
        """Weight matrices, ``coefs_[i]`` of shape (units of layer i, units of layer i + 1):
        views of the fastnn model's parameters on the host backends, copies on cuda."""
        return [self.model_.be.to_host(layer.weight.data) for layer in self._dense_layers()]

    @property
    def intercepts_(self):
        """Bias vectors, ``intercepts_[i]`` of shape (units of layer i + 1,)."""
        return [self.model_.be.to_host(layer.bias.data) for layer in self._dense_layers()]

    def _optimizer_for(self, model):
        """The fastnn optimizer of ``solver``, with the weights in a group of their own when
        alpha > 0 (the L2 term's weight decay, set per batch by :class:`_L2Term`)."""
        params = model.parameters()
        weights = [layer.weight for layer in model.layers if isinstance(layer, Dense)]
        groups = params if not self.alpha else [
            {"params": weights, "weight_decay": 0.0},
            {"params": [p for p in params if p not in weights], "weight_decay": 0.0}]
        if self.solver == "sgd":
            return optim.SGD(groups, lr=self.learning_rate_init, momentum=self.momentum,
                             nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return optim.Adam(groups, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                          eps=self.epsilon)

    # -- fitting ---------------------------------------------------------------------------
    def _validate_sample_weight(self, sample_weight, X):
        if sample_weight is None:
            return None
        return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._check_params()
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        X = _as_dense(X)
        sample_weight = self._validate_sample_weight(sample_weight, X)
        targets, plain = self._targets(y)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self.model_ = self._build(X.shape[1], plain.shape[1])
            self.n_iter_, self.t_ = 0, 0
            self.out_activation_ = self._out_activation()
            if self.solver != "lbfgs":           # scikit-learn's stochastic solvers only
                self.loss_curve_, self._no_improvement_count = [], 0
                self.validation_scores_ = [] if self.early_stopping else None
                self.best_validation_score_ = -np.inf if self.early_stopping else None
                self.best_loss_ = None if self.early_stopping else np.inf
        elif plain.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {plain.shape[1]} outputs; the fitted network has "
                             f"{self.n_outputs_} (fit again without warm_start)")
        with _thread_count(self.n_threads):
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, targets, plain, sample_weight)
            else:
                self._fit_stochastic(X, y, targets, plain, sample_weight, incremental)
        weights = self.model_.get_weights()
        if not np.isfinite(weights).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _fit_stochastic(self, X, y, targets, plain, sample_weight, incremental):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        model = self.model_
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._optimizer_for(model)
        x_val = y_val = sw_val = None
        if self.early_stopping:
            # as scikit-learn: stratified for a binary classifier only (one output unit)
            stratify = plain.astype(bool) if is_classifier(self) and plain.shape[1] == 1 else None
            parts = train_test_split(X, targets, plain, y,
                                     *(() if sample_weight is None else (sample_weight,)),
                                     random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify)
            X, x_val, targets, _, plain, _, _, y_val = parts[:8]
            if sample_weight is not None:
                sample_weight, sw_val = parts[8:]
            if len(x_val) < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
        self._validation = (x_val, y_val, sw_val)
        if not incremental or model.seed == 0:   # fastnn's shuffling stream, drawn after
            model.seed = _seed(self._random_state)  # scikit-learn's draws (init, split)
            model.rng = np.random.default_rng(model.seed)
            model.bind_rng(model.rng)
        n = len(X)
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        l2 = None
        if self.alpha:
            l2 = _L2Term(self.alpha, model, self._optimizer.param_groups[0], n, batch_size,
                         follow_batches=sample_weight is None)
        if sample_weight is None:
            loss = self._fastnn_loss()
        else:
            loss = _WeightedLoss(self.out_activation_, None if l2 is None else l2.batch)
            targets = np.hstack([plain, sample_weight[:, None]])
        self._epochs_in_call, self._converged = 0, False
        self._n_train = n
        callbacks = ([l2] if l2 is not None else []) + [_Iterations(self, l2)]
        if self.solver == "adam":
            callbacks.append(_AdamEpsilon(self._optimizer, self.epsilon, self.beta_2))
        best = None
        if self.early_stopping:
            self._best_state = None
        try:
            model.fit(X, targets, loss=loss, optimizer=self._optimizer,
                      epochs=1 if incremental else self.max_iter, batch_size=batch_size,
                      shuffle=self.shuffle, seed=None, callbacks=callbacks, verbose=0)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if self.early_stopping:
            best = self._best_state
            if best is not None:
                model.set_state(best)
            del self._best_state
        del self._validation
        if not incremental and not self._converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning)

    def _end_iteration(self, data_loss, penalty):
        """scikit-learn's end of an iteration (epoch): the loss, the no-improvement count, the
        learning-rate schedule and the stopping rule. True to stop training."""
        self._epochs_in_call += 1
        self.n_iter_ = self._epochs_in_call
        self.loss_ = float(data_loss) / self._loss_scale() + penalty
        self.t_ += self._n_train
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count()
        opt = self._optimizer
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._set_lr(self.learning_rate_init / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count > self.n_iter_no_change:
            what = ("Validation score did not improve" if self.early_stopping
                    else "Training loss did not improve")
            msg = (f"{what} more than tol={self.tol:f} for {self.n_iter_no_change} "
                   "consecutive epochs.")
            if self.solver == "sgd" and self.learning_rate == "adaptive" and opt.lr > 1e-6:
                self._set_lr(opt.lr / 5.0)
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"{msg} Setting learning rate to {opt.lr:f}")
            else:
                if self.verbose:
                    print(msg + " Stopping.")
                self._converged = True
                return True
        return False

    def _set_lr(self, lr):
        """Change the SGD learning rate keeping scikit-learn's velocity ``-lr * buffer``: the
        PyTorch-style momentum buffer is scaled by old / new."""
        opt = self._optimizer
        buf = opt.state.get("momentum_buffer")
        if buf is not None and opt.step_count and lr > 0:
            self.model_.be.scale_inplace(buf, opt.lr / lr)
        opt.lr = float(lr)

    def _update_no_improvement_count(self):
        if self.early_stopping:
            x_val, y_val, sw_val = self._validation
            score = self._score(x_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = self.model_.get_state()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, targets, plain, sample_weight):
        """Full-batch L-BFGS (:class:`fastnn.optim.LBFGS`) on the loss plus the L2 term: the
        gradient is scikit-learn's (for several regression outputs that of half the squared
        error summed over outputs, whose value the cost is; ``loss_`` is scikit-learn's)."""
        model = self.model_
        be = model.be
        if sample_weight is None:
            loss, y, sw_sum = self._fastnn_loss().bind(be), targets, len(X)
        else:
            loss = _WeightedLoss(self.out_activation_).bind(be)
            y, sw_sum = np.hstack([plain, sample_weight[:, None]]), sample_weight.sum()
        x = model.check_inputs(X)
        y_dev = be.to_device(loss.prepare_targets(y, plain.shape[1], model.dtype)
                             if sample_weight is None else np.asarray(y, model.dtype))
        x_dev = be.to_device(x)
        weights = [layer.weight for layer in self._dense_layers()]
        coef = self.alpha / sw_sum

        def closure():
            model.zero_grad()
            out = model.forward_batch(x_dev, training=True)
            value = loss.compute(out, y_dev)
            model.backward_batch(loss.grad, need_input_grad=False, accumulate=False)
            closure.data_loss = value
            if self.alpha:
                for w in weights:
                    g = np.asarray(be.to_host(w.grad))
                    be.copy_into(w.grad, g + coef * np.asarray(be.to_host(w.data)))
                closure.penalty = 0.5 * coef * sum(be.sum_of_squares(w.data) for w in weights)
            return value + closure.penalty

        closure.penalty = 0.0

        opt = optim.LBFGS(model.parameters(), lr=1, max_iter=self.max_iter,
                          max_eval=self.max_fun, tolerance_grad=self.tol,
                          tolerance_change=np.finfo(model.dtype).eps, history_size=10,
                          line_search_fn="strong_wolfe")
        opt.step(closure)
        self.n_iter_ = opt.n_iter
        closure()
        self.loss_ = float(closure.data_loss) / self._loss_scale() + closure.penalty
        if opt.n_iter >= self.max_iter or opt.func_evals >= self.max_fun:
            warnings.warn(f"lbfgs failed to converge after {opt.n_iter} iteration(s) and "
                          f"{opt.func_evals} cost evaluation(s); increase max_iter / max_fun or "
                          "scale the data.", ConvergenceWarning)

    def _loss_scale(self):
        """What the fastnn loss is divided by to give scikit-learn's loss_ (1; the regressor's
        squared loss is also a mean over the outputs)."""
        return 1

    def fit(self, X, y, sample_weight=None):
        """Fit the network to ``X`` and ``y``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            Converted to ``dtype`` (a sparse matrix is made dense).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (a label indicator matrix for multi-label) or real targets.
        sample_weight : array-like of shape (n_samples,), default None
            Non-negative weights: each batch's loss is ``sum w_i l_i / sum w_i``, its L2 term
            divided by the batch's ``sum w_i``, as scikit-learn. With weights, training runs
            the layer-by-layer loop (not the compiled epoch).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_partial_fit(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # -- prediction ------------------------------------------------------------------------
    def _logits(self, X, check_input=True):
        check_is_fitted(self)
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"],
                              dtype=(np.float64, np.float32), reset=False)
        with _thread_count(self.n_threads):
            return self.model_.predict(_as_dense(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier trained by fastnn.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
    momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon,
    n_iter_no_change, max_fun
        As :class:`sklearn.neural_network.MLPClassifier` (same defaults and meanings).
    backend : {"numpy", "cpu", "cuda"} or None
        fastnn backend (None: the default one).
    dtype : {"float32", "float64"}, default "float32"
        Precision of the network and of training.
    n_threads : int or None
        Threads for fit and predict (OpenBLAS and this thread's Numba count, restored
        afterwards); None keeps the current setting.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_, feature_names_in_, n_layers_, n_outputs_ : as scikit-learn's
    coefs_ : list of ndarray (units of layer i, units of layer i + 1); intercepts_ : list
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, n_iter_, t_
        As scikit-learn's (``loss_curve_`` etc. None for lbfgs, as there).
    out_activation_ : {"softmax", "logistic"}
    model_ : fastnn.Sequential
        The fitted network (it outputs logits: the output activation is applied by
        ``predict_proba``).
    """

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes "
                                     f"as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, y

    def _encoder(self):
        check_is_fitted(self)
        return _ClassifierTargets(self._label_binarizer)

    def _targets(self, y):
        return self._encoder().encode(y)

    def _out_activation(self):
        return self._encoder().out_activation

    def _fastnn_loss(self):
        return self._encoder().loss()

    def _score(self, X, y, sample_weight=None):
        logits = self._logits(X, check_input=False)
        if not np.isfinite(logits).all():
            return np.nan
        return accuracy_score(y, self._encoder().labels(logits), sample_weight=sample_weight)

    def predict(self, X):
        """Predicted labels, shape (n_samples,) or (n_samples, n_classes) for multi-label."""
        return self._encoder().labels(self._logits(X))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes) float64, in the order of ``classes_``."""
        return self._encoder().proba(self._logits(X))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba` (-inf where a probability rounds to 0, as scikit-learn)."""
        return self._encoder().log_proba(self._logits(X))

    @available_if(lambda est: est._check_partial_fit())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``; the optimizer's state is kept from call to call.

        ``classes`` (every label of all calls) is required on the first call.
        """
        if _check_partial_fit_first_call(self, classes):
            y_kind = type_of_target(y)
            self._label_binarizer = LabelBinarizer().fit(
                y if y_kind.startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor trained by fastnn.

    Parameters are scikit-learn's (see :class:`MLPClassifier` for fastnn's own ``backend``,
    ``dtype`` and ``n_threads``); ``loss`` is "squared_error" (scikit-learn's "poisson" is not
    implemented: ValueError). The attributes are :class:`MLPClassifier`'s without ``classes_``;
    ``out_activation_`` is "identity". ``loss_`` is scikit-learn's squared loss, half the mean
    over samples *and outputs*; the gradient, as scikit-learn's, is that of half the sum over
    outputs (fastnn's MSELoss).
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, dtype="float32", n_threads=None):
        self.loss = loss
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend, dtype=dtype, n_threads=n_threads)

    def _check_params(self):
        if self.loss != "squared_error":
            raise ValueError(f"loss={self.loss!r} is not implemented in fastnn.sklearn; "
                             "use 'squared_error'")
        super()._check_params()

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _targets(self, y):
        plain = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return plain, plain

    def _out_activation(self):
        return "identity"

    def _fastnn_loss(self):
        return losses.MSELoss()

    def _loss_scale(self):
        return self.n_outputs_

    def _score(self, X, y, sample_weight=None):
        pred = self._logits(X, check_input=False)
        if not np.isfinite(pred).all():
            return np.nan
        return r2_score(y, self._shape(pred), sample_weight=sample_weight)

    def _shape(self, pred):
        pred = np.asarray(pred, dtype=np.float64)
        return pred.ravel() if pred.shape[1] == 1 else pred

    def predict(self, X):
        """Predictions, shape (n_samples,) or (n_samples, n_outputs), float64."""
        return self._shape(self._logits(X))

    @available_if(lambda est: est._check_partial_fit())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``; the optimizer's state is kept from call to call."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


# ------------------------------------------------------------------ any fastnn architecture

def _default_module(input_shape, n_outputs):
    """The module of ``module=None``: Flatten, Dense(features, 100), ReLU, Dense(100, n_outputs)."""
    from .layers import Flatten
    return [Flatten(), Dense(int(np.prod(input_shape)), 100), ReLU(), Dense(100, n_outputs)]


class _BaseNeuralNet(BaseEstimator):
    """What NeuralNetClassifier and NeuralNetRegressor share (see NeuralNetClassifier)."""

    def __init__(self, module=None, *, input_shape=None, optimizer="adam", lr=None,
                 max_epochs=10, batch_size=32, loss=None, callbacks=None, shuffle=True,
                 random_state=None, verbose=0, backend=None, dtype="float32", n_threads=None):
        self.module = module
        self.input_shape = input_shape
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.loss = loss
        self.callbacks = callbacks
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.backend = backend
        self.dtype = dtype
        self.n_threads = n_threads

    def _check_kw(self):
        return dict(accept_sparse=["csr", "csc"], allow_nd=self.input_shape is None,
                    dtype=(np.float64, np.float32))

    def _samples(self, X):
        """``X`` (checked: 2-D, or n-D images without ``input_shape``) shaped for the module."""
        X = _as_dense(X)
        if self.input_shape is None:
            return X
        shape = tuple(int(s) for s in self.input_shape)
        if X.ndim != 2 or X.shape[1] != int(np.prod(shape)):
            raise ValueError(f"input_shape={shape} needs X of shape (n_samples, "
                             f"{int(np.prod(shape))}), got {X.shape}")
        return X.reshape((len(X),) + shape)

    def _make_model(self, sample_shape, n_outputs, random_state):
        module = self.module if self.module is not None else _default_module
        layers = module(tuple(sample_shape), int(n_outputs))
        return Sequential(layers, backend=self.backend, dtype=self.dtype, seed=_seed(random_state))

    def _make_optimizer(self, model):
        opt = self.optimizer
        if isinstance(opt, str):
            lr = self.lr
            if lr is None and opt.lower() in ("sgd", "momentum", "nesterov"):
                lr = 0.01
            return optim.get(opt, model.parameters(), lr=lr)
        return opt(model.parameters()) if self.lr is None else opt(model.parameters(), lr=self.lr)

    def _fit(self, X, y, sample_weight, incremental):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} does not take sample_weight; use "
                             "MLPClassifier / MLPRegressor, or class weights in `loss`")
        first = not incremental or not hasattr(self, "model_")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=not is_classifier(self),
                             reset=first, **self._check_kw())
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        x = self._samples(X)
        self._check_targets(y, incremental)
        targets, plain = self._targets(y)
        if first:
            rs = check_random_state(self.random_state)
            self.model_ = self._make_model(x.shape[1:], plain.shape[1], rs)
            self.optimizer_ = self._make_optimizer(self.model_)
            self.loss_curve_ = []
        loss = self.loss if self.loss is not None else self._fastnn_loss()
        with _thread_count(self.n_threads):
            history = self.model_.fit(
                x, targets, loss=loss, optimizer=self.optimizer_,
                epochs=1 if incremental else self.max_epochs, batch_size=self.batch_size,
                shuffle=self.shuffle, seed=None, callbacks=list(self.callbacks or ()),
                verbose=self.verbose)
        self.history_ = history
        self.n_iter_ = len(history.epoch)
        self.loss_curve_ += history.history.get("loss", [])
        if self.loss_curve_:
            self.loss_ = self.loss_curve_[-1]
        return self

    def fit(self, X, y):
        """Train a new network for ``max_epochs`` epochs (the callbacks may stop it earlier).

        X : array-like (n_samples, n_features) (reshaped to ``input_shape``), or
        (n_samples, ...) samples of the module's input shape when ``input_shape`` is None.
        """
        return self._fit(X, y, None, incremental=False)

    def _logits(self, X):
        check_is_fitted(self)
        x = self._samples(validate_data(self, X, reset=False, **self._check_kw()))
        with _thread_count(self.n_threads):
            return self.model_.predict(x)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class NeuralNetClassifier(ClassifierMixin, _BaseNeuralNet):
    """A classifier over any fastnn architecture, for Pipelines and searches (CNNs too).

    Parameters
    ----------
    module : callable or None
        ``module(input_shape, n_outputs)`` returns the list of fastnn layers, given the
        per-sample input shape (a tuple: ``input_shape``, or ``X.shape[1:]``) and the number of
        outputs (classes; 1 for a binary problem). The network outputs logits: no final
        Softmax. None: Flatten, Dense(features, 100), ReLU, Dense(100, n_outputs).
    input_shape : tuple of int or None
        Per-sample shape that 2-D ``X`` rows are reshaped to (e.g. (1, 28, 28) for a CNN).
    optimizer : str or Optimizer class, default "adam"
        A name of :func:`fastnn.optim.get` ("sgd", "momentum", "nesterov", "adam", ...) or a
        class called as ``optimizer(params, lr=lr)``.
    lr : float or None
        Learning rate (None: the optimizer's default; 0.01 for the SGD family).
    max_epochs, batch_size : int
    loss : fastnn Loss or None
        None: cross-entropy (multiclass) or binary cross-entropy of logistic units (binary,
        multi-label), as MLPClassifier.
    callbacks : list of fastnn callbacks (e.g. ``fn.EarlyStopping(monitor="loss")``)
    shuffle : bool; random_state : int, RandomState or None; verbose : 0, 1 or 2 (fit's)
    backend, dtype, n_threads : as MLPClassifier

    Attributes
    ----------
    classes_, n_features_in_ : as scikit-learn's
    model_ : fastnn.Sequential; optimizer_ : its optimizer (kept by partial_fit)
    history_ : fastnn History of the last fit / partial_fit call
    loss_curve_ : training loss per epoch over every call; loss_ : the last; n_iter_ : epochs
        of the last call
    """

    def _check_targets(self, y, incremental):
        check_classification_targets(y)
        if not incremental or not hasattr(self, "classes_"):
            if incremental and getattr(self, "_partial_classes", None) is not None:
                self._label_binarizer = LabelBinarizer().fit(self._partial_classes)
            else:
                self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        elif len(np.setdiff1d(unique_labels(y), self.classes_)):
            raise ValueError(f"`y` has classes not in `self.classes_` {self.classes_}")

    def _encoder(self):
        check_is_fitted(self)
        return _ClassifierTargets(self._label_binarizer)

    def _targets(self, y):
        return self._encoder().encode(y)

    def _fastnn_loss(self):
        return self._encoder().loss()

    def predict(self, X):
        """Predicted labels (n_samples,), or (n_samples, n_classes) for multi-label."""
        return self._encoder().labels(self._logits(X))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes) float64 (softmax / logistic of logits)."""
        return self._encoder().proba(self._logits(X))

    def predict_log_proba(self, X):
        return self._encoder().log_proba(self._logits(X))

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, keeping the network and optimizer state; ``classes``
        (every label of all calls) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._partial_classes = self.classes_
            del self.classes_
            self.__dict__.pop("model_", None)
        return self._fit(X, y, None, incremental=True)

    def fit(self, X, y):
        self._partial_classes = None
        return super().fit(X, y)

    fit.__doc__ = _BaseNeuralNet.fit.__doc__

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NeuralNetRegressor(RegressorMixin, _BaseNeuralNet):
    """A regressor over any fastnn architecture; parameters and attributes as
    :class:`NeuralNetClassifier` (``n_outputs`` is the number of targets; the loss defaults to
    :class:`fastnn.MSELoss`; ``predict`` gives (n_samples,) for one target)."""

    def _check_targets(self, y, incremental):
        pass

    def _targets(self, y):
        plain = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return plain, plain

    def _fastnn_loss(self):
        return losses.MSELoss()

    def predict(self, X):
        pred = np.asarray(self._logits(X), dtype=np.float64)
        return pred.ravel() if pred.shape[1] == 1 else pred

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, keeping the network and optimizer state."""
        return self._fit(X, y, None, incremental=True)
