"""model.hessian_vector_product: the exact R-operator product against
torch.autograd.functional.hvp and against central differences of the gradient; the
finite-difference fallback for layers the exact form does not cover; every backend."""
import numpy as np
import pytest

import fastnn as fn
from support import host

N = 7


def dense_model(backend, act, n_in=4, n_out=3, seed=0):
    return fn.Sequential([fn.Dense(n_in, 5), act(), fn.Dense(5, n_out)], backend=backend,
                         dtype="float64", seed=seed)


def targets(loss, rng, n_out):
    if isinstance(loss, (fn.CrossEntropyLoss, fn.NLLLoss)):
        return rng.integers(0, n_out, N)
    if isinstance(loss, fn.BCEWithLogitsLoss):
        return rng.random((N, n_out))
    return rng.standard_normal((N, n_out))


def torch_loss_fn(torch, model, x, y, loss):
    """The loss as a function of the flat parameter vector, written in PyTorch."""
    F = torch.nn.functional
    x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    y = torch.from_numpy(np.asarray(y))
    shapes = [p.shape for p in model.parameters()]

    def f(flat):
        pos, params = 0, []
        for s in shapes:
            size = int(np.prod(s))
            params.append(flat[pos:pos + size].reshape(s))
            pos += size
        a, it = x, iter(params)
        for layer in model.layers:
            if isinstance(layer, fn.Dense):
                a = a @ next(it) + next(it)
            elif isinstance(layer, fn.Conv2D):
                a = F.conv2d(a, next(it), next(it))
            elif isinstance(layer, fn.Flatten):
                a = a.reshape(len(a), -1)
            elif isinstance(layer, fn.LeakyReLU):
                a = F.leaky_relu(a, layer.negative_slope)
            else:
                a = {fn.Tanh: torch.tanh, fn.Sigmoid: torch.sigmoid, fn.ReLU: torch.relu,
                     fn.Softmax: lambda t: torch.softmax(t, 1),
                     fn.LogSoftmax: lambda t: torch.log_softmax(t, 1)}[type(layer)](a)
        if isinstance(loss, fn.CrossEntropyLoss):
            return F.cross_entropy(a, y)
        if isinstance(loss, fn.NLLLoss):
            return F.nll_loss(a, y)
        if isinstance(loss, fn.BCEWithLogitsLoss):
            return F.binary_cross_entropy_with_logits(a, y, reduction="sum") / len(a)
        return 0.5 * ((a - y) ** 2).sum() / len(a)
    return f


def torch_hvp(torch, model, x, y, loss, v):
    f = torch_loss_fn(torch, model, x, y, loss)
    w = torch.from_numpy(model.get_weights())
    return torch.autograd.functional.hvp(f, w, torch.from_numpy(v))[1].numpy()


CASES = [(fn.Tanh, fn.CrossEntropyLoss), (fn.Sigmoid, fn.MSELoss), (fn.ReLU, fn.BCEWithLogitsLoss),
         (lambda: fn.LeakyReLU(0.1), fn.CrossEntropyLoss), (fn.Tanh, fn.MSELoss)]


