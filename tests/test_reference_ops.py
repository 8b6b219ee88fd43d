"""Every op of kernels/reference.py, called directly, against float64 central differences and
(when installed) against PyTorch: forward values and gradients via torch autograd; then every
other backend's kernels against the reference, op by op, in float64 and float32.

An op is described once (an ``Op`` or ``LossOp`` below); the tests are parametrised over the
table of ops and over several shapes per op.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import fastnn as fn
from fastnn.kernels import reference as ref
from fastnn.kernels.contract import Activation
from conftest import BACKENDS, host_callable
from gradcheck import host, numerical_grad

ATOL, RTOL = 1e-7, 1e-6


def away_from_zero(rng, shape, margin=0.05):
    """Standard normal values pushed at least ``margin`` away from 0 (kinks of ReLU & co.)."""
    u = rng.standard_normal(shape)
    return np.sign(u) * (margin + np.abs(u))


# ----------------------------------------------------------------------------- the op table


@dataclass
class Op:
    """A differentiable op: ``forward(k, inputs) -> out``; ``backward(k, inputs, out, dy) -> grads``
    (a dict over ``diff``) with the kernels of backend module ``k`` (``ref`` unless comparing
    backends); ``torch(t, inputs) -> tensor`` the same op in PyTorch."""
    name: str
    shapes: list
    make: Callable          # (rng, shape) -> dict of float64 arrays (and other arguments)
    forward: Callable
    backward: Callable
    torch: Callable
    diff: tuple = ("x",)
    extra: dict = field(default_factory=dict)


def make_dense(rng, shape):
    n, fin, fout = shape
    return {"x": rng.standard_normal((n, fin)), "w": rng.standard_normal((fin, fout)),
            "b": rng.standard_normal(fout)}


def empty_like(k, a, shape=None):
    """An output buffer of backend ``k`` like ``a`` (or of ``shape`` and ``a``'s dtype)."""
    return k.empty(a.shape if shape is None else shape, a.dtype)


def dense_forward(k, i):
    out = empty_like(k, i["x"], (i["x"].shape[0], i["w"].shape[1]))
    k.dense_forward(i["x"], i["w"], i["b"], out)
    return out


def dense_backward(k, i, out, dy):
    dx, dw, db = empty_like(k, i["x"]), empty_like(k, i["w"]), empty_like(k, i["b"])
    k.dense_backward(i["x"], i["w"], dy, dx, dw, db)
    return {"x": dx, "w": dw, "b": db}


def torch_dense(t, i):
    return i["x"] @ i["w"] + i["b"]


def activation_op(name, kernel, torch_fn, shapes, kinked=False, **kwargs):
    """An element-wise / row-wise activation ``<kernel>_forward(x, out)``, ``_backward(x, y, dy, dx)``."""
    def make(rng, shape):
        return {"x": away_from_zero(rng, shape) if kinked else 2 * rng.standard_normal(shape)}

    def forward(k, i):
        out = empty_like(k, i["x"])
        getattr(k, kernel + "_forward")(i["x"], out, **kwargs)
        return out

    def backward(k, i, out, dy):
        dx = empty_like(k, i["x"])
        getattr(k, kernel + "_backward")(i["x"], out, dy, dx, **kwargs)
        return {"x": dx}

    return Op(name, shapes, make, forward, backward, lambda t, i: torch_fn(t, i["x"]))


def prelu_op(name, shapes, per_axis1):
    def make(rng, shape):
        n_slopes = shape[1] if per_axis1 else 1
        return {"x": away_from_zero(rng, shape), "a": rng.uniform(0.1, 0.5, n_slopes)}

    def forward(k, i):
        out = empty_like(k, i["x"])
        k.prelu_forward(i["x"], i["a"], out)
        return out

    def backward(k, i, out, dy):
        dx, da = empty_like(k, i["x"]), empty_like(k, i["a"])
        k.prelu_backward(i["x"], i["a"], dy, dx, da)
        return {"x": dx, "a": da}

    def torch_prelu(t, i):
        return t.nn.functional.prelu(i["x"], i["a"])

    return Op(name, shapes, make, forward, backward, torch_prelu, diff=("x", "a"))


def maxout_op(pieces):
    def make(rng, shape):
        n, f = shape
        return {"x": rng.standard_normal((n, f * pieces))}

    def forward(k, i):
        n, f = i["x"].shape[0], i["x"].shape[1] // pieces
        out, argmax = empty_like(k, i["x"], (n, f)), k.empty((n, f), np.intp)
        k.maxout_forward(i["x"], out, argmax, pieces)
        i["argmax"] = argmax
        return out

    def backward(k, i, out, dy):
        dx = empty_like(k, i["x"])
        k.maxout_backward(i["argmax"], dy, dx, pieces)
        return {"x": dx}

    def torch_maxout(t, i):
        n = i["x"].shape[0]
        return i["x"].reshape(n, -1, pieces).max(dim=2).values

    return Op(f"maxout{pieces}", [(1, 1), (4, 3), (5, 6)], make, forward, backward, torch_maxout)


TORCH_ACTS = {
    Activation.IDENTITY: lambda t, z: z,
    Activation.SIGMOID: lambda t, z: t.sigmoid(z),
    Activation.TANH: lambda t, z: t.tanh(z),
    Activation.RELU: lambda t, z: t.relu(z),
}


def dense_act_op(act):
    def forward(k, i):
        out = empty_like(k, i["x"], (i["x"].shape[0], i["w"].shape[1]))
        k.dense_act_forward(i["x"], i["w"], i["b"], out, act)
        return out

    def backward(k, i, out, dy):
        dx, dw, db = empty_like(k, i["x"]), empty_like(k, i["w"]), empty_like(k, i["b"])
        dz = empty_like(k, out)
        k.dense_act_backward(i["x"], i["w"], out, dy, dz, dx, dw, db, act)
        return {"x": dx, "w": dw, "b": db}

    return Op(f"dense_act_{act.name.lower()}", DENSE_SHAPES, make_dense, forward, backward,
              lambda t, i: TORCH_ACTS[act](t, torch_dense(t, i)), diff=("x", "w", "b"))


DENSE_SHAPES = [(1, 1, 1), (3, 5, 4), (8, 2, 7)]            # (N, in_features, out_features)
ELEMENTWISE_SHAPES = [(1, 1), (4, 6), (2, 3, 4, 5)]
ROW_SHAPES = [(1, 1), (1, 5), (6, 3), (4, 10)]              # (N, K) for softmax & co.

OPS = [
    Op("dense", DENSE_SHAPES, make_dense, dense_forward, dense_backward, torch_dense,
       diff=("x", "w", "b")),
    activation_op("identity", "identity", lambda t, x: x, ELEMENTWISE_SHAPES),
    activation_op("sigmoid", "sigmoid", lambda t, x: t.sigmoid(x), ELEMENTWISE_SHAPES),
    activation_op("tanh", "tanh", lambda t, x: t.tanh(x), ELEMENTWISE_SHAPES),
    activation_op("relu", "relu", lambda t, x: t.relu(x), ELEMENTWISE_SHAPES, kinked=True),
    activation_op("leaky_relu", "leaky_relu", lambda t, x: t.nn.functional.leaky_relu(x, 0.01),
                  ELEMENTWISE_SHAPES, kinked=True),
    activation_op("leaky_relu_0.2", "leaky_relu", lambda t, x: t.nn.functional.leaky_relu(x, 0.2),
                  ELEMENTWISE_SHAPES, kinked=True, negative_slope=0.2),
    activation_op("softmax", "softmax", lambda t, x: t.softmax(x, dim=1), ROW_SHAPES),
    activation_op("log_softmax", "log_softmax", lambda t, x: t.log_softmax(x, dim=1), ROW_SHAPES),
    prelu_op("prelu_shared", [(1, 1), (4, 6), (2, 3, 4, 5)], per_axis1=False),
    prelu_op("prelu_per_feature", [(1, 3), (4, 6)], per_axis1=True),
    prelu_op("prelu_per_channel", [(2, 3, 4, 5), (1, 2, 3, 3)], per_axis1=True),
    maxout_op(2),
    maxout_op(3),
] + [dense_act_op(act) for act in ref.ACTIVATIONS]

OP_CASES = [pytest.param(op, shape, id=f"{op.name}-{'x'.join(map(str, shape))}")
            for op in OPS for shape in op.shapes]


def test_op_table_covers_every_activation():
    assert {op.name for op in OPS} >= {f"dense_act_{a.name.lower()}" for a in ref.ACTIVATIONS}


@pytest.mark.parametrize("op, shape", OP_CASES)
def test_op_gradient_matches_central_differences(op, shape):
    rng = np.random.default_rng(0)
    inputs = op.make(rng, shape)
    out = op.forward(ref, inputs)
    dy = rng.standard_normal(out.shape)
    analytic = op.backward(ref, inputs, out, dy)
    for name in op.diff:
        numeric = numerical_grad(lambda: float(np.sum(op.forward(ref, inputs) * dy)), inputs[name])
        np.testing.assert_allclose(analytic[name], numeric, atol=ATOL, rtol=RTOL,
                                   err_msg=f"{op.name}: gradient w.r.t. {name}")


@pytest.mark.torch
@pytest.mark.parametrize("op, shape", OP_CASES)
def test_op_matches_torch(op, shape, torch):
    rng = np.random.default_rng(1)
    inputs = op.make(rng, shape)
    out = op.forward(ref, inputs)
    dy = rng.standard_normal(out.shape)
    grads = op.backward(ref, inputs, out, dy)
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in op.diff)
               for k, v in inputs.items() if k in op.diff}
    t_out = op.torch(torch, tensors)
    np.testing.assert_allclose(out, t_out.detach().numpy(), atol=1e-12, rtol=1e-12,
                               err_msg=f"{op.name}: forward")
    t_out.backward(torch.tensor(dy))
    for name in op.diff:
        np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), atol=1e-12, rtol=1e-10,
                                   err_msg=f"{op.name}: gradient w.r.t. {name}")


