"""The op cases: how the suite runs every kernel op of the contract, written once.

A kernel namespace ``k`` is the reference (``fastnn.kernels.reference``), a host backend, one of
the cpu backend's own modules, or a device backend through :func:`support.host_callable`: every
function here takes host (NumPy) arrays and allocates each output pre-filled with NaN (integer
outputs with -1), so a kernel that leaves part of an output unwritten is caught.

* **Differentiable ops** (:class:`Op`: dense, the activations, PReLU, maxout, dense with a fused
  activation) and **losses** (:class:`LossOp`), each with its inputs, forward, backward (and
  accumulating backward) and its PyTorch form: the reference is checked against central
  differences and PyTorch over ``OPS`` and ``LOSSES``.
* **Runners** for the other ops (``run_sgd_steps``, ``run_optimizer_steps``, ``run_dropout``,
  ``run_batchnorm``, ``run_take_rows``, ``run_conv``, ``run_conv_act``, ``run_pool``,
  ``run_norms``): every variant of an op (written, accumulated, without dx) from given inputs,
  every output returned by name. ``SGD_CONFIGS`` and ``OPTIMIZER_CASES`` are the
  hyper-parameters the update rules are run with.
* **The table** ``OP_CASES``: one :class:`Case` per op and variant, ``run(k, rng, dtype)``
  drawing its inputs from ``rng``, with the row of ``support.tolerances`` its comparison uses.
  :func:`assert_case_matches_reference` runs a case on the reference and on ``k`` from the same
  seed and compares every output. The reference-op tests run the table on every backend; the
  conv, regularization and optimizer tests run the same runners over their own geometries,
  variants and implementations; the cuda tests record the kernels the table launches.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import fastnn as fn
from fastnn import convutil
from fastnn.kernels import reference as ref
from fastnn.kernels.contract import Activation

from .tolerances import tolerance


# ----------------------------------------------------------------------------- inputs and buffers


def nan(shape, dtype):
    """An output buffer of ``shape`` and ``dtype`` filled with NaN."""
    return np.full(shape, np.nan, dtype)


def nan_like(a):
    return np.full_like(a, np.nan)


def draw(rng, shape, dtype=np.float64, scale=1.0):
    """``scale`` times standard normal values, cast to ``dtype``."""
    return (scale * rng.standard_normal(shape)).astype(dtype)


def labels(rng, n, classes):
    """``n`` integer class labels in ``[0, classes)`` (int64)."""
    return rng.integers(0, classes, size=n).astype(np.int64)


def away_from_zero(rng, shape, margin=0.05):
    """Standard normal values pushed at least ``margin`` away from 0 (kinks of ReLU & co.)."""
    u = rng.standard_normal(shape)
    return np.sign(u) * (margin + np.abs(u))


def cast(arrays, dtype):
    """Float arrays cast to ``dtype`` (contiguous); integer arrays as they are."""
    return {name: np.ascontiguousarray(a, dtype=dtype) if a.dtype.kind == "f" else a
            for name, a in arrays.items()}


# ----------------------------------------------------------------------------- differentiable ops


@dataclass
class Op:
    """A differentiable op: ``forward(k, inputs) -> out``; ``backward(k, inputs, out, dy) -> grads``
    (a dict over ``diff``); ``accumulate(k, inputs, out, dy)`` (when the op has one) the outputs
    of the backward adding into its parameter gradients; ``torch(t, inputs) -> tensor`` the same
    op in PyTorch. ``saved`` names what the forward adds to ``inputs`` for the backward."""
    name: str
    shapes: list
    make: Callable          # (rng, shape) -> dict of float64 arrays (and other arguments)
    forward: Callable
    backward: Callable
    torch: Callable
    diff: tuple = ("x",)
    accumulate: Callable = None
    saved: tuple = ()
    extra: dict = field(default_factory=dict)


def run_op(op, k, inputs, dy):
    """Every output of ``op`` on ``k``: the forward's ``out`` (and what it saves), each gradient
    ``d<name>`` of the backward, and the accumulating backward's outputs. ``dy`` may be a
    function of the output's shape (drawn once the output is known)."""
    out = op.forward(k, inputs)
    if callable(dy):
        dy = dy(out.shape)
    grads = op.backward(k, inputs, out, dy)
    outputs = {"out": out, **{name: inputs[name] for name in op.saved},
               **{"d" + name: g for name, g in grads.items()}}
    if op.accumulate is not None:
        outputs.update(op.accumulate(k, inputs, out, dy))
    return outputs


