"""fastnn.search and fastnn.executors in this process and in local worker processes: parameter
sets, the results table against trials retrained by hand, failing trials, early stopping, CSV,
plot, resume, and local worker processes that die. (Dask: tests/test_executors_dask.py.)"""
import csv
import json
import math
import os
import sys
import warnings

import numpy as np
import pytest

import fastnn as fn
from fastnn import search
from fastnn.ensemble import Bagging
from fastnn.executors import ProcessExecutor, SequentialExecutor, get_executor

cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import this file

VOLATILE = ("seconds", "worker")                 # what may differ between two runs of a trial


def data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] - x[:, 1] > 0).astype(np.int64)


def build(hidden, lr):
    """A small MLP and its learning rate; hidden=0 is a bad hyper-parameter (Dense raises)."""
    model = fn.Sequential([fn.Dense(4, hidden), fn.ReLU(), fn.Dense(hidden, 2)],
                          backend="numpy", seed=0)
    return model, {"lr": lr}


def stable(rows):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def assert_same_table(a, b):
    for ra, rb in zip(stable(a), stable(b), strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float) and math.isnan(ra[k]):
                assert math.isnan(rb[k]), k
            else:
                assert ra[k] == rb[k], k


FIT = dict(epochs=6, batch_size=16, optimizer="sgd")
GRID = {"hidden": [0, 3, 8], "lr": [0.2, 1e12]}


@pytest.fixture(scope="module")
def sequential_result():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # the diverging trials overflow
        return search.grid_search(build, GRID, data(), patience=2, **FIT)


# ----------------------------------------------------------------------------- parameter sets


def test_grid_is_every_combination_in_order():
    assert search.grid({"a": [1, 2], "b": ["x", "y", "z"]}) == [
        {"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]
    assert search.grid([{"a": [1]}, {"b": np.array([2, 3])}]) == [{"a": 1}, {"b": 2}, {"b": 3}]
    assert type(search.grid({"b": np.array([2])})[0]["b"]) is int        # plain Python values
    for bad in ({"a": []}, {"a": "abc"}, {"a": 3}, [3]):
        with pytest.raises(ValueError):
            search.grid(bad)


def test_random_draws_follow_their_distributions_and_the_seed():
    space = {"lr": search.loguniform(1e-4, 1.0), "u": search.uniform(-1, 1),
             "k": search.randint(2, 5), "act": ["relu", "tanh"],
             "c": search.choice([10, 20])}
    draws = search.draws(space, 2000, seed=3)
    assert draws == search.draws(space, 2000, seed=3) and draws != search.draws(space, 2000, seed=4)
    lr = np.array([d["lr"] for d in draws])
    assert lr.min() >= 1e-4 and lr.max() < 1.0
    decades = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1, 0])[0] / len(lr)
    np.testing.assert_allclose(decades, 0.25, atol=0.04)       # log-uniform: each decade 1/4
    u = np.array([d["u"] for d in draws])
    assert -1 <= u.min() and u.max() < 1 and abs(u.mean()) < 0.05
    assert {d["k"] for d in draws} == {2, 3, 4}
    assert {d["act"] for d in draws} == {"relu", "tanh"} and {d["c"] for d in draws} == {10, 20}
    stats = pytest.importorskip("scipy.stats")
    d = search.draws({"s": stats.norm(5, 0.1)}, 50, seed=0)
    assert all(isinstance(v["s"], float) and 4 < v["s"] < 6 for v in d)
    for bad in (lambda: search.loguniform(0, 1), lambda: search.uniform(2, 1),
                lambda: search.randint(3, 3), lambda: search.choice([]),
                lambda: search.draws({"a": (1, 2)}, 2, 0), lambda: search.draws({"a": [1]}, 0, 0)):
        with pytest.raises(ValueError):
            bad()


# ----------------------------------------------------------------------------- the table