# ----------------------------------------------------------------------------- details of ops


def test_dense_backward_accumulates_and_skips_dx():
    rng = np.random.default_rng(2)
    i = make_dense(rng, (4, 3, 2))
    dy = rng.standard_normal((4, 2))
    once = dense_backward(ref, i, None, dy)
    dw, db = np.ones_like(i["w"]), np.ones_like(i["b"])
    ref.dense_backward(i["x"], i["w"], dy, None, dw, db, accumulate=True)   # dx=None: first layer
    np.testing.assert_allclose(dw, 1 + once["w"], rtol=1e-14)
    np.testing.assert_allclose(db, 1 + once["b"], rtol=1e-14)


@pytest.mark.parametrize("act", sorted(ref.ACTIVATIONS), ids=lambda a: a.name.lower())
def test_dense_act_backward_accumulates(act):
    op = dense_act_op(act)
    rng = np.random.default_rng(3)
    i = make_dense(rng, (4, 3, 2))
    out = op.forward(ref, i)
    dy = rng.standard_normal(out.shape)
    once = op.backward(ref, i, out, dy)
    dw, db, dz = np.full_like(i["w"], 2.0), np.full_like(i["b"], 2.0), np.empty_like(out)
    ref.dense_act_backward(i["x"], i["w"], out, dy, dz, None, dw, db, act, accumulate=True)
    np.testing.assert_allclose(dw, 2 + once["w"], rtol=1e-14)
    np.testing.assert_allclose(db, 2 + once["b"], rtol=1e-14)