@pytest.mark.parametrize("act, loss_cls", CASES)
def test_exact_matches_torch(torch, act, loss_cls):
    rng = np.random.default_rng(1)
    model, loss = dense_model("numpy", act), loss_cls()
    x, y = rng.standard_normal((N, 4)), targets(loss, rng, 3)
    v = rng.standard_normal(model.num_parameters())
    hv = model.hessian_vector_product(x, y, loss, v, method="exact")
    np.testing.assert_allclose(hv, torch_hvp(torch, model, x, y, loss, v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("last", [fn.Softmax, fn.LogSoftmax])
def test_exact_through_row_activations(torch, last):
    rng = np.random.default_rng(2)
    model = fn.Sequential([fn.Dense(4, 5), fn.Tanh(), fn.Dense(5, 3), last()], backend="numpy",
                          dtype="float64")
    loss = fn.NLLLoss() if last is fn.LogSoftmax else fn.MSELoss()
    x, y = rng.standard_normal((N, 4)), targets(loss, rng, 3)
    v = rng.standard_normal(model.num_parameters())
    hv = model.hessian_vector_product(x, y, loss, v, method="exact")
    np.testing.assert_allclose(hv, torch_hvp(torch, model, x, y, loss, v), rtol=1e-10, atol=1e-12)


def test_exact_matches_central_differences_and_is_symmetric(backend):
    rng = np.random.default_rng(3)
    model, loss = dense_model(backend, fn.Tanh), fn.CrossEntropyLoss()
    x, y = rng.standard_normal((N, 4)), targets(loss, rng, 3)
    u, v = rng.standard_normal((2, model.num_parameters()))
    w = model.get_weights()
    hv = model.hessian_vector_product(x, y, loss, v, method="exact")
    fd = model.hessian_vector_product(x, y, loss, v, method="fd")
    np.testing.assert_array_equal(model.get_weights(), w)          # weights left unchanged
    err = np.max(np.abs(fd - hv)) / np.max(np.abs(hv))
    assert err < 1e-8, err                    # the documented O(u^(2/3)) ~ 1e-10 of float64
    hu = model.hessian_vector_product(x, y, loss, u, method="exact")
    assert u @ hv == pytest.approx(v @ hu, rel=1e-12)


def test_float32_finite_difference_error(backend):
    rng = np.random.default_rng(4)
    model64, loss = dense_model(backend, fn.Sigmoid), fn.MSELoss()
    model32 = fn.Sequential([fn.Dense(4, 5), fn.Sigmoid(), fn.Dense(5, 3)], backend=backend,
                            dtype="float32")
    model32.set_weights(model64.get_weights())
    x, y = rng.standard_normal((N, 4)), targets(loss, rng, 3)
    v = rng.standard_normal(model64.num_parameters())
    exact = model64.hessian_vector_product(x, y, loss, v)
    fd32 = model32.hessian_vector_product(x, y, loss, v, method="fd")
    assert fd32.dtype == np.float32
    err = np.max(np.abs(fd32 - exact)) / np.max(np.abs(exact))
    assert err < 1e-3, err                    # the documented ~1e-5 of float32, with margin


def test_fallback_for_convolutions(backend, torch):
    rng = np.random.default_rng(5)
    model = fn.Sequential([fn.Conv2D(1, 2, 3), fn.Tanh(), fn.Flatten(), fn.Dense(2 * 3 * 3, 3)],
                          backend=backend, dtype="float64")
    loss = fn.CrossEntropyLoss()
    x, y = rng.standard_normal((4, 1, 5, 5)), rng.integers(0, 3, 4)
    v = rng.standard_normal(model.num_parameters())
    with pytest.raises(ValueError, match="Conv2D.*method='fd'"):
        model.hessian_vector_product(x, y, loss, v, method="exact")
    hv = model.hessian_vector_product(x, y, loss, v)                # auto: the fallback
    expected = torch_hvp(torch, model, x, y, loss, v)
    np.testing.assert_allclose(hv, expected, rtol=1e-7, atol=1e-7 * np.max(np.abs(expected)))


def test_bad_arguments():
    model = dense_model("numpy", fn.Tanh)
    x, y = np.zeros((N, 4)), np.zeros(N, np.int64)
    with pytest.raises(ValueError, match=r"v must have shape \(43,\)"):
        model.hessian_vector_product(x, y, "cross_entropy", np.zeros(5))
    with pytest.raises(ValueError, match="unknown method"):
        model.hessian_vector_product(x, y, "cross_entropy", np.zeros(43), method="forward")
    weighted = fn.CrossEntropyLoss(weight=[1.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="loss CrossEntropyLoss"):
        model.hessian_vector_product(x, y, weighted, np.zeros(43), method="exact")
