"""Experiment ``regularization``: none, L2, L1, dropout, data augmentation, early stopping and
bagging on a reduced training set (1 000 images, as the texts do, so that the network
overfits), with the gap between training and validation accuracy plotted per epoch.
"""
import numpy as np

import fastnn as fn

from . import runner

TITLE = "Regularisation on 1 000 training images"
SIZES = (784, 400, 100, 10)
TRAIN_SIZE = 1000
MEMBERS = 5


def _net(dropout=0.0):
    return lambda **kw: runner.mlp(SIZES, "relu", init="he", dropout=dropout, **kw)


def _sgd(**options):
    return lambda p: fn.optim.SGD(p, lr=0.1, **options)


def members_for(settings):
    """Members of the bagging ensemble: ``MEMBERS``, 2 with --quick."""
    return 2 if settings.quick else MEMBERS


def train_bagging(variant, data, settings, seed):
    """A bagging ensemble of :func:`members_for` networks, each on a bootstrap sample;
    the run's final accuracy is the ensemble's (averaged probabilities) and its curves the
    members' mean per epoch."""
    members = members_for(settings)
    ens = fn.ensemble.Bagging(lambda s: _net()(**settings.model_kwargs(s)), n=members, seed=seed)
    ens.fit(data.x, data.y, optimizer=_sgd(), epochs=variant.epochs_for(settings),
            batch_size=settings.batch_size, validation_data=(data.x_val, data.y_val), verbose=0)
    history = fn.History()
    n = min(len(h.epoch) for h in ens.histories)
    for e in range(n):
        history.append(e + 1, {k: float(np.mean([h.history[k][e] for h in ens.histories]))
                               for k in ens.histories[0].history})
    history.history["time"] = [t * members for t in history.history["time"]]
    return runner.Run.from_history(variant.name, data.name, seed, history,
                                   ens.evaluate(data.x_val, data.y_val)["accuracy"])


def variants(members=MEMBERS):
    shift = fn.augment.Compose([fn.augment.RandomShift(2), fn.augment.RandomRotation(10)])
    return [
        runner.Variant("none", build=_net()),
        runner.Variant("L2 1e-3", build=_net(), optimizer=_sgd(weight_decay=1e-3)),
        runner.Variant("L1 1e-4", build=_net(), optimizer=_sgd(l1=1e-4)),
        runner.Variant("dropout 0.5", build=_net(0.5)),
        runner.Variant("augmentation (shift 2, rotate 10)", build=_net(), fit={"augment": shift}),
        runner.Variant("early stopping (patience 5)", build=_net(),
                       callbacks=lambda opt: [fn.EarlyStopping("val_loss", patience=5,
                                                               restore_best=True)]),
        runner.Variant(f"bagging ({members} members)", build=_net(), train=train_bagging),
    ]


def run(settings, log=print):
    report = runner.Report("regularization", TITLE, settings, __doc__.strip())
    train_size = min(settings.train_size, TRAIN_SIZE)
    report.text(f"Network {'-'.join(map(str, SIZES))}, ReLU, He init, softmax + cross-entropy, "
                f"SGD lr 0.1, {train_size} training images. L2 and L1 are SGD's `weight_decay` "
                "and `l1` (the texts' lambda / n). Early stopping restores the weights of the "
                "best validation loss, so its final accuracy is theirs. Bagging's final accuracy "
                "is the ensemble's; its curves are the members' mean and its seconds per epoch "
                "the members' sum.")
    data = runner.datasets(settings, train_size=train_size)
    runs = runner.run_variants(variants(members_for(settings)), data, settings, log)
    report.results(runs, gap=True)
    return report.write()
