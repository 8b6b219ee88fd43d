"""Experiment ``optimizers``: SGD, momentum, Nesterov, AdaGrad, RMSProp and Adam on the same
network (784-400-100-10, ReLU, He init, softmax + cross-entropy) and the same budget, each at
a learning rate usual for it; training loss against epochs and against seconds.
"""
import fastnn as fn

from . import runner

TITLE = "Optimizers on the same network and budget"
SIZES = (784, 400, 100, 10)
CHOICES = (("SGD, lr 0.1", "sgd", 0.1), ("momentum 0.9, lr 0.01", "momentum", 0.01),
           ("Nesterov 0.9, lr 0.01", "nesterov", 0.01), ("AdaGrad, lr 0.01", "adagrad", 0.01),
           ("RMSProp, lr 0.001", "rmsprop", 0.001), ("Adam, lr 0.001", "adam", 0.001))
FULL_BATCH = ("LBFGS", "ConjugateGradient")


def variants():
    return [runner.Variant(name, build=lambda **kw: runner.mlp(SIZES, "relu", init="he", **kw),
                           optimizer=lambda p, opt=opt, lr=lr: fn.optim.get(opt, p, lr=lr))
            for name, opt, lr in CHOICES]


def run(settings, log=print):
    report = runner.Report("optimizers", TITLE, settings, __doc__.strip())
    runs = runner.run_variants(variants(), runner.datasets(settings), settings, log)
    report.results(runs)
    present = [name for name in FULL_BATCH if hasattr(fn.optim, name)]
    report.text("Not compared yet: the full-batch L-BFGS and conjugate gradient (their "
                "`step(closure)` is not wired into this runner; in `fastnn.optim` now: "
                f"{', '.join(present) or 'neither'}).")
    for dataset in dict.fromkeys(r.dataset for r in runs):
        rs = [r for r in runs if r.dataset == dataset]

        def draw(axes, rs=rs, dataset=dataset):
            runner.curve_panel(axes[0], rs, "loss", "training loss")
            runner.curve_panel(axes[1], rs, "loss", "training loss", x="seconds")
            for ax in axes:
                ax.set_yscale("log")
                ax.set_title(dataset)
        report.plot(f"optimizers_{dataset.lower().replace('-', '_')}_loss.png",
                    f"{dataset}: training loss against epochs and against training seconds",
                    draw, 2)
    return report.write()
