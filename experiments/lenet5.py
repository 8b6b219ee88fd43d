"""Experiment ``lenet5``: LeNet-5 (``fn.models.lenet5``: two 5x5 convolutions with ReLU and
max-pooling, then 120-84-10) with SGD lr 0.1, batch 32, 20 epochs: about 99.0% on MNIST in the
texts.
"""
import fastnn as fn

from . import runner

TITLE = "LeNet-5"
TEXTS = {"LeNet-5, SGD lr 0.1": "about 99.0%"}


def run(settings, log=print):
    report = runner.Report("lenet5", TITLE, settings, __doc__.strip())
    variant = runner.Variant("LeNet-5, SGD lr 0.1", build=fn.models.lenet5, epochs=20)
    report.text(f"Epochs: {variant.epochs_for(settings)} (the texts' 20, or fewer when the "
                "settings give fewer).")
    report.results(runner.run_variants([variant], runner.datasets(settings), settings, log), TEXTS)
    return report.write()
