"""Experiment ``search``: the texts' grid search and random search over the learning rate and
the hidden layer size of a 784-H-10 network (ReLU, He init, softmax + cross-entropy, SGD), with
``fn.search.grid_search`` and ``fn.search.random_search`` (trials in this process), each trial
scored by its final validation accuracy; one search per seed.
"""
import numpy as np

import fastnn as fn

from . import runner

TITLE = "Grid and random search over learning rate and hidden size"
GRID = {"lr": [0.01, 0.1, 0.5], "hidden": [100, 400]}
QUICK_GRID = {"lr": [0.01, 0.1], "hidden": [50, 100]}
RANDOM_TRIALS = 6
LR_RANGE = (1e-3, 1.0)          # log-uniform
HIDDEN_RANGE = (50, 500)        # uniform integers, both ends included


def make_build(settings, seed):
    """``build(lr, hidden)`` for fn.search: a fresh 784-hidden-10 model and its SGD rate."""
    def build(lr, hidden):
        model = runner.mlp((784, int(hidden), 10), "relu", init="he",
                           **settings.model_kwargs(seed))
        return model, {"optimizer": lambda p: fn.optim.SGD(p, lr=float(lr))}
    return build


def search(kind, data, settings, seed):
    """One grid or random search on ``data`` with ``seed``; a fn.search SearchResult."""
    common = dict(validation_data=(data.x_val, data.y_val), seed=seed,
                  epochs=settings.epochs, batch_size=settings.batch_size)
    if kind == "grid":
        return fn.search.grid_search(make_build(settings, seed),
                                     QUICK_GRID if settings.quick else GRID,
                                     (data.x, data.y), **common)
    distributions = {"lr": fn.search.loguniform(*LR_RANGE),
                     "hidden": fn.search.randint(*HIDDEN_RANGE)}
    return fn.search.random_search(make_build(settings, seed), distributions, (data.x, data.y),
                                   n_iter=2 if settings.quick else RANDOM_TRIALS, **common)


def trial_name(params):
    return f"lr {float(params['lr']):.3g}, hidden {int(params['hidden'])}"


def run(settings, log=print):
    report = runner.Report("search", TITLE, settings, __doc__.strip())
    report.text(f"Random search: lr log-uniform in {LR_RANGE}, hidden uniform in {HIDDEN_RANGE}; "
                "its draws depend on the seed, so each seed searches other points. A trial's "
                "accuracy is `fn.search`'s score (the validation accuracy after the last epoch).")
    best_rows = []
    for kind in ("grid", "random"):
        rows, points = [], {}
        for data in runner.datasets(settings):
            for seed in settings.seeds:
                result = search(kind, data, settings, seed)
                for r in result.results:
                    log(f"  {data.name} | {kind} seed {seed} | {trial_name(r['params'])}: "
                        f"{r['status']}, val acc {r['val_accuracy']:.4f}")
                    points.setdefault(data.name, []).append(
                        (float(r["params"]["lr"]), int(r["params"]["hidden"]), r["val_accuracy"]))
                    rows.append([data.name, seed, trial_name(r["params"]), r["status"],
                                 f"{100 * r['val_accuracy']:.2f}", r["epochs"],
                                 f"{r['seconds']:.1f}"])
                best_rows.append([kind, data.name, seed, trial_name(result.best_params),
                                  f"{100 * result.best_score:.2f}"])
        report.text(f"### {kind.capitalize()} search")
        report.table(["data", "seed", "trial", "status", "final val acc %", "epochs", "seconds"],
                     rows)

        def draw(axes, points=points):
            for dataset, pts in points.items():
                lr, hidden, acc = np.array(pts, dtype=np.float64).T
                sc = axes[0].scatter(lr, acc, c=hidden, cmap="viridis", label=dataset)
                axes[0].figure.colorbar(sc, ax=axes[0], label="hidden units")
            axes[0].set_xscale("log")
            axes[0].set_xlabel("learning rate")
            axes[0].set_ylabel("final validation accuracy")
        report.plot(f"search_{kind}.png", f"{kind} search: final validation accuracy per trial "
                    "(colour: hidden units)", draw)
    report.text("### Best trials")
    report.table(["search", "data", "seed", "best trial", "final val acc %"], best_rows)
    return report.write()