def make_dense(rng, shape):
    n, fin, fout = shape
    return {"x": rng.standard_normal((n, fin)), "w": rng.standard_normal((fin, fout)),
            "b": rng.standard_normal(fout)}


def dense_forward(k, i):
    out = nan((i["x"].shape[0], i["w"].shape[1]), i["x"].dtype)
    k.dense_forward(i["x"], i["w"], i["b"], out)
    return out


def dense_backward(k, i, out, dy):
    dx, dw, db = nan_like(i["x"]), nan_like(i["w"]), nan_like(i["b"])
    k.dense_backward(i["x"], i["w"], dy, dx, dw, db)
    return {"x": dx, "w": dw, "b": db}


def dense_accumulate(k, i, out, dy):
    """dense_backward without dx (a first layer), adding into dw and db (ones before)."""
    dw, db = np.ones_like(i["w"]), np.ones_like(i["b"])
    k.dense_backward(i["x"], i["w"], dy, None, dw, db, accumulate=True)
    return {"dw accumulated": dw, "db accumulated": db}


def torch_dense(t, i):
    return i["x"] @ i["w"] + i["b"]


def activation_op(name, kernel, torch_fn, shapes, kinked=False, **kwargs):
    """An element-wise / row-wise activation ``<kernel>_forward(x, out)``, ``_backward(x, y, dy, dx)``."""
    def make(rng, shape):
        return {"x": away_from_zero(rng, shape) if kinked else 2 * rng.standard_normal(shape)}

    def forward(k, i):
        out = nan_like(i["x"])
        getattr(k, kernel + "_forward")(i["x"], out, **kwargs)
        return out

    def backward(k, i, out, dy):
        dx = nan_like(i["x"])
        getattr(k, kernel + "_backward")(i["x"], out, dy, dx, **kwargs)
        return {"x": dx}

    return Op(name, shapes, make, forward, backward, lambda t, i: torch_fn(t, i["x"]))


def prelu_op(name, shapes, per_axis1):
    def make(rng, shape):
        n_slopes = shape[1] if per_axis1 else 1
        return {"x": away_from_zero(rng, shape), "a": rng.uniform(0.1, 0.5, n_slopes)}

    def forward(k, i):
        out = nan_like(i["x"])
        k.prelu_forward(i["x"], i["a"], out)
        return out

    def backward(k, i, out, dy):
        dx, da = nan_like(i["x"]), nan_like(i["a"])
        k.prelu_backward(i["x"], i["a"], dy, dx, da)
        return {"x": dx, "a": da}

    def accumulate(k, i, out, dy):
        """prelu_backward adding into da (ones before); dx is written all the same."""
        dx, da = nan_like(i["x"]), np.ones_like(i["a"])
        k.prelu_backward(i["x"], i["a"], dy, dx, da, accumulate=True)
        return {"dx, da accumulated": dx, "da accumulated": da}

    def torch_prelu(t, i):
        return t.nn.functional.prelu(i["x"], i["a"])

    return Op(name, shapes, make, forward, backward, torch_prelu, diff=("x", "a"),
              accumulate=accumulate)


def maxout_op(pieces, shapes=((1, 1), (4, 3), (5, 6))):
    """Maxout over groups of ``pieces`` consecutive features; ``shapes`` are (N, out features)."""
    def make(rng, shape):
        n, f = shape
        return {"x": rng.standard_normal((n, f * pieces))}

    def forward(k, i):
        n, f = i["x"].shape[0], i["x"].shape[1] // pieces
        out, argmax = nan((n, f), i["x"].dtype), np.full((n, f), -1, np.intp)
        with np.errstate(invalid="ignore"):                  # NaN inputs (the NaN test)
            k.maxout_forward(i["x"], out, argmax, pieces)
        i["argmax"] = argmax
        return out

    def backward(k, i, out, dy):
        dx = nan_like(i["x"])
        k.maxout_backward(i["argmax"], dy, dx, pieces)
        return {"x": dx}

    def torch_maxout(t, i):
        n = i["x"].shape[0]
        return i["x"].reshape(n, -1, pieces).max(dim=2).values

    return Op(f"maxout{pieces}", list(shapes), make, forward, backward, torch_maxout,
              saved=("argmax",))


TORCH_ACTS = {
    Activation.IDENTITY: lambda t, z: z,
    Activation.SIGMOID: lambda t, z: t.sigmoid(z),
    Activation.TANH: lambda t, z: t.tanh(z),
    Activation.RELU: lambda t, z: t.relu(z),
}

