"""Experiment ``activations``: hidden units sigmoid, tanh, ReLU, leaky ReLU, PReLU and maxout,
each with its matching initialisation (Xavier for sigmoid and tanh, He for the piecewise-linear
units), softmax outputs with the cross-entropy cost, SGD lr 0.1.
"""
from . import runner

TITLE = "Hidden activations, each with its matching initialisation"
SIZES = (784, 400, 100, 10)
CHOICES = (("sigmoid", "xavier"), ("tanh", "xavier"), ("relu", "he"), ("leaky_relu", "he"),
           ("prelu", "he"))


def variants():
    out = [runner.Variant(f"{act} ({init})",
                          build=lambda act=act, init=init, **kw: runner.mlp(SIZES, act, init=init,
                                                                             **kw))
           for act, init in CHOICES]
    out.append(runner.Variant("maxout, 2 pieces (he)",
                              build=lambda **kw: runner.mlp(SIZES, init="he", maxout=2, **kw)))
    return out


def run(settings, log=print):
    report = runner.Report("activations", TITLE, settings, __doc__.strip())
    report.text(f"Network {'-'.join(map(str, SIZES))}; maxout doubles each hidden Dense layer's "
                "outputs and takes the maximum of each pair. The texts give no MNIST figure per "
                "activation to compare with.")
    report.results(runner.run_variants(variants(), runner.datasets(settings), settings, log))
    return report.write()