@pytest.mark.parametrize("shape, n_slopes", [((4, 6), 1), ((4, 6), 6), ((2, 3, 4, 5), 3)])
def test_prelu_backward_accumulates(shape, n_slopes):
    rng = np.random.default_rng(4)
    x, a, dy = away_from_zero(rng, shape), np.full(n_slopes, 0.25), rng.standard_normal(shape)
    dx, da = np.empty(shape), np.empty(n_slopes)
    ref.prelu_backward(x, a, dy, dx, da)
    da2 = np.full(n_slopes, 1.0)
    ref.prelu_backward(x, a, dy, dx, da2, accumulate=True)
    np.testing.assert_allclose(da2, 1 + da, rtol=1e-14)


def test_prelu_per_channel_slopes_act_on_axis_1():
    x = -np.ones((1, 2, 2, 2))
    out = np.empty_like(x)
    ref.prelu_forward(x, np.array([0.1, 0.3]), out)
    np.testing.assert_array_equal(out[0, 0], -0.1 * np.ones((2, 2)))
    np.testing.assert_array_equal(out[0, 1], -0.3 * np.ones((2, 2)))


def test_maxout_takes_the_maximum_of_consecutive_groups():
    x = np.array([[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]])
    out, argmax = np.empty((1, 2)), np.empty((1, 2), dtype=np.intp)
    ref.maxout_forward(x, out, argmax, 3)
    np.testing.assert_array_equal(out, [[5.0, -1.0]])
    np.testing.assert_array_equal(argmax, [[1, 0]])
    dx = np.empty_like(x)
    ref.maxout_backward(argmax, np.array([[10.0, 20.0]]), dx, 3)
    np.testing.assert_array_equal(dx, [[0, 10, 0, 20, 0, 0]])