DENSE_SHAPES = [(1, 1, 1), (3, 5, 4), (8, 2, 7)]            # (N, in_features, out_features)
ELEMENTWISE_SHAPES = [(1, 1), (4, 6), (2, 3, 4, 5)]
ROW_SHAPES = [(1, 1), (1, 5), (6, 3), (4, 10)]              # (N, K) for softmax & co.


def dense_act_op(act, shapes=DENSE_SHAPES):
    def forward(k, i):
        out = nan((i["x"].shape[0], i["w"].shape[1]), i["x"].dtype)
        k.dense_act_forward(i["x"], i["w"], i["b"], out, act)
        return out

    def backward(k, i, out, dy):
        dx, dw, db, dz = nan_like(i["x"]), nan_like(i["w"]), nan_like(i["b"]), nan_like(out)
        k.dense_act_backward(i["x"], i["w"], out, dy, dz, dx, dw, db, act)
        return {"x": dx, "w": dw, "b": db, "z": dz}

    def accumulate(k, i, out, dy):
        """dense_act_backward without dx, adding into dw and db (2 before)."""
        dw, db = np.full_like(i["w"], 2.0), np.full_like(i["b"], 2.0)
        k.dense_act_backward(i["x"], i["w"], out, dy, nan_like(out), None, dw, db, act,
                             accumulate=True)
        return {"dw accumulated": dw, "db accumulated": db}

    return Op(f"dense_act_{act.name.lower()}", list(shapes), make_dense, forward, backward,
              lambda t, i: TORCH_ACTS[act](t, torch_dense(t, i)), diff=("x", "w", "b"),
              accumulate=accumulate)


DENSE = Op("dense", DENSE_SHAPES, make_dense, dense_forward, dense_backward, torch_dense,
           diff=("x", "w", "b"), accumulate=dense_accumulate)
ACTIVATION_OPS = [
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
]
PRELU_OPS = [
    prelu_op("prelu_shared", [(1, 1), (4, 6), (2, 3, 4, 5)], per_axis1=False),
    prelu_op("prelu_per_feature", [(1, 3), (4, 6)], per_axis1=True),
    prelu_op("prelu_per_channel", [(2, 3, 4, 5), (1, 2, 3, 3)], per_axis1=True),
]
MAXOUT_OPS = [maxout_op(2), maxout_op(3)]
DENSE_ACT_OPS = [dense_act_op(act) for act in ref.ACTIVATIONS]

OPS = [DENSE, *ACTIVATION_OPS, *PRELU_OPS, *MAXOUT_OPS, *DENSE_ACT_OPS]
"""Every differentiable op, with the shapes the reference is checked at."""

OPS_BY_NAME = {op.name: op for op in OPS}


# ----------------------------------------------------------------------------- losses


@dataclass
class LossOp:
    """``kernel(out, target, grad) -> float``; ``formula`` the loss in plain NumPy, ``torch`` in PyTorch."""
    name: str
    make: Callable          # (rng, (N, K)) -> (out, target)
    formula: Callable
    torch: Callable


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


LOSSES = [
    LossOp("mse_loss",
           lambda rng, s: (rng.standard_normal(s), rng.standard_normal(s)),
           lambda a, y: 0.5 * np.sum((y - a) ** 2) / len(a),
           lambda t, a, y: 0.5 * t.nn.functional.mse_loss(a, y, reduction="sum") / a.shape[0]),
    LossOp("cross_entropy_loss",
           lambda rng, s: (2 * rng.standard_normal(s), labels(rng, *s)),
           lambda z, y: -np.mean(log_softmax(z)[np.arange(len(y)), y]),
           lambda t, z, y: t.nn.functional.cross_entropy(z, y)),
    LossOp("nll_loss",
           lambda rng, s: (log_softmax(rng.standard_normal(s)), labels(rng, *s)),
           lambda lp, y: -np.mean(lp[np.arange(len(y)), y]),
           lambda t, lp, y: t.nn.functional.nll_loss(lp, y)),
    LossOp("bce_with_logits_loss",
           lambda rng, s: (2 * rng.standard_normal(s), rng.uniform(0, 1, s)),
           lambda z, y: np.sum(-y * np.log(1 / (1 + np.exp(-z))) - (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))
           / len(z),
           lambda t, z, y: t.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
           / z.shape[0]),
]
LOSSES_BY_NAME = {op.name: op for op in LOSSES}
LOSS_SHAPES = [(1, 1), (1, 4), (5, 3), (16, 10)]


def run_loss(k, kernel, out, target, weight=None):
    """``(value, grad)`` of loss kernel ``kernel`` (a name) on ``k``; ``weight`` per class
    (cross-entropy and NLL) when given. The value must be a Python float."""
    grad = nan_like(out)
    fun = getattr(k, kernel)
    value = fun(out, target, grad) if weight is None else fun(out, target, grad, weight=weight)
    assert isinstance(value, float)
    return value, grad


