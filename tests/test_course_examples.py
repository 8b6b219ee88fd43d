"""The worked examples of the course texts, reproduced with fastnn on every backend.

Weights are written in the library's convention: a Dense weight is ``(in_features,
out_features)`` and computes ``x @ W + b``, so a matrix given in the texts as ``W`` (out x in,
``W x + b``) is stored as ``W.T``.
"""
import numpy as np
import pytest

import fastnn as fn
from support import host

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0.0, 1.0, 1.0, 0.0])


def set_params(model, *values):
    """Write ``values`` into ``model.parameters()`` in order (weight, bias, weight, bias ...)."""
    params = model.parameters()
    assert len(params) == len(values)
    for p, v in zip(params, values):
        v = np.asarray(v, dtype=model.dtype)
        assert p.shape == v.shape, (p.name, p.shape, v.shape)
        if isinstance(p.data, np.ndarray):
            p.data[...] = v                  # host backends: the view into the flat buffer
        else:
            model.be.copy_into(p.data, v)    # device backends


def sgd_fit(model, x, y, loss, lr, steps):
    """Full-batch plain SGD, one step per epoch, no shuffling; returns the History."""
    opt = fn.optim.SGD(model.parameters(), lr=lr)
    return model.fit(x, y, loss=loss, optimizer=opt, epochs=steps, batch_size=len(x),
                     shuffle=False, verbose=0)


# ----------------------------------------------------------------------------- XOR by hand


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_xor_network_by_hand(backend, dtype):
    """h = ReLU(x W + c) with W = ones((2, 2)), c = (0, -1); y = h w with w = (1, -2), b = 0:
    (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0 exactly."""
    model = fn.Sequential([fn.Dense(2, 2), fn.ReLU(), fn.Dense(2, 1)], backend=backend, dtype=dtype)
    set_params(model, np.ones((2, 2)), [0.0, -1.0], [[1.0], [-2.0]], [0.0])
    out = model.predict(XOR_X.astype(dtype))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, XOR_Y.reshape(4, 1))
    # the hidden layer maps the four points onto a line where the output is linear
    hidden = np.maximum(XOR_X @ np.ones((2, 2)) + [0.0, -1.0], 0)
    np.testing.assert_array_equal(hidden, [[0, 0], [1, 0], [1, 0], [2, 1]])


# ----------------------------------------------------------------------------- least squares


