"""Hyper-parameter search: every combination of a grid, or random draws from ranges, each trial
trained and scored on held-out data, run in this process, in local processes or on a Dask
cluster (:mod:`fastnn.executors`) with the same code.

>>> def build(hidden, lr):
...     model = fn.models.mlp([64, hidden, 10], backend="cpu", seed=0)
...     return model, {"lr": lr}                       # a model, and fit arguments of its own
>>> res = fn.search.random_search(build, {"hidden": [32, 64, 128],
...                                       "lr": fn.search.loguniform(1e-3, 1e-1)},
...                               (x, y), n_iter=16, epochs=20, optimizer="adam", patience=3,
...                               executor="dask", resume="search.jsonl")
>>> res.best_params, res.best_score, res.best_model
>>> res.to_csv("search.csv"); res.plot("search.png")

``build(**params)`` returns one of

* a :class:`fastnn.Sequential`: fitted with the search's fit arguments (``loss``, ``optimizer``
  as a name or a factory ``f(parameters) -> Optimizer``, ``epochs``, ``batch_size``, ``lr``...,
  anything :meth:`Sequential.fit` takes), validated on the held-out data every epoch, stopped
  early after ``patience`` epochs without a better validation loss (the best epoch's weights
  kept); its score is the validation accuracy (integer labels) or minus the validation loss;
* ``(model, fit_arguments)``: the same, with this trial's own fit arguments added (searched
  learning rates, batch sizes);
* any estimator with scikit-learn's ``fit(x, y, **fit_arguments)`` and ``score(x, y)`` (the
  ``fastnn.sklearn`` estimators, scikit-learn's own): its score is ``score`` on the held-out data.

The results table has one row (a dict) per trial, in trial order: ``trial``, ``params``,
``seed`` (the fit's seed), ``status`` ("ok"; "error" when the trial raised or diverged, with
``error`` saying what; "lost" when its worker kept dying), ``score``, ``val_loss``,
``val_accuracy``, ``loss`` (last training epoch), ``epochs``, ``seconds``, ``worker``. A trial
that fails never stops the others.

Resume. With ``resume=path`` every finished trial is appended to ``path`` (JSON lines, flushed
and fsynced) as soon as it finishes; a search started again with the same path, arguments and
seed reads the file and runs only the trials not in it ("lost" ones run again).
"""
import itertools
import json
import math
import os
import socket
import time

import numpy as np

from .executors import get_executor
from .io import atomic_open, atomic_write_text

# ----------------------------------------------------------------------------- distributions


class Distribution:
    """A range to draw one hyper-parameter from: ``sample(rng) -> value``."""

    def sample(self, rng):
        raise NotImplementedError


class uniform(Distribution):
    """Uniform on ``[low, high)``."""

    def __init__(self, low, high):
        self.low, self.high = _ordered(low, high, "uniform")

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def __repr__(self):
        return f"uniform({self.low!r}, {self.high!r})"


class loguniform(Distribution):
    """Log-uniform on ``[low, high)``, ``0 < low < high``: every decade equally likely (learning
    rates, weight decays)."""

    def __init__(self, low, high):
        self.low, self.high = _ordered(low, high, "loguniform")
        if self.low <= 0:
            raise ValueError(f"loguniform needs 0 < low < high, got low={low!r}")

    def sample(self, rng):
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def __repr__(self):
        return f"loguniform({self.low!r}, {self.high!r})"


class randint(Distribution):
    """Integers ``low, low + 1, ..., high - 1``, equally likely."""

    def __init__(self, low, high):
        if int(low) != low or int(high) != high or high <= low:
            raise ValueError(f"randint needs integers low < high, got {low!r}, {high!r}")
        self.low, self.high = int(low), int(high)

    def sample(self, rng):
        return int(rng.integers(self.low, self.high))

    def __repr__(self):
        return f"randint({self.low!r}, {self.high!r})"


class choice(Distribution):
    """One of ``values``, equally likely (a plain list in a search space means the same)."""

    def __init__(self, values):
        self.values = list(values)
        if not self.values:
            raise ValueError("choice needs at least one value")

    def sample(self, rng):
        return _plain(self.values[int(rng.integers(len(self.values)))])

    def __repr__(self):
        return f"choice({self.values!r})"


def _ordered(low, high, name):
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"{name} needs low < high, got {low!r}, {high!r}")
    return low, high


def _distribution(name, space):
    if isinstance(space, Distribution):
        return space
    if isinstance(space, list):
        return choice(space)
    if hasattr(space, "rvs"):                          # a frozen scipy.stats distribution
        return _Scipy(space)
    raise ValueError(f"parameter {name!r}: expected a list of values, a fastnn.search "
                     f"distribution (uniform, loguniform, randint, choice) or a scipy.stats "
                     f"distribution, got {space!r}")