# ----------------------------------------------------------------------------- update rules


def sgd_id(hyper):
    return ",".join(f"{k}={v}" for k, v in hyper.items()) or "plain"


SGD_CONFIGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.5},
    {"momentum": 0.9, "nesterov": True},
    {"weight_decay": 0.1},
    {"l1": 0.05},
    {"weight_decay": 0.1, "l1": 0.05},
    {"momentum": 0.5, "nesterov": True, "weight_decay": 0.01, "l1": 0.02},
]
"""The hyper-parameters sgd_step is checked with (lr 0.1)."""


def run_sgd_steps(k, p, grads, lr, **hyper):
    """``k.sgd_step`` on a copy of ``p``, one step per gradient in ``grads``. The momentum buffer
    (with momentum only) starts as garbage, 123: the first step overwrites it. Returns
    ``{"p": ..., "buf": ...}`` (no "buf" without momentum)."""
    p = p.copy()
    buf = np.full_like(p, 123.0) if hyper.get("momentum") else None
    for step, g in enumerate(grads):
        k.sgd_step(p, g, buf, lr, first_step=step == 0, **hyper)
    return {"p": p} if buf is None else {"p": p, "buf": buf}


# name -> (kernel, hyper-parameters, state buffers in the kernel's order, those given as None)
OPTIMIZER_CASES = {
    "adagrad": ("adagrad_step", dict(lr=0.05), ["sum"], ()),
    "adagrad-decay,wd": ("adagrad_step", dict(lr=0.05, lr_decay=0.1, weight_decay=0.01), ["sum"], ()),
    "adagrad-decay,wd,eps": ("adagrad_step", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, eps=1e-6),
                             ["sum"], ()),
    "rmsprop": ("rmsprop_step", dict(lr=0.05), ["square_avg", "buf", "grad_avg"], ("buf", "grad_avg")),
    "rmsprop-alpha,wd,all-buffers": ("rmsprop_step", dict(lr=0.01, alpha=0.9, weight_decay=0.1),
                                     ["square_avg", "buf", "grad_avg"], ()),
    "rmsprop-centered,momentum": ("rmsprop_step", dict(lr=0.05, momentum=0.9, centered=True, weight_decay=0.01),
                                  ["square_avg", "buf", "grad_avg"], ()),
    "rmsprop-nesterov": ("rmsprop_step", dict(lr=0.05, momentum=0.5, nesterov=True, alpha=0.9),
                         ["square_avg", "buf", "grad_avg"], ("grad_avg",)),
    "rmsprop-centered,nesterov": ("rmsprop_step", dict(lr=0.01, momentum=0.9, centered=True, nesterov=True),
                                  ["square_avg", "buf", "grad_avg"], ()),
    "adam": ("adam_step", dict(lr=0.05), ["m", "v", "vmax"], ("vmax",)),
    "adam-beta1,wd,all-buffers": ("adam_step", dict(lr=0.01, beta1=0.8, weight_decay=0.1), ["m", "v", "vmax"], ()),
    "adam-amsgrad,wd": ("adam_step", dict(lr=0.05, amsgrad=True, weight_decay=0.1), ["m", "v", "vmax"], ()),
    "adamw": ("adam_step", dict(lr=0.05, decoupled=True, weight_decay=0.1), ["m", "v", "vmax"], ("vmax",)),
    "adamw-amsgrad": ("adam_step", dict(lr=0.01, weight_decay=0.1, amsgrad=True, decoupled=True),
                      ["m", "v", "vmax"], ()),
}
"""The update rules' kernels and the hyper-parameters they are checked with."""


def optimizer_states(case, size, dtype, rng=None):
    """The state buffers of ``OPTIMIZER_CASES[case]`` (name -> array, or None where the case
    gives None): zeros, or with ``rng`` absolute standard normal values (``grad_avg`` zero, so
    that E[g]^2 <= E[g^2] for the centered RMSProp)."""
    _, _, states, optional = OPTIMIZER_CASES[case]
    bufs = {}
    for name in states:
        if name in optional:
            bufs[name] = None
        elif rng is None or name == "grad_avg":
            bufs[name] = np.zeros(size, dtype)
        else:
            bufs[name] = np.abs(draw(rng, size, dtype))
    return bufs


