"""Experiment ``costs``: quadratic against cross-entropy cost for a sigmoid network.

The texts' network: sigmoid hidden and output units, weights drawn from normal(0, 1), the
quadratic cost with learning rate 3 (94.20% on MNIST, a second run stuck at 76.73%: saturated
output units learn slowly, hence several seeds here) against the cross-entropy cost of the
sigmoid outputs (``BCEWithLogitsLoss`` on integer labels, 96.59%, best 96.70%). Also the
texts' single sigmoid neuron (input 1, target 0, learning rate 0.15): started saturated
(w = b = 2) its quadratic cost barely moves for many epochs while the cross-entropy cost
falls at once, because the quadratic gradient carries the factor sigma'(z).
"""
import numpy as np

import fastnn as fn

from . import runner

TITLE = "Quadratic vs cross-entropy cost (sigmoid network, normal(0, 1) init)"
TEXTS = {"quadratic, lr 3": "94.20% (a second run 76.73%)",
         "cross-entropy, lr 0.5": "96.59% (best 96.70%)"}
SIZES = (784, 100, 10)


def variants():
    normal1 = fn.init.normal(std=1.0)
    return [
        runner.Variant("quadratic, lr 3", loss=fn.MSELoss,
                       build=lambda **kw: runner.mlp(SIZES, "sigmoid", init=normal1,
                                                     output="sigmoid", **kw),
                       optimizer=lambda p: fn.optim.SGD(p, lr=3.0)),
        runner.Variant("cross-entropy, lr 0.5", loss=fn.BCEWithLogitsLoss,
                       build=lambda **kw: runner.mlp(SIZES, "sigmoid", init=normal1, **kw),
                       optimizer=lambda p: fn.optim.SGD(p, lr=0.5)),
    ]


def single_neuron(cost, w, b, epochs, backend=None):
    """Cost per epoch of one sigmoid neuron trained on the single sample x = 1, target 0
    (lr 0.15, float64) from weight ``w`` and bias ``b``; ``cost`` is "quadratic" or
    "cross-entropy". Returns (costs (epochs,), final output sigma(w + b))."""
    layers = [fn.Dense(1, 1)] + ([fn.Sigmoid()] if cost == "quadratic" else [])
    model = fn.Sequential(layers, backend=backend, dtype="float64", seed=0)
    model.set_weights(np.array([w, b], dtype=np.float64))
    loss = fn.MSELoss() if cost == "quadratic" else fn.BCEWithLogitsLoss()
    x, y = np.ones((1, 1)), np.zeros((1, 1))
    history = model.fit(x, y, loss=loss, optimizer=fn.optim.SGD(model.parameters(), lr=0.15),
                        epochs=epochs, batch_size=1, shuffle=False, verbose=0)
    out = np.asarray(model.predict(x), dtype=np.float64)[0, 0]
    if cost == "cross-entropy":
        out = 1 / (1 + np.exp(-out))            # the model's output is the logit
    return np.array(history.history["loss"]), float(out)


def run(settings, log=print):
    report = runner.Report("costs", TITLE, settings, __doc__.split("\n\n", 1)[1].strip())
    report.text(f"Network {'-'.join(map(str, SIZES))}, sigmoid hidden units, sigmoid outputs "
                "(the quadratic cost applies a Sigmoid layer; the cross-entropy cost is "
                "`BCEWithLogitsLoss` on the logits), weights normal(0, 1), biases 0, plain SGD.")
    report.results(runner.run_variants(variants(), runner.datasets(settings), settings, log), TEXTS)

    epochs = 30 if settings.quick else 300
    curves = {}
    rows = []
    for start in ((0.6, 0.9), (2.0, 2.0)):
        for cost in ("quadratic", "cross-entropy"):
            costs, out = single_neuron(cost, *start, epochs, settings.backend)
            curves[(cost, start)] = costs
            rows.append([cost, f"w={start[0]}, b={start[1]}", f"{costs[0]:.4f}",
                         f"{costs[len(costs) // 10]:.4f}", f"{costs[-1]:.4f}", f"{out:.4f}"])
    report.text(f"### Single neuron: the learning slowdown ({epochs} epochs, lr 0.15, x = 1, "
                "target 0)")
    report.table(["cost", "start", "cost at epoch 1", f"at epoch {epochs // 10 + 1}",
                  f"at epoch {epochs}", "final output"], rows)

    def draw(axes):
        for ax, start in zip(axes, ((0.6, 0.9), (2.0, 2.0))):
            for cost in ("quadratic", "cross-entropy"):
                ax.plot(np.arange(1, epochs + 1), curves[(cost, start)], label=cost)
            ax.set_title(f"one sigmoid neuron, start w={start[0]}, b={start[1]}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("cost")
    report.plot("costs_single_neuron.png", "Single neuron: cost per epoch, quadratic vs "
                "cross-entropy, from an unsaturated and a saturated start", draw, 2)
    return report.write()