@pytest.mark.parametrize("kernel", ["sigmoid", "tanh", "softmax", "log_softmax"])
def test_activations_are_finite_for_huge_inputs(kernel):
    x = np.array([[1000.0, -1000.0, 0.0], [-800.0, 700.0, 1e300]])
    out = np.empty_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        getattr(ref, kernel + "_forward")(x, out)
    assert np.isfinite(out).all()
    if kernel == "sigmoid":
        np.testing.assert_array_equal(out[0], [1.0, 0.0, 0.5])
    if kernel == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_relu_subgradient_at_zero_is_zero():
    x = np.array([[0.0, -1.0, 2.0]])
    y = np.empty_like(x)
    ref.relu_forward(x, y)
    dx = np.empty_like(x)
    ref.relu_backward(x, y, np.ones_like(x), dx)
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 1.0]])


def test_count_correct():
    out = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert ref.count_correct(out, np.array([1, 1, 1])) == 2


def test_take_rows_and_copy_into():
    a = np.arange(12.0).reshape(4, 3)
    out = np.empty((2, 3))
    ref.take_rows(a, np.array([3, 1]), out)
    np.testing.assert_array_equal(out, a[[3, 1]])
    dst = ref.zeros((2, 3), np.float32)
    ref.copy_into(dst, out)
    np.testing.assert_array_equal(dst, out)
    assert ref.empty((2, 2), np.float64).shape == (2, 2)
    assert ref.to_host(ref.to_device(a)) is a


# ----------------------------------------------------------------------------- losses


@dataclass
class LossOp:
    """``kernel(out, target, grad) -> float``; ``formula`` the loss in plain NumPy, ``torch`` in PyTorch."""
    name: str
    make: Callable          # (rng, (N, K)) -> (out, target)
    formula: Callable
    torch: Callable


def _labels(rng, n, k):
    return rng.integers(0, k, size=n).astype(np.int64)


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


LOSSES = [
    LossOp("mse_loss",
           lambda rng, s: (rng.standard_normal(s), rng.standard_normal(s)),
           lambda a, y: 0.5 * np.sum((y - a) ** 2) / len(a),
           lambda t, a, y: 0.5 * t.nn.functional.mse_loss(a, y, reduction="sum") / a.shape[0]),
    LossOp("cross_entropy_loss",
           lambda rng, s: (2 * rng.standard_normal(s), _labels(rng, *s)),
           lambda z, y: -np.mean(_log_softmax(z)[np.arange(len(y)), y]),
           lambda t, z, y: t.nn.functional.cross_entropy(z, y)),
    LossOp("nll_loss",
           lambda rng, s: (_log_softmax(rng.standard_normal(s)), _labels(rng, *s)),
           lambda lp, y: -np.mean(lp[np.arange(len(y)), y]),
           lambda t, lp, y: t.nn.functional.nll_loss(lp, y)),
    LossOp("bce_with_logits_loss",
           lambda rng, s: (2 * rng.standard_normal(s), rng.uniform(0, 1, s)),
           lambda z, y: np.sum(-y * np.log(1 / (1 + np.exp(-z))) - (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))
           / len(z),
           lambda t, z, y: t.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
           / z.shape[0]),
]
LOSS_SHAPES = [(1, 1), (1, 4), (5, 3), (16, 10)]
LOSS_CASES = [pytest.param(op, shape, id=f"{op.name}-{'x'.join(map(str, shape))}")
              for op in LOSSES for shape in LOSS_SHAPES]