def run_optimizer_steps(k, case, p, grads, states):
    """``k.<kernel>(p, g, *states, **hyper)`` of ``OPTIMIZER_CASES[case]``, one step per gradient
    (``step`` counted from 1 for the kernels that take it); ``p`` and ``states`` change in place.
    Returns ``p`` and every state that is not None, by name."""
    kernel, hyper, _, _ = OPTIMIZER_CASES[case]
    for step, g in enumerate(grads, 1):
        extra = {} if kernel == "rmsprop_step" else {"step": step}
        getattr(k, kernel)(p, g, *states.values(), **hyper, **extra)
    return {"p": p, **{name: b for name, b in states.items() if b is not None}}


def run_norms(k, g, dense, conv):
    """sum_of_squares and scale_inplace of ``g``; renorm_units (max norm 1.5) of a dense weight
    (units on the last axis) and a conv weight (units on axis 0), in place."""
    total = k.sum_of_squares(g)
    assert isinstance(total, float)
    k.scale_inplace(g, 0.3)
    k.renorm_units(dense, 1.5, -1)
    k.renorm_units(conv, 1.5, 0)
    return {"total": np.array(total), "scaled": g, "dense": dense, "conv": conv}


# ----------------------------------------------------------------------------- regularization


def run_dropout(k, x, mask, dy):
    out, dx = nan_like(x), nan_like(x)
    k.dropout_forward(x, mask, out)
    k.dropout_backward(mask, dy, dx)
    return {"out": out, "dx": dx}


def run_batchnorm(k, x, gamma, beta, dy, running_mean, running_var, momentum, eps, dx=True,
                  accumulate=False):
    """batchnorm_forward_train (updating copies of the running statistics), batchnorm_backward
    (with or without ``dx``; writing dgamma / dbeta, or adding into 0.5 / -0.25) and
    batchnorm_forward_eval with the updated statistics: every output by name."""
    c = x.shape[1]
    out, mean, invstd = nan_like(x), nan(c, x.dtype), nan(c, x.dtype)
    rm, rv = running_mean.copy(), running_var.copy()
    k.batchnorm_forward_train(x, gamma, beta, out, mean, invstd, rm, rv, momentum, eps)
    gx = nan_like(x) if dx else None
    if accumulate:
        dg, db = np.full(c, 0.5, x.dtype), np.full(c, -0.25, x.dtype)
    else:
        dg, db = nan(c, x.dtype), nan(c, x.dtype)
    k.batchnorm_backward(x, gamma, mean, invstd, dy, gx, dg, db, accumulate)
    out_eval = nan_like(x)
    k.batchnorm_forward_eval(x, gamma, beta, out_eval, rm, rv, eps)
    res = {"out": out, "mean": mean, "invstd": invstd, "running_mean": rm, "running_var": rv,
           "dgamma": dg, "dbeta": db, "out_eval": out_eval}
    if gx is not None:
        res["dx"] = gx
    return res


# ----------------------------------------------------------------------------- memory


def run_take_rows(k, a, idx, host_index=True):
    """take_rows of rows ``idx`` of ``a``; with ``host_index=False`` all three arrays are on the
    device of ``k``'s backend (the same arrays on a host backend)."""
    out = nan((len(idx),) + a.shape[1:], a.dtype)
    if host_index or k is ref:
        k.take_rows(a, idx, out)
        return {"out": out}
    be = fn.get_backend(k.NAME)
    d_out = be.to_device(out)
    be.take_rows(be.to_device(a), be.to_device(idx), d_out)
    return {"out": be.to_host(d_out)}


# ----------------------------------------------------------------------------- convolution, pooling


