"""Hessian-vector products ``H v`` of a model's mean training loss w.r.t. its flat parameters.

Two ways, chosen by ``method``:

* ``"exact"``: Pearlmutter's R-operator (*Fast exact multiplication by the Hessian*, Neural
  Computation 1994), i.e. forward-over-reverse differentiation: one forward pass carrying the
  directional derivatives ``R{a}`` of every activation along ``v``, then one backward pass
  carrying ``R{dL/da}``; the parameter entries of the second give ``H v`` with the cost of about
  two gradients and no truncation error. Written for the layers and losses whose second
  derivatives are spelled out below: Dense, Flatten, Sigmoid, Tanh, ReLU, LeakyReLU, Softmax,
  LogSoftmax; MSELoss, CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss (without class weights).
  It runs in NumPy on host copies of the weights and data, in the model's dtype, whatever the
  model's backend.
* ``"fd"``: the central difference of gradients ``(g(w + h v) - g(w - h v)) / (2 h)``,
  computed by the model's own forward and backward passes on its backend, for every other
  model (convolutions, pooling, batch norm, recurrent layers ...). Its error is the truncation
  ``h^2 / 6 * D^4L(w)[v, v, v, .]`` plus the rounding ``~ u * |g| / h`` (``u`` the unit
  roundoff of the dtype); with ``h = u^(1/3) * max(1, |w|) / |v|`` both are ``O(u^(2/3))``
  relative: about 1e-10 in float64, 1e-5 in float32 (measured in ``tests/test_hvp.py``).

``"auto"`` (the default) is ``"exact"`` when every layer and the loss are supported, else
``"fd"``. Layers run in training mode (as the closure optimizers minimise): a model with
Dropout gives the product of one random mask draw.
"""
import numpy as np

from . import losses as losses_mod
from .layers import Dense, Flatten, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh

METHODS = ("auto", "exact", "fd")


def hessian_vector_product(model, x, y, loss, v, method="auto", eps=None):
    """``H v``, H the Hessian of ``loss`` over the batch ``(x, y)`` w.r.t. the flat parameters.

    Parameters
    ----------
    model : Sequential
    x : ndarray (N, ...) float; y : (N,) integer labels or (N, K) targets
    loss : Loss or name ("cross_entropy", "mse", "nll", "bce_with_logits")
    v : ndarray of shape (n_params,), float
        The direction, in the order of ``model.flat_params`` (``model.get_weights()``).
    method : {"auto", "exact", "fd"}
        See :mod:`fastnn.hvp`.
    eps : float or None
        The step ``h`` of ``"fd"`` (None: ``u^(1/3) * max(1, |w|) / |v|``).

    Returns
    -------
    ndarray of shape (n_params,), the model's dtype, on the host.

    Raises
    ------
    ValueError for an unknown method, a ``v`` of the wrong shape, or ``method="exact"`` on a
    layer or loss it does not cover (the message names it).
    """
    from .training import prepare_data
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    loss = losses_mod.get(loss).bind(model.be)
    v = np.asarray(v, dtype=model.dtype)
    if v.shape != (model.num_parameters(),):
        raise ValueError(f"v has shape {v.shape}; the model has {model.num_parameters()} "
                         "parameters, so v must have shape "
                         f"({model.num_parameters()},) (the order of model.get_weights())")
    x, targets, _ = prepare_data(model, loss, x, y)
    unsupported = exact_unsupported(model, loss)
    if method == "exact" and unsupported:
        raise ValueError(f"hessian_vector_product(method='exact') does not cover {unsupported}; "
                         "use method='fd' (central differences of gradients)")
    if method == "fd" or (method == "auto" and unsupported):
        return _finite_difference(model, loss, x, targets, v, eps)
    return _r_operator(model, loss, x, targets, v)


def exact_unsupported(model, loss):
    """What keeps the exact product from running on ``model`` with ``loss`` (a text), or None."""
    for layer in model.layers:
        if not isinstance(layer, _EXACT_LAYERS):
            return f"layer {layer!r}"
    if not isinstance(loss, _EXACT_LOSSES) or loss.weight is not None:
        return f"loss {loss!r}"
    return None


# -- central differences of the gradient ---------------------------------------------------

def _finite_difference(model, loss, x, targets, v, eps):
    be = model.be
    w = model.get_weights()
    norm_v = float(np.linalg.norm(v))
    if norm_v == 0:
        return np.zeros_like(w)
    if eps is None:
        eps = np.finfo(model.dtype).eps ** (1 / 3) * max(1.0, float(np.linalg.norm(w))) / norm_v
    xd, yd = be.to_device(x), be.to_device(targets)

    def grad_at(point):
        model.set_weights(point)
        out = model.forward_batch(xd, training=True)
        loss.compute(out, yd)
        model.backward_batch(loss.grad, need_input_grad=False, accumulate=False)
        return np.array(be.to_host(model.flat_grads), dtype=np.float64)

    try:
        plus, minus = grad_at(w + eps * v), grad_at(w - eps * v)
    finally:
        model.set_weights(w)
    return ((plus - minus) / (2 * eps)).astype(model.dtype)


