"""Every layer on every backend: gradients against central differences (float64), forward and
backward against the "numpy" backend, and whole-MLP gradients for every loss."""
import numpy as np
import pytest

import fastnn as fn
from fastnn.kernels.contract import Activation
from support import (BACKENDS, OTHER_BACKENDS, assert_layer_matches_numpy, check_layer_grad,
                     check_model_grad, host, missing_kernels)

# name -> (factory of the layer(s), input shape). A list is one Sequential of several layers.
LAYER_CASES = {
    "Dense": (lambda: fn.Dense(5, 4), (3, 5)),
    "Dense-1x1": (lambda: fn.Dense(1, 1), (1, 1)),
    "Dense+ReLU": (lambda: [fn.Dense(5, 4), fn.ReLU()], (3, 5)),
    "Dense+Sigmoid": (lambda: [fn.Dense(5, 4), fn.Sigmoid()], (3, 5)),
    "Dense+Tanh": (lambda: [fn.Dense(5, 4), fn.Tanh()], (3, 5)),
    "Sigmoid": (fn.Sigmoid, (3, 5)),
    "Tanh": (fn.Tanh, (3, 5)),
    "ReLU": (fn.ReLU, (3, 5)),
    "LeakyReLU": (fn.LeakyReLU, (3, 5)),
    "LeakyReLU-0.3": (lambda: fn.LeakyReLU(0.3), (3, 5)),
    "Softmax": (fn.Softmax, (3, 5)),
    "LogSoftmax": (fn.LogSoftmax, (3, 5)),
    "PReLU-shared": (fn.PReLU, (3, 5)),
    "PReLU-per-feature": (lambda: fn.PReLU(5), (3, 5)),
    "PReLU-per-channel-4d": (lambda: fn.PReLU(3), (2, 3, 2, 2)),
    "PReLU-shared-4d": (fn.PReLU, (2, 3, 2, 2)),
    "Maxout-2": (lambda: fn.Maxout(2), (3, 8)),
    "Maxout-3": (lambda: fn.Maxout(3), (2, 9)),
    "Flatten+Dense-4d": (lambda: [fn.Flatten(), fn.Dense(12, 4)], (2, 3, 2, 2)),
    "Dense+LeakyReLU+Dense": (lambda: [fn.Dense(5, 6), fn.LeakyReLU(0.1), fn.Dense(6, 2)], (4, 5)),
    "Dense+PReLU+Maxout": (lambda: [fn.Dense(5, 6), fn.PReLU(6), fn.Maxout(3)], (4, 5)),
}
CASE_IDS = sorted(LAYER_CASES)


@pytest.mark.parametrize("case", CASE_IDS)
def test_layer_gradient(case, backend):
    factory, x_shape = LAYER_CASES[case]
    check_layer_grad(factory, x_shape, backend)


@pytest.mark.parametrize("act, kernel", [(fn.ReLU, "relu"), (fn.Sigmoid, "sigmoid"), (fn.Tanh, "tanh")])
def test_sequential_fuses_dense_and_activation(act, kernel, backend):
    """The fused path is the one the Dense+activation gradient tests above exercise."""
    model = fn.Sequential([fn.Dense(5, 4), act(), fn.Dense(4, 2), fn.LeakyReLU()], backend=backend)
    assert model.steps[0].act == Activation.of(kernel)
    assert model.steps[1].layer is model.layers[2]
    assert model.steps[1].act is None                        # LeakyReLU is not fusable
    assert len(model.steps) == 3
    assert "fused_activation" not in vars(model.layers[0])   # the model records the fusion


@pytest.mark.parametrize("case", CASE_IDS)
@pytest.mark.parametrize("other", OTHER_BACKENDS)
def test_backend_matches_numpy(case, other):
    """Same seed, float64: forward output, input gradient and every parameter gradient agree
    with the "numpy" backend to 1e-10."""
    factory, x_shape = LAYER_CASES[case]
    assert_layer_matches_numpy(factory, x_shape, other, seed=11, data_seed=3)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_exposes_every_reference_kernel(name):
    """The backend contract: every function of kernels/reference.py, same names."""
    assert missing_kernels(name) == []


# ----------------------------------------------------------------------------- whole MLPs


def mlp(backend, head=()):
    head = [type(layer)(**layer.get_config()) for layer in head]   # fresh: a layer caches its buffers
    return fn.Sequential([fn.Dense(4, 6), fn.Tanh(), fn.Dense(6, 5), fn.ReLU(), fn.Dense(5, 3), *head],
                         backend=backend, dtype="float64", seed=2)


def _mlp_cases():
    rng = np.random.default_rng(0)
    labels = np.array([0, 2, 1, 2, 0])
    return {
        "CrossEntropyLoss": ((), fn.CrossEntropyLoss(), labels),
        "NLLLoss+LogSoftmax": ((fn.LogSoftmax(),), fn.NLLLoss(), labels),
        "MSELoss-float-targets": ((), fn.MSELoss(), rng.standard_normal((5, 3))),
        "MSELoss-integer-labels": ((), fn.MSELoss(), labels),
        "MSELoss+Sigmoid": ((fn.Sigmoid(),), fn.MSELoss(), rng.uniform(0, 1, (5, 3))),
        "BCEWithLogitsLoss": ((), fn.BCEWithLogitsLoss(), rng.uniform(0, 1, (5, 3))),
        "BCEWithLogitsLoss-binary": ((), fn.BCEWithLogitsLoss(), (rng.uniform(0, 1, (5, 3)) > 0.5) * 1.0),
    }


MLP_CASES = _mlp_cases()


@pytest.mark.parametrize("case", sorted(MLP_CASES))
def test_mlp_gradient_for_each_loss(case, backend):
    head, loss, y = MLP_CASES[case]
    x = np.random.default_rng(1).standard_normal((5, 4))
    check_model_grad(mlp(backend, head), x, y, type(loss)())


def test_mse_integer_labels_equal_one_hot_targets(backend):
    """MSELoss with (N,) integer labels is MSELoss with one-hot targets."""
    model = mlp(backend)
    x = np.random.default_rng(1).standard_normal((5, 4))
    labels = np.array([0, 2, 1, 2, 0])
    out = model.forward(x)
    loss_labels, loss_onehot = fn.MSELoss().bind(model.be), fn.MSELoss().bind(model.be)
    assert loss_labels(out, labels) == pytest.approx(loss_onehot(out, np.eye(3)[labels]), rel=1e-14)
    np.testing.assert_allclose(host(loss_labels.backward()), host(loss_onehot.backward()), rtol=1e-14)
