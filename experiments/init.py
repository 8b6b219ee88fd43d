"""Experiment ``init``: weight initialisation, each with the activation it was made for.

The texts' MNIST runs (784-400-100-10, sigmoid outputs with the cross-entropy cost unless
said otherwise, SGD lr 0.1): Xavier + tanh 98.26% (best 98.30%), Xavier + sigmoid 98.34%,
LeCun 98.29%, ReLU hidden + softmax output + He + NLL 98.20%, against normal(0, 1) weights,
whose large pre-activations saturate sigmoid units from the first step.
"""
import fastnn as fn

from . import runner

TITLE = "Weight initialisation: Xavier, LeCun, He against normal(0, 1)"
SIZES = (784, 400, 100, 10)
TEXTS = {"Xavier + tanh": "98.26% (best 98.30%)", "Xavier + sigmoid": "98.34%",
         "LeCun + tanh": "98.29%", "He + ReLU, softmax + NLL": "98.20%",
         "normal(0, 1) + sigmoid": ""}


def _bce(name, activation, init):
    return runner.Variant(name, loss=fn.BCEWithLogitsLoss,
                          build=lambda **kw: runner.mlp(SIZES, activation, init=init, **kw))


def variants():
    return [
        _bce("Xavier + tanh", "tanh", "xavier"),
        _bce("Xavier + sigmoid", "sigmoid", "xavier"),
        _bce("LeCun + tanh", "tanh", "lecun"),
        runner.Variant("He + ReLU, softmax + NLL", loss=fn.NLLLoss,
                       build=lambda **kw: runner.mlp(SIZES, "relu", init="he",
                                                     output="log_softmax", **kw)),
        _bce("normal(0, 1) + sigmoid", "sigmoid", fn.init.normal(std=1.0)),
    ]


def run(settings, log=print):
    report = runner.Report("init", TITLE, settings, __doc__.split("\n\n", 1)[1].strip())
    report.text(f"Network {'-'.join(map(str, SIZES))}, SGD lr 0.1, biases 0. The texts do not "
                "name the activation of their LeCun run: tanh here (LeCun's own pairing). "
                "Sigmoid-output rows use `BCEWithLogitsLoss` on integer labels.")
    report.results(runner.run_variants(variants(), runner.datasets(settings), settings, log), TEXTS)
    return report.write()