def run_conv(k, x, w, b, dy, stride, pads, with_cols=False):
    """Every output of k.conv2d_forward / conv2d_backward (write and accumulate, with / without
    dx and dcols) and of k.im2col / k.col2im. ``cols`` is the backend's own work buffer between
    forward and backward (the cpu backend's direct kernels leave it alone), returned only with
    ``with_cols``."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = convutil.output_hw(h, wd, (kh, kw), stride, pads)
    out = nan((n, f, oh, ow), x.dtype)
    cols = nan((n, c * kh * kw, oh * ow), x.dtype)
    k.conv2d_forward(x, w, b, out, stride, pads, cols)
    dx, dw, db, dcols = nan_like(x), nan_like(w), nan_like(b), nan_like(cols)
    k.conv2d_backward(x, w, dy, dx, dw, db, stride, pads, cols, dcols, accumulate=False)
    dw_acc, db_acc = np.ones_like(w), np.ones_like(b)              # accumulate, dcols as scratch
    k.conv2d_backward(x, w, dy, None, dw_acc, db_acc, stride, pads, cols, nan_like(cols), accumulate=True)
    dw_acc2, db_acc2 = np.ones_like(w), np.ones_like(b)            # accumulate, no scratch at all
    k.conv2d_backward(x, w, dy, None, dw_acc2, db_acc2, stride, pads, cols, None, accumulate=True)
    dw_nodx, db_nodx = nan_like(w), nan_like(b)
    k.conv2d_backward(x, w, dy, None, dw_nodx, db_nodx, stride, pads, cols, None, accumulate=False)
    cols2, folded = nan_like(cols), nan_like(x)
    k.im2col(x, kh, kw, stride, pads, cols2)
    k.col2im(cols2, kh, kw, stride, pads, folded)
    res = {"out": out, "dx": dx, "dw": dw, "db": db, "dw accumulated": dw_acc,
           "db accumulated": db_acc, "dw accumulated, no dcols": dw_acc2,
           "db accumulated, no dcols": db_acc2, "dw without dx or dcols": dw_nodx,
           "db without dx or dcols": db_nodx, "im2col": cols2, "col2im": folded}
    if with_cols:
        res["cols"] = cols
    return res


def run_conv_act(k, x, w, b, dy, stride, pads, act):
    """conv2d_act_forward / conv2d_act_backward (the conv with its activation fused), written
    and accumulated: every output by name."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = convutil.output_hw(h, wd, (kh, kw), stride, pads)
    out, cols = nan((n, f, oh, ow), x.dtype), nan((n, c * kh * kw, oh * ow), x.dtype)
    k.conv2d_act_forward(x, w, b, out, stride, pads, cols, act)
    dz, dx, dw, db = nan_like(out), nan_like(x), nan_like(w), nan_like(b)
    k.conv2d_act_backward(x, w, out, dy, dz, dx, dw, db, stride, pads, cols, nan_like(cols), act)
    dw_acc, db_acc = np.ones_like(w), np.ones_like(b)
    k.conv2d_act_backward(x, w, out, dy, nan_like(out), None, dw_acc, db_acc, stride, pads,
                          cols, nan_like(cols), act, accumulate=True)
    return {"out": out, "dx": dx, "dw": dw, "db": db, "dw accumulated": dw_acc,
            "db accumulated": db_acc}


def run_pool(k, x, dy, kernel, stride, pads):
    """maxpool2d_forward / _backward and avgpool2d_forward / _backward: every output by name."""
    out, argmax = nan(dy.shape, x.dtype), np.full(dy.shape, -1, np.intp)
    k.maxpool2d_forward(x, out, argmax, kernel, stride, pads)
    dx = nan_like(x)
    k.maxpool2d_backward(argmax, dy, dx)
    avg, adx = nan(dy.shape, x.dtype), nan_like(x)
    k.avgpool2d_forward(x, avg, kernel, stride, pads)
    k.avgpool2d_backward(dy, adx, kernel, stride, pads)
    return {"max": out, "argmax": argmax, "max dx": dx, "avg": avg, "avg dx": adx}


# ----------------------------------------------------------------------------- the table


@dataclass
class Case:
    """``run(k, rng, dtype) -> {output name: array}``: one op (or variant) on kernel namespace
    ``k``, its inputs drawn from ``rng``; ``tolerance`` names the row of support.tolerances that
    compares its outputs with the reference's."""
    run: Callable
    tolerance: str = "op case"


def op_case(op, shape, prepare=None, tolerance="op case"):
    """A :class:`Case` of differentiable op ``op`` at ``shape``: inputs from ``op.make`` (then
    ``prepare(inputs)``, e.g. to put inputs on a kink), the output gradient drawn once the
    output is known, every output of :func:`run_op`."""
    def run(k, rng, dt):
        inputs = cast(op.make(rng, shape), dt)
        if prepare is not None:
            prepare(inputs)
        return run_op(op, k, inputs, lambda shape: draw(rng, shape, dt))
    return Case(run, tolerance)


def loss_case(op, shape, scale=1.0, weighted=False, tolerance="op case"):
    """A :class:`Case` of loss ``op`` at ``shape``: the output of ``op.make`` times ``scale``,
    class weights uniform in [0.2, 3) when ``weighted``; the value and the gradient."""
    def run(k, rng, dt):
        out, target = op.make(rng, shape)
        arrays = cast({"out": scale * out, "target": target}, dt)
        weight = rng.uniform(0.2, 3, shape[1]).astype(dt) if weighted else None
        value, grad = run_loss(k, op.name, arrays["out"], arrays["target"], weight)
        return {"value": np.array(value), "grad": grad}
    return Case(run, tolerance)


def _with_a_zero(inputs):
    inputs["x"].flat[0] = 0                                      # the kink of ReLU & co.