class _Scipy(Distribution):
    def __init__(self, dist):
        self.dist = dist

    def sample(self, rng):
        return _plain(self.dist.rvs(random_state=rng))

    def __repr__(self):
        return repr(self.dist)


def _plain(value):
    """NumPy scalars as Python numbers (they go into the JSON log and the CSV)."""
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------- parameter sets


def grid(param_grid):
    """Every combination of ``param_grid``, a dict ``{name: list of values}`` (or a list of
    such dicts, one grid after another), the last name varying fastest."""
    grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
    sets = []
    for g in grids:
        if not isinstance(g, dict):
            raise ValueError(f"param_grid must be a dict {{name: list of values}} or a list of "
                             f"such dicts, got {g!r}")
        for name, values in g.items():
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") \
                    or len(list(values)) == 0:
                raise ValueError(f"param_grid[{name!r}] must be a non-empty list of values, "
                                 f"got {values!r}")
        names = list(g)
        for combo in itertools.product(*(list(g[n]) for n in names)):
            sets.append({n: _plain(v) for n, v in zip(names, combo)})
    return sets


def draws(distributions, n_iter, seed):
    """``n_iter`` parameter sets drawn from ``distributions`` ``{name: list or distribution}``
    with the random stream of ``seed``."""
    if int(n_iter) != n_iter or n_iter < 1:
        raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
    spaces = {name: _distribution(name, s) for name, s in distributions.items()}
    rng = np.random.default_rng(None if seed is None else [seed, 1])
    return [{name: d.sample(rng) for name, d in spaces.items()} for _ in range(int(n_iter))]


# ----------------------------------------------------------------------------- one trial


def _run_trial(shared, item):
    """Build, fit and score one parameter set; every exception becomes an "error" row.
    Returns ``(row, fitted model or None)``."""
    index, params, seed = item
    row = _empty_row(index, params, seed)
    start = time.perf_counter()
    model = None
    try:
        model, metrics = _fit_and_score(shared["build"](**params), shared, seed)
        row.update(metrics, status="ok")
    except Exception as e:                              # the trial failed, not the search
        model = None
        row.update(status="error", error=f"{type(e).__name__}: {e}")
    row["seconds"] = time.perf_counter() - start
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row, model


def _empty_row(index, params, seed):
    return {"trial": index, "params": params, "seed": seed, "status": None, "score": math.nan,
            "val_loss": math.nan, "val_accuracy": math.nan, "loss": math.nan, "epochs": None,
            "seconds": math.nan, "worker": "", "error": ""}


def _fit_and_score(made, shared, seed):
    from .callbacks import EarlyStopping
    from .model import Sequential
    from .optim import Optimizer

    x, y, xv, yv = shared["data"]
    fit_args = dict(shared["fit_params"])
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[1], dict):
        made, extra = made
        fit_args.update(extra)
    if not isinstance(made, Sequential):
        if not (hasattr(made, "fit") and hasattr(made, "score")):
            raise TypeError(f"build() must return a Sequential, (Sequential, fit arguments) or an "
                            f"estimator with fit and score, got {type(made).__name__}")
        made.fit(x, y, **fit_args)
        score = float(made.score(xv, yv))
        if not math.isfinite(score):
            raise FloatingPointError(f"diverged: validation score {score}")
        return made, {"score": score, "epochs": getattr(made, "n_iter_", None)}

    optimizer = fit_args.pop("optimizer", "sgd")
    if callable(optimizer) and not isinstance(optimizer, (str, Optimizer)):
        optimizer = optimizer(made.parameters())
    callbacks = list(fit_args.pop("callbacks", ()))
    if shared["patience"] is not None:
        callbacks.append(EarlyStopping("val_loss", patience=shared["patience"], restore_best=True))
    history = made.fit(x, y, optimizer=optimizer, validation_data=(xv, yv), seed=seed,
                       callbacks=callbacks, verbose=0, **fit_args)
    losses = history.history.get("loss", [])             # fit raises DivergenceError on NaN
    result = made.evaluate(xv, yv)
    if not math.isfinite(result["loss"]):
        raise FloatingPointError(f"diverged: validation loss {result['loss']}")
    metrics = {"val_loss": float(result["loss"]), "loss": float(losses[-1]) if losses else math.nan,
               "epochs": len(losses)}
    if "accuracy" in result:
        metrics["val_accuracy"] = float(result["accuracy"])
    metrics["score"] = metrics["val_accuracy"] if "accuracy" in result else -metrics["val_loss"]
    return made, metrics


