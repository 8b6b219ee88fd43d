"""Layers inside a Sequential: one forward and backward on host copies, and the check that a
backend computes what the "numpy" backend computes (the harness of the layer and conv tests)."""
import numpy as np

import fastnn as fn

from .backends import host


def as_list(layers):
    """A layer factory's result as a list (a factory returns one layer or a list of them)."""
    return list(layers) if isinstance(layers, (list, tuple)) else [layers]


def forward_backward(model, x, dy):
    """zero_grad, ``forward(x, training=True)``, ``backward(dy)``: host copies of the output, the
    input gradient and every parameter's gradient. ``dy`` may be a function of the output's
    shape (drawn once the output is known)."""
    model.zero_grad()
    out = host(model.forward(x, training=True))
    if callable(dy):
        dy = dy(out.shape)
    gx = host(model.backward(model.be.to_device(dy)))
    return out, gx, [host(p.grad) for p in model.parameters()]


def assert_layer_matches_numpy(factory, x_shape, other, seed, data_seed):
    """One forward and backward of ``Sequential(factory())`` (float64, model seed ``seed``) on
    backend ``other`` and on "numpy", on the same input (``default_rng(data_seed)``) and output
    gradient (``default_rng(data_seed + 1)``): the output, the input gradient, the flat
    parameter gradient and the weights agree to 1e-10 (cheap even in the CUDA simulator)."""
    x = np.random.default_rng(data_seed).standard_normal(x_shape)
    results = []
    for name in ("numpy", other):
        model = fn.Sequential(as_list(factory()), backend=name, dtype="float64", seed=seed)
        out, gx, _ = forward_backward(
            model, x, lambda shape: np.random.default_rng(data_seed + 1).standard_normal(shape))
        results.append((out, gx, host(model.flat_grads), model.get_weights()))
    for what, a, b in zip(("forward", "input gradient", "parameter gradients", "weights"), *results):
        np.testing.assert_allclose(b, a, atol=1e-10, rtol=1e-10, err_msg=f"{other} vs numpy: {what}")