def run_loss(op, out, target, k=ref):
    grad = empty_like(k, out)
    value = getattr(k, op.name)(out, target, grad)
    assert isinstance(value, float)
    return value, grad


@pytest.mark.parametrize("op, shape", LOSS_CASES)
def test_loss_value_and_gradient(op, shape):
    rng = np.random.default_rng(5)
    out, target = op.make(rng, shape)
    value, grad = run_loss(op, out, target)
    np.testing.assert_allclose(value, op.formula(out, target), rtol=1e-12, atol=1e-14)
    numeric = numerical_grad(lambda: run_loss(op, out, target)[0], out)
    np.testing.assert_allclose(grad, numeric, atol=ATOL, rtol=RTOL)


@pytest.mark.torch
@pytest.mark.parametrize("op, shape", LOSS_CASES)
def test_loss_matches_torch(op, shape, torch):
    rng = np.random.default_rng(6)
    out, target = op.make(rng, shape)
    value, grad = run_loss(op, out, target)
    t_out = torch.tensor(out, requires_grad=True)
    t_value = op.torch(torch, t_out, torch.from_numpy(target))
    t_value.backward()
    np.testing.assert_allclose(value, t_value.item(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, t_out.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_mse_gradient_is_residual_over_n():
    a, y = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[0.0, 2.0], [1.0, 1.0]])
    value, grad = run_loss(LOSSES[0], a, y)
    assert value == pytest.approx(0.5 * (1 + 0 + 4 + 16) / 2)
    np.testing.assert_allclose(grad, (a - y) / 2)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 0.0], [-1000.0, 0.0, 1000.0]])
    labels = np.array([0, 1, 0])
    grad = np.empty_like(logits)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        value = ref.cross_entropy_loss(logits, labels, grad)
    # -log p: row 0 -> 0, row 1 -> log 2, row 2 -> 2000
    assert value == pytest.approx((0 + np.log(2) + 2000) / 3, rel=1e-12)
    expected = np.array([[0, 0, 0], [0.5, -0.5, 0], [-1, 0, 1]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-15)


@pytest.mark.torch
def test_cross_entropy_huge_logits_match_torch(torch):
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 999.0, 0.0], [-1000.0, 0.0, 1000.0]])
    labels = np.array([0, 1, 0])
    value, grad = run_loss(LOSSES[1], logits, labels)
    t = torch.tensor(logits, requires_grad=True)
    tv = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels))
    tv.backward()
    assert value == pytest.approx(tv.item(), rel=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), atol=1e-15)


def test_bce_with_logits_is_stable_for_huge_logits():
    z = np.array([[1000.0, -1000.0, 1000.0, -1000.0]])
    y = np.array([[1.0, 0.0, 0.0, 1.0]])
    grad = np.empty_like(z)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        value = ref.bce_with_logits_loss(z, y, grad)
    assert value == pytest.approx(2000.0, rel=1e-12)
    np.testing.assert_allclose(grad, [[0.0, 0.0, 1.0, -1.0]])


# ----------------------------------------------------------------------------- sgd_step


def sgd_by_hand(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    """PyTorch's SGD written out (plus the L1 term), one step per gradient in ``grads``."""
    p = p.copy()
    v = None
    for step, g in enumerate(grads):
        d = g + weight_decay * p + l1 * np.sign(p)
        if momentum:
            v = d.copy() if step == 0 else momentum * v + (1 - dampening) * d
            d = d + momentum * v if nesterov else v
        p = p - lr * d
    return p


SGD_CONFIGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.5},
    {"momentum": 0.9, "nesterov": True},
    {"weight_decay": 0.1},
    {"l1": 0.05},
    {"momentum": 0.5, "nesterov": True, "weight_decay": 0.01, "l1": 0.02},
]


def sgd_id(hyper):
    return ",".join(f"{k}={v}" for k, v in hyper.items()) or "plain"