# ----------------------------------------------------------------------------- the results


class SearchResult:
    """What a search found.

    Attributes
    ----------
    results : list of dict
        One row per trial, in trial order (see the module docstring for the keys).
    best_index : int or None
        Trial number of the best "ok" trial (highest score; the first on ties), None when no
        trial succeeded.
    best_params : dict or None
    best_score : float
    best_model : Sequential, estimator or None
        The best trial's fitted model (a trial read from a resume file is trained again, in this
        process, with its seed, when its model is asked for).
    """

    def __init__(self, results, best_model=None, refit=None):
        self.results = results
        ok = [r for r in results if r["status"] == "ok"]
        best = max(ok, key=lambda r: (r["score"], -r["trial"])) if ok else None
        self.best_index = None if best is None else best["trial"]
        self.best_params = None if best is None else dict(best["params"])
        self.best_score = math.nan if best is None else best["score"]
        self._best_model, self._refit = best_model, refit

    @property
    def best_model(self):
        if self._best_model is None and self.best_index is not None and self._refit is not None:
            self._best_model = self._refit(self.best_index)
        return self._best_model

    def columns(self):
        """The CSV columns: ``trial``, one ``param_<name>`` per parameter, then the metrics."""
        names = list(dict.fromkeys(n for r in self.results for n in r["params"]))
        rest = [k for k in _empty_row(0, {}, 0) if k not in ("trial", "params")]
        return ["trial"] + [f"param_{n}" for n in names] + rest

    def to_csv(self, path):
        """Write the table to ``path`` as CSV (atomically), one line per trial."""
        import csv
        import io
        columns = self.columns()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for r in self.results:
            flat = {**r, **{f"param_{k}": v for k, v in r["params"].items()}}
            writer.writerow(["" if flat.get(c) is None else flat.get(c, "") for c in columns])
        atomic_write_text(path, buffer.getvalue())

    def plot(self, path):
        """Save a PNG of the validation score per trial (failed trials marked at the bottom,
        the best one circled)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 4))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ok = [r for r in self.results if r["status"] == "ok"]
        failed = [r["trial"] for r in self.results if r["status"] != "ok"]
        ax.plot([r["trial"] for r in ok], [r["score"] for r in ok], "o", label="validation score")
        if failed:
            bottom = min([r["score"] for r in ok], default=0.0)
            ax.plot(failed, [bottom] * len(failed), "rx", label="failed (error or lost)")
        if self.best_index is not None:
            ax.plot([self.best_index], [self.best_score], "o", markersize=14, fillstyle="none",
                    color="k", label=f"best: {self.best_params}")
        ax.set_xlabel("trial")
        ax.set_ylabel("validation score")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        with atomic_open(path) as f:
            fig.savefig(f, format="png", dpi=100)

    def __repr__(self):
        counts = {s: sum(r["status"] == s for r in self.results) for s in ("ok", "error", "lost")}
        return (f"SearchResult({len(self.results)} trials {counts}, best_params="
                f"{self.best_params!r}, best_score={self.best_score!r})")


# ----------------------------------------------------------------------------- the resume log


def _key(params):
    return json.dumps(params, sort_keys=True, default=repr)


def _read_log(path, items):
    """The finished rows of the log at ``path`` ({trial: row}); the file is rewritten with only
    those (a line cut by an interrupted write is dropped). ValueError when a row's parameters
    are not this search's."""
    done = {}
    if path is None or not os.path.exists(path):
        return done
    with open(path) as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break                                    # the last write was interrupted
            raise ValueError(f"{path}: line {number + 1} is not a JSON results row") from None
        index = row.get("trial")
        ours = isinstance(index, int) and 0 <= index < len(items) \
            and _key(row.get("params")) == _key(items[index][1]) \
            and row.get("seed") == items[index][2]
        if not ours:
            raise ValueError(f"{path}: line {number + 1} is trial {index!r} with parameters "
                             f"{row.get('params')!r}, which is not a trial of this search (other "
                             f"parameters, seed or space); use another resume file")
        if row.get("status") in ("ok", "error"):
            row["params"] = items[index][1]
            done[index] = row
    atomic_write_text(path, "".join(json.dumps(r, default=repr) + "\n" for r in done.values()))
    return done


def _append(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row, default=repr) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- the searches