# -- Pearlmutter's R-operator ---------------------------------------------------------------

def _r_operator(model, loss, x, targets, v):
    w = model.get_weights()
    params, vparams, pos = {}, {}, 0
    for layer in model.layers:
        for p in layer.params:
            params[id(p)] = w[pos:pos + p.size].reshape(p.shape)
            vparams[id(p)] = v[pos:pos + p.size].reshape(p.shape)
            pos += p.size
    a, ra = x, np.zeros_like(x)
    saved = []
    for layer in model.layers:                     # forward: a and R{a}
        saved.append((a, ra))
        if isinstance(layer, Dense):
            wt, b = params[id(layer.weight)], params[id(layer.bias)]
            vw, vb = vparams[id(layer.weight)], vparams[id(layer.bias)]
            a, ra = a @ wt + b, ra @ wt + a @ vw + vb
        elif isinstance(layer, Flatten):
            a, ra = a.reshape(len(a), -1), ra.reshape(len(ra), -1)
        else:
            a, ra = _act_forward(layer, a, ra)
    g, rg = _loss_grad(loss, a, ra, targets)
    hv = {}
    for layer, (a_in, ra_in) in zip(reversed(model.layers), reversed(saved)):   # backward
        if isinstance(layer, Dense):
            wt, vw = params[id(layer.weight)], vparams[id(layer.weight)]
            hv[id(layer.weight)] = ra_in.T @ g + a_in.T @ rg
            hv[id(layer.bias)] = rg.sum(axis=0)
            g, rg = g @ wt.T, rg @ wt.T + g @ vw.T
        elif isinstance(layer, Flatten):
            g, rg = g.reshape(a_in.shape), rg.reshape(a_in.shape)
        else:
            g, rg = _act_backward(layer, a_in, ra_in, g, rg)
    return np.concatenate([hv[id(p)].ravel() for layer in model.layers for p in layer.params]
                          or [np.zeros(0, model.dtype)]).astype(model.dtype)


def _elementwise(layer, z):
    """(f(z), f'(z), f''(z)) of an element-wise activation."""
    if isinstance(layer, Sigmoid):
        s = 1 / (1 + np.exp(-z))
        d1 = s * (1 - s)
        return s, d1, d1 * (1 - 2 * s)
    if isinstance(layer, Tanh):
        t = np.tanh(z)
        d1 = 1 - t * t
        return t, d1, -2 * t * d1
    slope = layer.negative_slope if isinstance(layer, LeakyReLU) else 0.0
    pos = z > 0
    return np.where(pos, z, slope * z), np.where(pos, 1.0, slope).astype(z.dtype), np.zeros_like(z)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _act_forward(layer, z, rz):
    if isinstance(layer, (Softmax, LogSoftmax)):
        p = _softmax(z)
        rlog = rz - (p * rz).sum(axis=1, keepdims=True)      # R{log p}
        if isinstance(layer, Softmax):
            return p, p * rlog
        return np.log(p), rlog
    f, d1, _ = _elementwise(layer, z)
    return f, d1 * rz


def _act_backward(layer, z, rz, g, rg):
    """(dL/dz, R{dL/dz}) from (dL/dy, R{dL/dy}) for y = act(z)."""
    if isinstance(layer, (Softmax, LogSoftmax)):
        p = _softmax(z)
        rp = p * (rz - (p * rz).sum(axis=1, keepdims=True))
        if isinstance(layer, LogSoftmax):                   # dz = g - p sum(g)
            sg, srg = g.sum(axis=1, keepdims=True), rg.sum(axis=1, keepdims=True)
            return g - p * sg, rg - rp * sg - p * srg
        gp = (g * p).sum(axis=1, keepdims=True)             # dz = p (g - sum(g p))
        rgp = (rg * p + g * rp).sum(axis=1, keepdims=True)
        return p * (g - gp), rp * (g - gp) + p * (rg - rgp)
    _, d1, d2 = _elementwise(layer, z)
    return d1 * g, d2 * rz * g + d1 * rg


def _loss_grad(loss, a, ra, y):
    """(dL/da, R{dL/da}) of the mean loss over the N rows of the output ``a``."""
    n = len(a)
    if isinstance(loss, losses_mod.MSELoss):
        return (a - y) / n, ra / n
    if isinstance(loss, losses_mod.BCEWithLogitsLoss):
        s = 1 / (1 + np.exp(-a))
        return (s - y) / n, s * (1 - s) * ra / n
    onehot = np.zeros_like(a)
    onehot[np.arange(n), y] = 1
    if isinstance(loss, losses_mod.NLLLoss):
        return -onehot / n, np.zeros_like(a)
    p = _softmax(a)                                           # CrossEntropyLoss
    return (p - onehot) / n, p * (ra - (p * ra).sum(axis=1, keepdims=True)) / n


_EXACT_LAYERS = (Dense, Flatten, Sigmoid, Tanh, ReLU, LeakyReLU, Softmax, LogSoftmax)
_EXACT_LOSSES = (losses_mod.MSELoss, losses_mod.CrossEntropyLoss, losses_mod.NLLLoss,
                 losses_mod.BCEWithLogitsLoss)