def run_sgd_step(p, grads, lr, k=ref, **hyper):
    buf = k.to_device(np.full_like(p, 123.0)) if hyper.get("momentum") else None   # step 1 overwrites
    p = k.to_device(p.copy())
    for step, g in enumerate(grads):
        k.sgd_step(p, k.to_device(g), buf, lr, first_step=step == 0, **hyper)
    return host(p)


@pytest.mark.parametrize("hyper", SGD_CONFIGS, ids=sgd_id)
def test_sgd_step_matches_the_formula(hyper):
    rng = np.random.default_rng(7)
    p = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(5)]
    np.testing.assert_allclose(run_sgd_step(p, grads, 0.1, **hyper), sgd_by_hand(p, grads, 0.1, **hyper),
                               rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("nesterov, expected", [(False, [0.95, 0.855]), (True, [0.905, 0.7695])])
def test_sgd_momentum_by_hand_numbers(nesterov, expected):
    """p = 1, g = 0.5 twice, lr 0.1, momentum 0.9: buf 0.5 then 0.95."""
    p, buf = np.array([1.0]), np.zeros(1)
    for step, want in enumerate(expected):
        ref.sgd_step(p, np.array([0.5]), buf, 0.1, momentum=0.9, nesterov=nesterov, first_step=step == 0)
        assert p[0] == pytest.approx(want, rel=1e-14)


@pytest.mark.torch
@pytest.mark.parametrize("hyper", [h for h in SGD_CONFIGS if "l1" not in h], ids=sgd_id)
def test_sgd_step_matches_torch(hyper, torch):
    rng = np.random.default_rng(8)
    p = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(5)]
    tp = torch.tensor(p, requires_grad=True)
    opt = torch.optim.SGD([tp], lr=0.1, **hyper)
    for g in grads:
        tp.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(run_sgd_step(p, grads, 0.1, **hyper), tp.detach().numpy(),
                               rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------- other backends

OTHER_BACKENDS = [b for b in BACKENDS if b != "numpy"]
TOLERANCE = {"float64": {"rtol": 1e-12, "atol": 1e-12}, "float32": {"rtol": 2e-5, "atol": 2e-5}}


def kernels_of(name):
    return fn.get_backend(name)


def on_backend(k, arrays, dtype):
    """Float arrays cast to ``dtype`` and moved to backend ``k``; integer arrays moved as they are."""
    return {name: k.to_device(np.ascontiguousarray(a, dtype=dtype) if a.dtype.kind == "f" else a)
            for name, a in arrays.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op, shape", OP_CASES)
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_op_matches_reference(name, op, shape, dtype):
    k = kernels_of(name)
    rng = np.random.default_rng(9)
    inputs = op.make(rng, shape)
    ref_inputs = on_backend(ref, inputs, dtype)
    expected_out = op.forward(ref, ref_inputs)
    dy = rng.standard_normal(expected_out.shape).astype(dtype)
    expected = op.backward(ref, ref_inputs, expected_out, dy)

    k_inputs = on_backend(k, inputs, dtype)
    out = op.forward(k, k_inputs)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(host(out), expected_out, **TOLERANCE[dtype],
                               err_msg=f"{name} {op.name} forward")
    grads = op.backward(k, k_inputs, out, k.to_device(dy))
    for g in op.diff:
        assert grads[g].dtype == np.dtype(dtype)
        np.testing.assert_allclose(host(grads[g]), expected[g], **TOLERANCE[dtype],
                                   err_msg=f"{name} {op.name} gradient w.r.t. {g}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op, shape", LOSS_CASES)
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_loss_matches_reference(name, op, shape, dtype):
    k = kernels_of(name)
    out, target = op.make(np.random.default_rng(10), shape)
    ref_args = on_backend(ref, {"out": out, "target": target}, dtype)
    k_args = on_backend(k, {"out": out, "target": target}, dtype)
    expected_value, expected_grad = run_loss(op, ref_args["out"], ref_args["target"])
    value, grad = run_loss(op, k_args["out"], k_args["target"], k)
    tol = TOLERANCE[dtype]
    assert value == pytest.approx(expected_value, rel=tol["rtol"], abs=tol["atol"])
    np.testing.assert_allclose(host(grad), expected_grad, **TOLERANCE[dtype])


@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_cross_entropy_is_stable_for_huge_logits(name):
    k = kernels_of(name)
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 0.0], [-1000.0, 0.0, 1000.0]])
    labels = np.array([0, 1, 0])
    for dtype in ("float64", "float32"):
        value, grad = run_loss(LOSSES[1], k.to_device(logits.astype(dtype)), k.to_device(labels), k)
        assert value == pytest.approx((np.log(2) + 2000) / 3, rel=1e-6)
        np.testing.assert_allclose(host(grad), np.array([[0, 0, 0], [0.5, -0.5, 0], [-1, 0, 1]]) / 3,
                                   atol=1e-7)