def _rounded(inputs):
    inputs["x"] = np.round(2 * inputs["x"])                      # ties: the first one wins


def _gemm_sizes():
    """(N, in, out) spanning several tiles of the cuda GEMM in every dimension, partial edges too."""
    try:
        from fastnn.kernels.cuda import gemm
    except ImportError:                                           # pragma: no cover - no numba.cuda
        return 131, 33, 69
    return 2 * gemm.BM + 3, 2 * gemm.BK + 1, gemm.BN + 5


def _dense_multi_tile(k, rng, dt):
    return op_case(DENSE, _gemm_sizes()).run(k, rng, dt)


def _count_correct(k, rng, dt):
    out = np.round(draw(rng, (9, 4), dt))                        # ties: the first arg-max
    count = k.count_correct(out, labels(rng, 9, 4))
    assert isinstance(count, int)
    return {"count": np.array(count)}


def _sgd_case(hyper):
    def run(k, rng, dt):
        p = draw(rng, 37, dt)
        p[0] = 0                                                 # sign(0) = 0 for L1
        return run_sgd_steps(k, p, [draw(rng, 37, dt) for _ in range(4)], 0.1, **hyper)
    return Case(run, "sgd steps")


def _optimizer_case(case):
    def run(k, rng, dt):
        p = draw(rng, 13, dt)
        states = optimizer_states(case, 13, dt, rng)
        return run_optimizer_steps(k, case, p, [draw(rng, 13, dt) for _ in range(3)], states)
    return Case(run)


def _norms(k, rng, dt):
    g = draw(rng, (5, 7), dt)
    dense, conv = draw(rng, (6, 4), dt), draw(rng, (3, 2, 2, 2), dt)
    dense[:, 1] *= 0.01                                          # a short unit: left unchanged
    return run_norms(k, g, dense, conv)


def _dropout(k, rng, dt):
    x, dy = draw(rng, (4, 6), dt), draw(rng, (4, 6), dt)
    mask = ((rng.random((4, 6)) > 0.3) / 0.7).astype(dt)
    return run_dropout(k, x, mask, dy)


def _batchnorm_case(shape):
    def run(k, rng, dt):
        c = shape[1]
        x, dy = draw(rng, shape, dt, 2.0) + 1, draw(rng, shape, dt)
        gamma, beta = rng.uniform(0.5, 2, c).astype(dt), draw(rng, c, dt)
        rm, rv = draw(rng, c, dt), rng.uniform(0.5, 2, c).astype(dt)
        args = (k, x, gamma, beta, dy, rm, rv, 0.2, 1e-5)
        written = run_batchnorm(*args)
        added = run_batchnorm(*args, dx=False, accumulate=True)
        return {**written, "dgamma accumulated, no dx": added["dgamma"],
                "dbeta accumulated, no dx": added["dbeta"]}
    return Case(run)


def _take_rows_case(shape, host_index):
    def run(k, rng, dt):
        return run_take_rows(k, draw(rng, shape, dt), np.array([3, 0, 3, 1], np.int64), host_index)
    return Case(run)


def _conv(k, rng, dt):
    n, c, h, w, f, kh, kw, stride, pads = 2, 2, 6, 5, 3, 3, 2, (2, 1), (1, 0, 1, 1)
    oh, ow = convutil.output_hw(h, w, (kh, kw), stride, pads)
    x, wt, b = draw(rng, (n, c, h, w), dt), draw(rng, (f, c, kh, kw), dt), draw(rng, f, dt)
    return run_conv(k, x, wt, b, draw(rng, (n, f, oh, ow), dt), stride, pads, with_cols=True)


def _pool(k, rng, dt):
    x = np.round(draw(rng, (2, 2, 5, 6), dt, 2.0))               # ties
    kernel, stride, pads = (3, 2), (2, 2), (1, 1, 1, 1)
    oh, ow = convutil.output_hw(5, 6, kernel, stride, pads)
    return run_pool(k, x, draw(rng, (2, 2, oh, ow), dt), kernel, stride, pads)


def _shape_id(shape):
    return "x".join(map(str, shape))