def test_results_table_matches_trials_retrained_by_hand(sequential_result):
    res = sequential_result
    rows = res.results
    assert [r["trial"] for r in rows] == list(range(6))
    assert [r["params"] for r in rows] == search.grid(GRID)
    x, y = data()
    xt, yt, xv, yv = search._split((x, y), None, 0.2, 0)
    assert len(xv) == 24 and len(xt) == 96
    for r in rows:
        p = r["params"]
        if p["hidden"] == 0:                                   # bad hyper-parameter
            assert r["status"] == "error" and r["error"]       # (Dense(4, 0) raises)
            continue
        if p["lr"] > 1:                                        # diverges
            assert r["status"] == "error" and "DivergenceError" in r["error"]
            continue
        assert r["status"] == "ok" and r["error"] == ""
        model, extra = build(**p)                              # the same trial, by hand
        stop = fn.EarlyStopping("val_loss", patience=2, restore_best=True)
        h = model.fit(xt, yt, validation_data=(xv, yv), seed=r["seed"], callbacks=[stop],
                      verbose=0, **extra, **FIT)
        ev = model.evaluate(xv, yv)
        assert r["epochs"] == len(h.history["loss"]) and r["loss"] == h.history["loss"][-1]
        assert r["val_loss"] == ev["loss"] and r["score"] == r["val_accuracy"] == ev["accuracy"]
    ok = [r for r in rows if r["status"] == "ok"]
    best = max(ok, key=lambda r: (r["score"], -r["trial"]))
    assert res.best_index == best["trial"] and res.best_params == best["params"]
    assert res.best_score == best["score"]
    assert res.best_model.evaluate(xv, yv)["accuracy"] == best["score"]
    assert len({r["seed"] for r in rows}) == 6


def test_early_stopping_per_trial_stops_and_keeps_the_best_epoch():
    x, y = data(200, seed=1)
    res = search.grid_search(build, {"hidden": [6], "lr": [0.5, 0.05]}, (x, y), patience=1,
                             epochs=40, batch_size=8)
    epochs = [r["epochs"] for r in res.results]
    assert all(r["status"] == "ok" for r in res.results) and min(epochs) < 40
    xt, yt, xv, yv = search._split((x, y), None, 0.2, 0)
    model, extra = build(**res.best_params)
    h = model.fit(xt, yt, validation_data=(xv, yv), epochs=40, batch_size=8, verbose=0,
                  seed=res.results[res.best_index]["seed"], **extra)
    assert min(h.history["val_loss"][:res.results[res.best_index]["epochs"]]) == \
        res.results[res.best_index]["val_loss"]              # the best epoch's weights kept


def test_estimators_with_fit_and_score_and_validation_data():
    from sklearn.linear_model import LogisticRegression
    x, y = data()
    xv, yv = data(50, seed=9)
    res = search.random_search(lambda C: LogisticRegression(C=C),
                               {"C": search.loguniform(1e-3, 10)}, (x, y), n_iter=3,
                               validation_data=(xv, yv), seed=1)
    for r in res.results:
        assert r["status"] == "ok"
        assert r["score"] == LogisticRegression(C=r["params"]["C"]).fit(x, y).score(xv, yv)
    assert isinstance(res.best_model, LogisticRegression)
    bad = search.grid_search(lambda k: object(), {"k": [1]}, (x, y))
    assert bad.results[0]["status"] == "error" and "TypeError" in bad.results[0]["error"]
    assert bad.best_model is None and bad.best_params is None


def test_fastnn_sklearn_estimator_in_a_search():
    sk = pytest.importorskip("fastnn.sklearn", reason="fastnn.sklearn not written yet")
    x, y = data()
    res = search.grid_search(lambda h: sk.MLPClassifier(hidden_layer_sizes=(h,), max_iter=5,
                                                        random_state=0, backend="numpy"),
                             {"h": [4, 8]}, (x, y))
    assert [r["status"] for r in res.results] == ["ok", "ok"]