def grid_search(build, param_grid, data, *, executor=None, n_jobs=None, n_threads=None,
                validation_data=None, validation_split=0.2, patience=None, seed=0, resume=None,
                verbose=0, **fit_params):
    """Train and score ``build(**params)`` for every combination of ``param_grid``.

    Parameters
    ----------
    build : callable ``build(**params)``
        Returns a Sequential, ``(Sequential, fit arguments)`` or an estimator (see the module
        docstring). Must be picklable with cloudpickle for parallel executors.
    param_grid : dict ``{name: list of values}`` or list of such dicts
    data : (x, y)
        x ndarray (N, ...) float32 or float64; y (N,) integer labels or (N, K) targets.
    executor : None, "sequential", "processes", "dask", distributed.Client or Executor
        Where trials run (:func:`fastnn.executors.get_executor`).
    n_jobs : int or None
        Local worker processes (see :func:`~fastnn.executors.get_executor`).
    n_threads : int or None
        Threads per trial (default 1 in parallel executors).
    validation_data : (x_val, y_val) or None
        Held-out data to score on; None: a ``validation_split`` fraction of ``data``, drawn
        with ``seed``.
    patience : int or None
        Early stopping per trial (Sequential): stop after ``patience`` epochs without a lower
        validation loss and keep the best epoch's weights.
    seed : int or None
        Seeds the validation split and every trial's fit (trial seeds drawn from it).
    resume : path or None
        Results log written as trials finish; trials already in it are not run again.
    verbose : int
        1 prints one line per finished trial.
    **fit_params
        Fit arguments for every trial (Sequential.fit's, or the estimator's fit's).

    Returns
    -------
    SearchResult
    """
    return _search(build, grid(param_grid), data, executor, n_jobs, n_threads, validation_data,
                   validation_split, patience, seed, resume, verbose, fit_params)


def random_search(build, distributions, data, n_iter=10, *, executor=None, n_jobs=None,
                  n_threads=None, validation_data=None, validation_split=0.2, patience=None,
                  seed=0, resume=None, verbose=0, **fit_params):
    """Train and score ``build(**params)`` for ``n_iter`` parameter sets drawn at random.

    ``distributions`` is ``{name: list of values (equally likely) | uniform(a, b) |
    loguniform(a, b) | randint(a, b) | choice(values) | frozen scipy.stats distribution}``; the
    draws depend only on ``seed``. Other parameters as :func:`grid_search`.
    """
    return _search(build, draws(distributions, n_iter, seed), data, executor, n_jobs, n_threads,
                   validation_data, validation_split, patience, seed, resume, verbose, fit_params)


def _split(data, validation_data, validation_split, seed):
    x, y = (np.asarray(a) for a in data)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"data must be (x, y) with the same number (> 0) of samples, got "
                         f"{len(x)} and {len(y)}")
    if validation_data is not None:
        return x, y, np.asarray(validation_data[0]), np.asarray(validation_data[1])
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be in (0, 1) when no validation_data is given, "
                         f"got {validation_split!r}")
    n_val = max(1, int(round(len(x) * validation_split)))
    if n_val >= len(x):
        raise ValueError(f"validation_split={validation_split} leaves no training samples of "
                         f"{len(x)}")
    order = np.random.default_rng(None if seed is None else [seed, 0]).permutation(len(x))
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    return x[train], y[train], x[val], y[val]


def _search(build, param_sets, data, executor, n_jobs, n_threads, validation_data,
            validation_split, patience, seed, resume, verbose, fit_params):
    if patience is not None and (int(patience) != patience or patience < 1):
        raise ValueError(f"patience must be an integer >= 1 or None, got {patience!r}")
    shared = {"build": build, "data": _split(data, validation_data, validation_split, seed),
              "fit_params": fit_params, "patience": patience}
    seeds = np.random.default_rng(None if seed is None else [seed, 2]).integers(
        0, 2**31 - 1, size=len(param_sets))
    items = [(i, p, int(s)) for i, (p, s) in enumerate(zip(param_sets, seeds))]
    rows = _read_log(resume, items)
    todo = [item for item in items if item[0] not in rows]
    best = None                                      # (score, -trial, model) of the best so far
    with get_executor(executor, n_jobs, n_threads) as ex:
        for j, value, lost in ex.run(_run_trial, shared, todo):
            if lost is None:
                row, model = value
            else:
                row, model = _empty_row(*todo[j]), None
                row.update(status="lost", error=lost)
            rows[row["trial"]] = row
            if resume is not None:
                _append(resume, row)
            if row["status"] == "ok" and (best is None or (row["score"], -row["trial"]) > best[:2]):
                best = (row["score"], -row["trial"], model)
            if verbose:
                print(f"trial {row['trial']}: {row['status']} score={row['score']:.4g} "
                      f"{row['params']} {row['error']}".rstrip(), flush=True)
    result = SearchResult([rows[i] for i in range(len(items))],
                          refit=lambda index: _run_trial(shared, items[index])[1])
    if best is not None and -best[1] == result.best_index:
        result._best_model = best[2]
    return result