OP_CASES = {
    # every differentiable op at the shapes the reference is checked at
    **{f"{op.name}-{_shape_id(s)}": op_case(op, s, tolerance="op") for op in OPS for s in op.shapes},
    # ... and on kinks, ties, several GEMM tiles
    "dense-5x7x6": op_case(DENSE, (5, 7, 6)),
    "dense-multi-tile": Case(_dense_multi_tile),
    **{f"dense_act_{a.name.lower()}-6x5x7": op_case(dense_act_op(a), (6, 5, 7)) for a in Activation},
    **{f"{name}-4x6-at-0": op_case(OPS_BY_NAME[name], (4, 6), _with_a_zero)
       for name in ("identity", "sigmoid", "tanh", "relu", "leaky_relu_0.2", "softmax", "log_softmax")},
    "sigmoid-2x3x2x2-at-0": op_case(OPS_BY_NAME["sigmoid"], (2, 3, 2, 2), _with_a_zero),
    "prelu_shared-4x6-at-0": op_case(OPS_BY_NAME["prelu_shared"], (4, 6), _with_a_zero),
    "prelu_per_feature-4x6-at-0": op_case(OPS_BY_NAME["prelu_per_feature"], (4, 6), _with_a_zero),
    "prelu_per_channel-2x3x2x2": op_case(OPS_BY_NAME["prelu_per_channel"], (2, 3, 2, 2)),
    "maxout3-4x5-ties": op_case(OPS_BY_NAME["maxout3"], (4, 5), _rounded),
    # every loss at the shapes the reference is checked at, on huge logits, with class weights
    **{f"{op.name}-{_shape_id(s)}": loss_case(op, s, tolerance="op") for op in LOSSES for s in LOSS_SHAPES},
    "mse_loss-6x4": loss_case(LOSSES_BY_NAME["mse_loss"], (6, 4)),
    "cross_entropy_loss-6x4": loss_case(LOSSES_BY_NAME["cross_entropy_loss"], (6, 4), 1.5),
    "cross_entropy_loss-6x4-huge-logits": loss_case(LOSSES_BY_NAME["cross_entropy_loss"], (6, 4), 250.0),
    "nll_loss-6x4": loss_case(LOSSES_BY_NAME["nll_loss"], (6, 4)),
    "bce_with_logits_loss-6x4": loss_case(LOSSES_BY_NAME["bce_with_logits_loss"], (6, 4), 1.5),
    "cross_entropy_loss-7x4-weighted": loss_case(LOSSES_BY_NAME["cross_entropy_loss"], (7, 4), 1.5,
                                                 weighted=True),
    "nll_loss-7x4-weighted": loss_case(LOSSES_BY_NAME["nll_loss"], (7, 4), weighted=True),
    "count_correct": Case(_count_correct),
    # update rules and their helpers
    **{"sgd-" + sgd_id(h): _sgd_case(h) for h in SGD_CONFIGS},
    **{name: _optimizer_case(name) for name in OPTIMIZER_CASES},
    "norms": Case(_norms),
    # regularization, memory, convolution and pooling
    "dropout": Case(_dropout),
    "batchnorm-dense": _batchnorm_case((9, 5)),
    "batchnorm-images": _batchnorm_case((2, 3, 2, 3)),
    "take_rows-2d-host-index": _take_rows_case((5, 3), True),
    "take_rows-4d-device-index": _take_rows_case((5, 2, 2, 3), False),
    "take_rows-1d-device-index": _take_rows_case((5,), False),
    "conv2d": Case(_conv),
    "pool2d": Case(_pool),
}
"""The op-case table: every kernel op of the contract, each variant once."""

CASE_SEED = 7


def run_case(name, k, dtype, seed=CASE_SEED):
    """Every output of ``OP_CASES[name]`` on ``k`` in ``dtype``, inputs from ``default_rng(seed)``."""
    return OP_CASES[name].run(k, np.random.default_rng(seed), np.dtype(dtype))


def assert_outputs_match(got, expected, tol, what=""):
    """The same outputs, of the same dtypes, equal within ``tol`` (``dict(rtol=, atol=)``): arrays
    by ``assert_allclose``, scalars (0-d) by ``pytest.approx(rel=rtol, abs=atol)``."""
    assert got.keys() == expected.keys(), what
    for key in expected:
        a, e = np.asarray(got[key]), np.asarray(expected[key])
        assert a.dtype == e.dtype, f"{what}: {key}"
        if e.ndim == 0:
            assert float(a) == pytest.approx(float(e), rel=tol["rtol"], abs=tol["atol"]), f"{what}: {key}"
        else:
            np.testing.assert_allclose(a, e, err_msg=f"{what}: {key}", **tol)


def assert_case_matches_reference(name, k, dtype, seed=CASE_SEED):
    """``OP_CASES[name]`` on ``k`` gives the reference's outputs (same inputs), within its row of
    support.tolerances for ``dtype``."""
    expected, got = run_case(name, ref, dtype, seed), run_case(name, k, dtype, seed)
    assert_outputs_match(got, expected, tolerance(OP_CASES[name].tolerance, dtype), name)