@pytest.mark.parametrize("hyper", SGD_CONFIGS, ids=sgd_id)
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_sgd_step_matches_reference(name, hyper):
    k = kernels_of(name)
    rng = np.random.default_rng(11)
    p = rng.standard_normal(37)
    grads = [rng.standard_normal(37) for _ in range(4)]
    np.testing.assert_allclose(run_sgd_step(p, grads, 0.1, k, **hyper), run_sgd_step(p, grads, 0.1, **hyper),
                               rtol=1e-13, atol=1e-14)
    p32, grads32 = p.astype(np.float32), [g.astype(np.float32) for g in grads]
    np.testing.assert_allclose(run_sgd_step(p32, grads32, 0.1, k, **hyper),
                               run_sgd_step(p32, grads32, 0.1, **hyper), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_prelu_backward_accumulates_as_the_reference(name, dtype):
    """prelu_backward adding into da (shared, per-feature and per-channel slopes), which the op
    table does not reach."""
    k = host_callable(kernels_of(name))
    rng = np.random.default_rng(12)
    for shape, n_slopes in (((4, 6), 1), ((4, 6), 6), ((2, 3, 4, 5), 3)):
        x, dy = away_from_zero(rng, shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
        a = rng.uniform(0.1, 0.5, n_slopes).astype(dtype)
        results = []
        for kern in (ref, k):
            dx, da = np.empty_like(x), np.full(n_slopes, 1.5, dtype)
            kern.prelu_backward(x, a, dy, dx, da, accumulate=True)
            results.append((dx, da))
        np.testing.assert_allclose(results[1][0], results[0][0], **TOLERANCE[dtype], err_msg="dx")
        np.testing.assert_allclose(results[1][1], results[0][1], **TOLERANCE[dtype], err_msg="da")


def _maxout_run(kern, x, dy, pieces):
    n, f = dy.shape
    out, argmax, dx = np.empty((n, f), x.dtype), np.empty((n, f), np.intp), np.empty_like(x)
    with np.errstate(invalid="ignore"):
        kern.maxout_forward(x, out, argmax, pieces)
    kern.maxout_backward(argmax, dy, dx, pieces)
    return {"out": out, "argmax": argmax, "dx": dx}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_maxout_picks_the_reference_winner_on_ties_and_infinities(name, dtype):
    """Ties go to the first maximum, a group of -inf to its first element, as the reference."""
    x = np.array([[1.0, 1.0, 0.5, -np.inf, -np.inf, -np.inf, 2.0, 3.0, 3.0],
                  [0.0, -0.0, 0.0, -1.0, -1.0, -2.0, 7.0, np.inf, np.inf]], dtype)
    dy = np.arange(1.0, 7.0, dtype=dtype).reshape(2, 3)
    expected, got = _maxout_run(ref, x, dy, 3), _maxout_run(host_callable(kernels_of(name)), x, dy, 3)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_maxout_lets_a_nan_win_as_the_reference(name, dtype):
    """A NaN in a group wins (the first NaN), as NumPy's argmax in the reference: the output
    shows the NaN instead of hiding it."""
    x = np.array([[2.0, np.nan, 3.0, np.nan, 1.0, np.nan]], dtype)
    dy = np.array([[1.0, 2.0]], dtype)
    expected, got = _maxout_run(ref, x, dy, 3), _maxout_run(host_callable(kernels_of(name)), x, dy, 3)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
