"""Experiment ``search``: the texts' grid search and random search over the learning rate and
the hidden layer size of a 784-H-10 network (ReLU, He init, softmax + cross-entropy, SGD), each
trial scored by its final validation accuracy (mean over the seeds).
"""
import numpy as np

import fastnn as fn

from . import runner

TITLE = "Grid and random search over learning rate and hidden size"
GRID = {"lr": (0.01, 0.1, 0.5), "hidden": (100, 400)}
QUICK_GRID = {"lr": (0.01, 0.1), "hidden": (50, 100)}
RANDOM_TRIALS = 6
LR_RANGE = (1e-3, 1.0)          # log-uniform
HIDDEN_RANGE = (50, 500)        # uniform integers


def trial(lr, hidden):
    """The variant of one trial: 784-hidden-10 trained with SGD at ``lr``."""
    return runner.Variant(f"lr {lr:.3g}, hidden {hidden}",
                          build=lambda **kw: runner.mlp((784, hidden, 10), "relu", init="he", **kw),
                          optimizer=lambda p: fn.optim.SGD(p, lr=lr))


def random_trials(n, seed):
    """``n`` (lr, hidden) pairs: lr log-uniform in ``LR_RANGE``, hidden uniform in ``HIDDEN_RANGE``."""
    rng = np.random.default_rng(seed)
    lrs = np.exp(rng.uniform(*np.log(LR_RANGE), size=n))
    hidden = rng.integers(HIDDEN_RANGE[0], HIDDEN_RANGE[1] + 1, size=n)
    return [(float(lr), int(h)) for lr, h in zip(lrs, hidden)]


def run(settings, log=print):
    report = runner.Report("search", TITLE, settings, __doc__.strip())
    report.text("The trials run one after another in this process with the experiment runner "
                "(the same loop `fn.search.grid_search` would run; using it here is left for "
                "when `fastnn.search` is in the library).")
    grid = QUICK_GRID if settings.quick else GRID
    searches = {
        "grid": [(lr, h) for lr in grid["lr"] for h in grid["hidden"]],
        "random": random_trials(2 if settings.quick else RANDOM_TRIALS, settings.seeds[0]),
    }
    data = runner.datasets(settings)
    found = {}
    for kind, points in searches.items():
        report.text(f"### {kind.capitalize()} search ({len(points)} trials)")
        runs = runner.run_variants([trial(*p) for p in points], data, settings, log)
        report.results(runs, tag=kind)
        for (dataset, name), rs in runner.group(runs).items():
            score = float(np.mean([r.final for r in rs]))
            best = found.get((kind, dataset))
            if best is None or score > best[1]:
                found[(kind, dataset)] = (name, score)
        found_points = {trial(*p).name: p for p in points}
        by_dataset = {}
        for (dataset, name), rs in runner.group(runs).items():
            by_dataset.setdefault(dataset, []).append(
                (*found_points[name], float(np.mean([r.final for r in rs]))))

        def draw(axes, by_dataset=by_dataset):
            for dataset, pts in by_dataset.items():
                lr, hidden, acc = np.array(pts).T
                sc = axes[0].scatter(lr, acc, c=hidden, cmap="viridis", label=dataset)
                axes[0].figure.colorbar(sc, ax=axes[0], label="hidden units")
            axes[0].set_xscale("log")
            axes[0].set_xlabel("learning rate")
            axes[0].set_ylabel("final validation accuracy (mean over seeds)")
        report.plot(f"search_{kind}.png", f"{kind} search: final validation accuracy per trial",
                    draw)
    report.text("### Best trials")
    report.table(["search", "data", "best trial", "final val acc % (mean)"],
                 [[kind, dataset, name, f"{100 * score:.2f}"]
                  for (kind, dataset), (name, score) in found.items()])
    return report.write()
