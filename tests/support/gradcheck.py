"""Gradient checks against central differences, as Chainer's ``check_backward``.

Everything runs in float64. The functions compare host copies, so they work for host
backends (NumPy arrays) and for device backends (arrays moved with ``to_host``/``to_device``).

* :func:`numerical_grad` - central differences of a scalar function w.r.t. one array;
* :func:`check_layer_grad` - one layer (or a short stack) inside a Sequential;
* :func:`check_loss_grad` - a loss w.r.t. the network output;
* :func:`check_model_grad` - a whole model plus loss, w.r.t. the input and every parameter.
"""
import numpy as np

import fastnn as fn

from .backends import host
from .layers import as_list, forward_backward
from .tolerances import GRADIENT

ATOL, RTOL = GRADIENT["atol"], GRADIENT["rtol"]


def numerical_grad(f, a, eps=1e-6):
    """Central differences of the scalar ``f()`` w.r.t. every element of the host array ``a``.

    ``a`` is perturbed in place, one element at a time, and restored exactly afterwards.

    Returns
    -------
    ndarray of the shape of ``a``, float64
    """
    grad = np.zeros(a.shape, dtype=np.float64)
    for idx in np.ndindex(*a.shape):
        old = a[idx]
        a[idx] = old + eps
        f_plus = f()
        a[idx] = old - eps
        f_minus = f()
        a[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def assert_close(actual, expected, atol, rtol, what):
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol,
                               err_msg=f"analytic vs numerical gradient of {what}")


class _ParamAccess:
    """Host arrays to perturb for every parameter of ``model``, and how to push them back.

    On host backends ``Parameter.data`` is already a view into the flat buffer: it is perturbed
    in place, which also checks that the views really are what the model computes with. On a
    device backend a host copy of the flat buffer is perturbed and copied over after each change.
    """

    def __init__(self, model):
        self.model = model
        self.on_host = isinstance(model.flat_params, np.ndarray)
        if self.on_host:
            self.arrays = [p.data for p in model.parameters()]
        else:
            self.flat = model.get_weights()
            self.arrays = [self.flat[p.offset:p.offset + p.size].reshape(p.shape)
                           for p in model.parameters()]

    def sync(self):
        if not self.on_host:
            self.model.set_weights(self.flat)


def _check_model(model, x, scalar_and_grad, scalar, atol, rtol, eps):
    """Shared core: analytic gradients from ``scalar_and_grad()`` vs central differences."""
    gx, grads = scalar_and_grad()
    access = _ParamAccess(model)

    def f():
        access.sync()
        return scalar()

    assert_close(gx, numerical_grad(f, x, eps), atol, rtol, "the input x")
    for p, a, g in zip(model.parameters(), access.arrays, grads):
        assert_close(g, numerical_grad(f, a, eps), atol, rtol, f"parameter {p.name}")
    access.sync()


def _analytic(model, x, upstream):
    """zero_grad, forward(training=True), backward(upstream): (gx, [p.grad ...]) on the host."""
    _, gx, grads = forward_backward(model, x, upstream)
    return gx, grads


def check_layer_grad(layer_factory, x_shape, backend, atol=ATOL, rtol=RTOL, seed=0, eps=1e-6,
                     x=None):
    """Check a layer's input and parameter gradients against central differences.

    Builds ``fn.Sequential([layer_factory()], backend=backend, dtype="float64", seed=seed)``
    (the factory may also return a list of layers, e.g. Dense + ReLU to test the fused form),
    draws a float64 input ``x`` of ``x_shape`` (unless given) and a fixed random weighting
    ``R`` of the output, and differentiates ``L = sum(forward(x) * R)``: analytically with
    ``backward(R)``, numerically by perturbing ``x`` and every parameter.

    Returns the model (for further checks).
    """
    model = fn.Sequential(as_list(layer_factory()), backend=backend, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal(x_shape) if x is None else np.array(x, dtype=np.float64)
    out_shape = host(model.forward(x, training=True)).shape
    r = rng.standard_normal(out_shape)

    def scalar():
        return float(np.sum(host(model.forward(x, training=True)) * r))

    _check_model(model, x, lambda: _analytic(model, x, r), scalar, atol, rtol, eps)
    return model


def check_loss_grad(loss, out_shape, target, backend="numpy", atol=ATOL, rtol=RTOL, seed=0,
                    eps=1e-6, scale=1.0, out=None):
    """Check ``loss.backward()`` (the gradient w.r.t. the output) against central differences
    of ``loss(out, target)``; ``out`` is drawn as ``scale`` times standard normal unless given.

    Returns the loss value at ``out``.
    """
    be = fn.get_backend(backend)
    loss.bind(be)
    rng = np.random.default_rng(seed)
    out = scale * rng.standard_normal(out_shape) if out is None else np.array(out, dtype=np.float64)

    def scalar():
        return loss(be.to_device(out), target)

    value = scalar()
    analytic = host(loss.backward())
    assert_close(analytic, numerical_grad(scalar, out, eps), atol, rtol, f"{loss!r} w.r.t. out")
    return value


def check_model_grad(model, x, y, loss, atol=ATOL, rtol=RTOL, eps=1e-6):
    """Check a whole model plus loss: the gradient of ``loss(model.forward(x), y)`` w.r.t. ``x``
    and every parameter, analytic (forward, loss, ``loss.backward()``, ``model.backward``) vs
    central differences. The model should be float64."""
    loss.bind(model.be)
    x = np.array(x, dtype=np.float64)

    def scalar():
        return loss(model.forward(x, training=True), y)

    def analytic():
        model.zero_grad()
        loss(model.forward(x, training=True), y)
        gx = model.backward(loss.backward())
        return host(gx), [host(p.grad) for p in model.parameters()]

    _check_model(model, x, analytic, scalar, atol, rtol, eps)