def test_csv_and_plot(sequential_result, tmp_path):
    res = sequential_result
    res.to_csv(tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == res.columns() and res.columns()[:3] == ["trial", "param_hidden",
                                                                     "param_lr"]
    for line, r in zip(table, res.results, strict=True):
        assert int(line["trial"]) == r["trial"] and line["status"] == r["status"]
        assert float(line["param_lr"]) == r["params"]["lr"] and line["error"] == r["error"]
        assert float(line["score"]) == r["score"] or (math.isnan(r["score"])
                                                     and line["score"] == "nan")
    res.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- resume


def test_resume_runs_only_the_unfinished_trials(sequential_result, tmp_path):
    log = tmp_path / "log.jsonl"
    calls = []

    def interrupted(hidden, lr):
        if len(calls) == 3:
            raise KeyboardInterrupt                       # the search stops here
        calls.append((hidden, lr))
        return build(hidden, lr)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(KeyboardInterrupt):
            search.grid_search(interrupted, GRID, data(), patience=2, resume=log, **FIT)
        assert len(log.read_text().splitlines()) == 3     # each trial written as it finished
        with open(log, "a") as f:
            f.write('{"trial": 3, "params": {"hid')         # a write cut short
        calls.clear()

        def counting(hidden, lr):
            calls.append((hidden, lr))
            return build(hidden, lr)
        res = search.grid_search(counting, GRID, data(), patience=2, resume=log, **FIT)
    assert calls == [(p["hidden"], p["lr"]) for p in search.grid(GRID)[3:]]
    assert_same_table(res.results, sequential_result.results)
    assert [json.loads(line)["trial"] for line in log.read_text().splitlines()] == list(range(6))
    assert res.best_model.evaluate(*search._split(data(), None, 0.2, 0)[2:])["accuracy"] == \
        res.best_score                                     # retrained from its seed if needed
    with pytest.raises(ValueError, match="not a trial of this search"):
        search.grid_search(build, GRID, data(), seed=1, resume=log, **FIT)


# ----------------------------------------------------------------------------- executors


def member(shared, item):
    """A task for the executors: which process ran it, and with how many threads."""
    return item * shared, os.getpid(), fn.get_num_threads()


def test_executor_choice_and_errors():
    assert isinstance(get_executor(), SequentialExecutor)
    assert isinstance(get_executor(None, n_jobs=1), SequentialExecutor)
    ex = get_executor(None, n_jobs=2)
    assert isinstance(ex, ProcessExecutor) and ex.n_jobs == 2 and ex.n_threads == 1
    assert get_executor(ex) is ex
    with pytest.raises(ValueError, match="unknown executor"):
        get_executor("threads")
    with pytest.raises(ValueError, match="n_jobs"):
        get_executor("processes", n_jobs=0)
    before = fn.get_num_threads()
    with SequentialExecutor(n_threads=1) as seq:
        assert [v for _, v, _ in seq.run(member, 2, [1, 2])] == [(2, os.getpid(), 1),
                                                                 (4, os.getpid(), 1)]
    assert fn.get_num_threads() == before


def dies_once(hidden, lr):
    """Kills its worker process the first time it runs (a marker file remembers)."""
    marker = os.path.join(os.environ["FASTNN_TEST_MARKERS"], f"{hidden}-{lr}")
    if hidden == 8 and lr == 0.2 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return build(hidden, lr)


def always_dies(**params):
    os._exit(1)


def test_processes_give_the_same_table_and_survive_dead_workers(sequential_result, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("FASTNN_TEST_MARKERS", str(tmp_path))   # spawned workers inherit it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = search.grid_search(dies_once, GRID, data(), patience=2, executor="processes",
                                 n_jobs=2, **FIT)
    assert (tmp_path / "8-0.2").exists()                  # a worker did die
    assert_same_table(res.results, sequential_result.results)
    workers = {r["worker"] for r in res.results}
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)
    lost = search.grid_search(always_dies, {"a": [1]}, data(),
                              executor=ProcessExecutor(n_jobs=1, retries=1))
    assert lost.results[0]["status"] == "lost" and "died 2 times" in lost.results[0]["error"]


def test_bagging_in_processes_equals_sequential():
    x, y = data(60)
    make = lambda s: fn.Sequential([fn.Dense(4, 5), fn.Tanh(), fn.Dense(5, 2)],  # noqa: E731
                                   backend="numpy", seed=s)
    kw = dict(epochs=2, batch_size=16, verbose=0, optimizer=lambda p: fn.optim.Adam(p, lr=0.01))
    here = Bagging(make, n=3, seed=0).fit(x, y, **kw)
    there = Bagging(make, n=3, seed=0, n_jobs=2).fit(x, y, **kw)
    np.testing.assert_array_equal(there.predict(x), here.predict(x))
    assert [h.history["loss"] for h in there.histories] == \
        [h.history["loss"] for h in here.histories]
