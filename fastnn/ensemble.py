"""Ensembles of models: bootstrap aggregating (bagging).

>>> ens = fn.ensemble.Bagging(lambda seed: fn.models.mlp(..., seed=seed), n=5, seed=0)
>>> ens.fit(x, y, epochs=10, optimizer="adam", lr=1e-3, verbose=0)
>>> ens.predict(x_test).argmax(axis=1), ens.evaluate(x_test, y_test)["accuracy"]

Members train in this process, in local processes (``n_jobs=2`` or ``executor="processes"``) or
on a Dask cluster (``executor="dask"`` or a ``distributed.Client``), see :mod:`fastnn.executors`;
every executor gives the same members.
"""
import numpy as np

from .executors import get_executor
from .optim import Optimizer


def softmax(z):
    """Row-wise softmax of a host array (N, K), max-subtracted, in float64."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Bagging:
    """Bootstrap aggregating (Breiman): ``n`` models, each trained on its own bootstrap sample
    of the training set (``len(x)`` rows drawn with replacement), predicting together.

    Parameters
    ----------
    make_model : callable ``make_model(seed) -> Sequential``
        Builds a fresh, untrained member; called with a different seed for each member (drawn
        from the ensemble's ``seed``).
    n : int >= 1
        Number of members.
    seed : int or None, default 0
        Seeds the member seeds and the bootstrap samples: the same seed gives the same ensemble.
    average : {"probabilities", "outputs"}, default "probabilities"
        What :meth:`predict` averages: the members' softmax probabilities (classification with
        logit outputs) or their raw outputs (regression, or models ending in a softmax).
    n_jobs : int or None, default None
        Members trained at once in local worker processes (None or 1: one after another here).
    executor : None, "sequential", "processes", "dask", distributed.Client or Executor
        Where members train (:func:`fastnn.executors.get_executor`); the untrained member and its
        bootstrap sample travel to the worker (cloudpickle: optimizer factories may be lambdas)
        and the trained member comes back.
    n_threads : int or None
        Threads each member trains with (default 1 in parallel executors).

    Attributes
    ----------
    models : list of Sequential
        The members (rebuilt by each :meth:`fit`).
    histories : list of History
        One per member, from the last :meth:`fit`.
    samples : list of ndarray of int
        The bootstrap row indices of each member, from the last :meth:`fit`.
    """

    def __init__(self, make_model, n, seed=0, average="probabilities", n_jobs=None,
                 executor=None, n_threads=None):
        if int(n) != n or n < 1:
            raise ValueError(f"Bagging needs n >= 1 members, got {n!r}")
        if average not in ("probabilities", "outputs"):
            raise ValueError(f"average must be 'probabilities' or 'outputs', got {average!r}")
        self.make_model, self.n, self.seed, self.average = make_model, int(n), seed, average
        self.n_jobs, self.executor, self.n_threads = n_jobs, executor, n_threads
        self.member_seeds = [int(s) for s in
                             np.random.default_rng(seed).integers(0, 2**31 - 1, size=self.n)]
        self.models = [make_model(s) for s in self.member_seeds]
        self.histories, self.samples = [], []
        self._fitted = False

    def fit(self, x, y, **fit_kwargs):
        """Train every member on a bootstrap sample of ``(x, y)``.

        ``fit_kwargs`` go to each member's :meth:`Sequential.fit` (epochs, batch_size, lr,
        validation_data, ...). ``optimizer`` must be a name or a factory
        ``f(parameters) -> Optimizer`` (each member needs its own optimizer). Calling fit again
        starts over from fresh members. Returns ``self``.

        Raises
        ------
        RuntimeError
            When a member's worker kept dying (see :mod:`fastnn.executors`).
        """
        optimizer = fit_kwargs.pop("optimizer", "sgd")
        if isinstance(optimizer, Optimizer):
            raise ValueError("Bagging.fit needs an optimizer name or a factory f(parameters) -> "
                             "Optimizer, not one Optimizer instance: each member trains its own")
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"x and y must hold the same number (> 0) of samples, got {len(x)} "
                             f"and {len(y)}")
        if self._fitted:
            self.models = [self.make_model(s) for s in self.member_seeds]
        rng = np.random.default_rng(self.seed)
        rng.integers(0, 2**31 - 1, size=self.n)          # the member seeds come first
        self.samples = [rng.integers(0, len(x), size=len(x)) for _ in self.models]
        shared = (x, y, optimizer, fit_kwargs)
        trained = [None] * self.n
        with get_executor(self.executor, self.n_jobs, self.n_threads) as ex:
            for i, value, lost in ex.run(_fit_member, shared, list(zip(self.models, self.samples))):
                if lost is not None:
                    raise RuntimeError(f"bagging member {i} could not be trained: {lost}")
                trained[i] = value
        self.models = [model for model, _ in trained]
        self.histories = [history for _, history in trained]
        self._fitted = True
        return self

    def member_predictions(self, x, batch_size=256):
        """Array (n, N, ...) of what each member contributes: its softmax probabilities or raw
        outputs, per ``average``."""
        outs = [m.predict(x, batch_size=batch_size) for m in self.models]
        if self.average == "probabilities":
            outs = [softmax(o) for o in outs]
        return np.stack([np.asarray(o, dtype=np.float64) for o in outs])

    def predict(self, x, batch_size=256):
        """The members' mean softmax probabilities (``average="probabilities"``) or mean raw
        outputs (``"outputs"``) for every row of ``x``, float64 (N, ...)."""
        return self.member_predictions(x, batch_size).mean(axis=0)

    def evaluate(self, x, y, batch_size=256):
        """``{"accuracy": float}`` of the averaged prediction's arg-max against integer labels
        ``y``; with ``average="probabilities"`` also ``"loss"``, the mean negative log of the
        averaged probability of the true class."""
        y = np.asarray(y)
        p = self.predict(x, batch_size)
        result = {"accuracy": float(np.mean(p.argmax(axis=1) == y))}
        if self.average == "probabilities":
            result["loss"] = float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-300))))
        return result

    def __repr__(self):
        return f"Bagging(n={self.n}, seed={self.seed!r}, average={self.average!r})"


def _fit_member(shared, item):
    """Train one member on its bootstrap rows; returns ``(model, history)`` (in a worker the
    model is the worker's trained copy)."""
    x, y, optimizer, fit_kwargs = shared
    model, idx = item
    opt = optimizer if isinstance(optimizer, str) else optimizer(model.parameters())
    return model, model.fit(x[idx], y[idx], optimizer=opt, **fit_kwargs)