def test_least_squares_fit_to_xor_gives_w_zero_b_half(backend):
    """A linear model fitted to XOR with the quadratic cost is w = 0, b = 1/2: the best a
    linear model can do is to output 1/2 everywhere."""
    model = fn.Sequential([fn.Dense(2, 1)], backend=backend, dtype="float64", seed=0)
    history = sgd_fit(model, XOR_X, XOR_Y.reshape(4, 1), fn.MSELoss(), lr=1.0, steps=400)
    w, b = (host(p.data) for p in model.parameters())
    np.testing.assert_allclose(w, np.zeros((2, 1)), atol=1e-8)
    np.testing.assert_allclose(b, [0.5], atol=1e-8)
    np.testing.assert_allclose(model.predict(XOR_X), 0.5, atol=1e-8)
    assert history.history["loss"][-1] == pytest.approx(0.5 * 4 * 0.25 / 4, rel=1e-8)  # ½·mean of ¼

    # the closed form: normal equations A^T A theta = A^T y with A = [x, 1]
    a = np.hstack([XOR_X, np.ones((4, 1))])
    theta = np.linalg.solve(a.T @ a, a.T @ XOR_Y)
    np.testing.assert_allclose(theta, [0.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(np.concatenate([w.ravel(), b]), theta, atol=1e-8)


# ----------------------------------------------------------------------------- saturation


def sigmoid_net(backend, w_out_in, b, final_sigmoid=True):
    """f(x) = sigmoid(W x + b) for W given out x in (stored as the Dense weight W.T)."""
    layers = [fn.Dense(2, 2)] + ([fn.Sigmoid()] if final_sigmoid else [])
    model = fn.Sequential(layers, backend=backend, dtype="float64", seed=0)
    set_params(model, np.asarray(w_out_in, dtype=float).T, b)
    return model


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("w, b, expected", [
    ([[2, -3], [-1, 4]], [1, -2], [0.119, 0.881]),
    ([[0, 0], [0, 5]], [-5, 0], [0.007, 0.993]),
])
def test_sigmoid_outputs(backend, w, b, expected):
    out = sigmoid_net(backend, w, b).predict(np.array([[0.0, 1.0]]))
    np.testing.assert_array_equal(np.round(out, 3), [expected])


def test_saturated_sigmoid_learns_slowly_with_quadratic_cost(backend):
    """From the saturated start (outputs 0.007 and 0.993, target (1, 0)) the quadratic cost's
    gradient carries the factor sigma'(z) ~ 0.0066 and barely moves; cross-entropy's gradient
    w.r.t. the logit is a - y and the outputs get within 0.1 of their targets in the same 100 steps."""
    x, y = np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])
    w, b, steps, lr = [[0, 0], [0, 5]], [-5, 0], 100, 0.1

    quadratic = sigmoid_net(backend, w, b, final_sigmoid=True)
    h_quad = sgd_fit(quadratic, x, y, fn.MSELoss(), lr, steps)
    a_quad = quadratic.predict(x)[0]

    logits = sigmoid_net(backend, w, b, final_sigmoid=False)    # sigmoid inside the loss
    h_ce = sgd_fit(logits, x, y, fn.BCEWithLogitsLoss(), lr, steps)
    a_ce = sigmoid(logits.predict(x)[0])

    err_quad, err_ce = np.abs(y[0] - a_quad), np.abs(y[0] - a_ce)
    assert err_quad[0] > 0.99 and err_quad[1] > 0.99          # still saturated and wrong
    assert err_ce[0] < 0.1 and err_ce[1] < 0.1                # learnt
    assert np.all(err_ce * 10 < err_quad)                     # by a clear factor (about 14)
    # relative decrease of each cost over the run
    quad_drop = 1 - h_quad.history["loss"][-1] / h_quad.history["loss"][0]
    ce_drop = 1 - h_ce.history["loss"][-1] / h_ce.history["loss"][0]
    assert quad_drop < 0.02 and ce_drop > 0.95


# ----------------------------------------------------------------------------- backprop by hand


def test_computational_graph_backward(backend):
    """f = (x + y) z at x = -2, y = 5, z = -4: f = -12, df/dx = df/dy = z = -4, df/dz = q = 3.

    Mapping onto a two-layer Sequential (no biases used, both 0):

    * layer 0, Dense(2, 1) with weight [[1], [1]], computes q = x + y from the input (x, y);
    * layer 1, Dense(1, 1) with weight [[z]], computes f = q z.

    ``model.backward(1)`` then gives the gradient w.r.t. the input, (df/dx, df/dy) = (z, z);
    the gradient of layer 1's weight is df/dz = q; and layer 0's weights get (x z, y z).
    """
    model = fn.Sequential([fn.Dense(2, 1), fn.Dense(1, 1)], backend=backend, dtype="float64")
    set_params(model, [[1.0], [1.0]], [0.0], [[-4.0]], [0.0])
    model.zero_grad()
    f = host(model.forward(np.array([[-2.0, 5.0]]), training=True))
    assert f[0, 0] == -12.0
    gx = host(model.backward(model.be.to_device(np.ones((1, 1)))))
    np.testing.assert_array_equal(gx, [[-4.0, -4.0]])               # df/dx, df/dy
    w0, b0, w1, b1 = (host(p.grad) for p in model.parameters())
    np.testing.assert_array_equal(w1, [[3.0]])                      # df/dz = q
    np.testing.assert_array_equal(b1, [1.0])
    np.testing.assert_array_equal(w0, [[8.0], [-20.0]])             # (x z, y z)
    np.testing.assert_array_equal(b0, [-4.0])                       # df/dq
