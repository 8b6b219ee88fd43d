"""Plain-NumPy reference of every fastnn op: the oracle for tests and the baseline for benchmarks.

Written for clarity, not speed. Every function writes into the output buffers it is given
(``out=``, ``dx=``, ``dw=`` ...) and returns nothing, unless it is a loss, which returns the
loss as a Python float. The accelerated backends (``kernels/cpu``, ``kernels/cuda``) expose
the same functions with the same signatures.

Conventions
-----------
* Rows are samples: ``x`` is ``(N, features)``; images are ``(N, C, H, W)``.
* Dense weight ``w`` is ``(in_features, out_features)``, bias ``b`` is ``(out_features,)``.
* Gradients of parameters are written (``accumulate=False``) or added (``accumulate=True``).
* Losses are averaged over the ``N`` samples of the batch; the gradient they write is the
  gradient of that average.
* Activation backward functions get the activation's *output* ``y`` (and its input ``x``
  where the derivative needs it), the gradient ``dy`` w.r.t. the output, and write ``dx``.
"""
import numpy as np

# --------------------------------------------------------------------------- arrays
# The model layer allocates through the backend so the CUDA backend can hand out device arrays.


def empty(shape, dtype):
    """Uninitialised host array of ``shape`` and ``dtype``."""
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype):
    """Zero-filled host array."""
    return np.zeros(shape, dtype=dtype)


def to_device(a):
    """Identity on the host backends: returns ``a`` unchanged."""
    return a


def to_host(a):
    """Identity on the host backends: returns ``a`` unchanged."""
    return a


def copy_into(dst, src):
    """``dst[...] = src`` (``src`` may be a host array)."""
    dst[...] = src


def take_rows(a, idx, out):
    """out[i] = a[idx[i]]: gather the rows of a mini-batch into a reused buffer."""
    np.take(a, idx, axis=0, out=out)


# --------------------------------------------------------------------------- dense


def dense_forward(x, w, b, out):
    """out = x @ w + b.

    x : (N, in_features); w : (in_features, out_features); b : (out_features,);
    out : (N, out_features).
    """
    np.matmul(x, w, out=out)
    out += b


def dense_backward(x, w, dy, dx, dw, db, accumulate=False):
    """Gradients of out = x @ w + b.

    dy : (N, out_features) gradient w.r.t. out.
    dx : (N, in_features) or None (skip it for the first layer).
    dw, db : gradients of w and b, written, or added when ``accumulate``.
    """
    if accumulate:
        dw += x.T @ dy
        db += dy.sum(axis=0)
    else:
        np.matmul(x.T, dy, out=dw)
        np.sum(dy, axis=0, out=db)
    if dx is not None:
        np.matmul(dy, w.T, out=dx)


# --------------------------------------------------------------------------- activations


def identity_forward(x, out):
    out[...] = x


def identity_backward(x, y, dy, dx):
    dx[...] = dy


def sigmoid_forward(x, out):
    """out = 1 / (1 + exp(-x)), computed without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    out[...] = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(x, y, dy, dx):
    """dx = dy * y * (1 - y)."""
    dx[...] = dy * y * (1.0 - y)


def tanh_forward(x, out):
    np.tanh(x, out=out)


def tanh_backward(x, y, dy, dx):
    """dx = dy * (1 - y**2)."""
    dx[...] = dy * (1.0 - y * y)


def relu_forward(x, out):
    np.maximum(x, 0, out=out)


def relu_backward(x, y, dy, dx):
    """dx = dy where x > 0, else 0 (the subgradient at 0 is 0, as PyTorch)."""
    dx[...] = np.where(y > 0, dy, 0)


def leaky_relu_forward(x, out, negative_slope=0.01):
    out[...] = np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(x, y, dy, dx, negative_slope=0.01):
    dx[...] = np.where(x > 0, dy, negative_slope * dy)


def prelu_forward(x, a, out):
    """Parametric ReLU with one learned slope ``a`` of shape (1,) or one per feature (F,).

    For images (N, C, H, W) a per-channel ``a`` has shape (C,).
    """
    a = _broadcast_channel(a, x)
    out[...] = np.where(x > 0, x, a * x)


def prelu_backward(x, a, dy, dx, da, accumulate=False):
    """dx = dy * (1 if x > 0 else a); da = sum of dy * x over the positions where x <= 0."""
    ab = _broadcast_channel(a, x)
    dx[...] = np.where(x > 0, dy, ab * dy)
    contrib = np.where(x > 0, 0, dy * x)
    axes = tuple(i for i in range(x.ndim) if i != 1) if a.size > 1 else None
    g = np.sum(contrib, axis=axes).reshape(da.shape)
    if accumulate:
        da += g
    else:
        da[...] = g


def _broadcast_channel(a, x):
    """Shape a per-feature/per-channel vector so it broadcasts along axis 1 of ``x``."""
    if a.size == 1:
        return a.reshape(())
    return a.reshape((1, a.size) + (1,) * (x.ndim - 2))


def softmax_forward(x, out):
    """Row-wise softmax of (N, K) logits, max-subtracted for stability."""
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    out[...] = e / e.sum(axis=1, keepdims=True)


def softmax_backward(x, y, dy, dx):
    """dx_i = y_i (dy_i - sum_j dy_j y_j)."""
    dx[...] = y * (dy - np.sum(dy * y, axis=1, keepdims=True))


def log_softmax_forward(x, out):
    z = x - x.max(axis=1, keepdims=True)
    out[...] = z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def log_softmax_backward(x, y, dy, dx):
    """dx = dy - softmax(x) * sum(dy) with softmax(x) = exp(y)."""
    dx[...] = dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def maxout_forward(x, out, argmax, pieces):
    """Maxout over groups of ``pieces`` consecutive features.

    x : (N, F * pieces); out : (N, F); argmax : (N, F) intp, index of the winner in its group
    (first maximum on ties).
    """
    n, f = out.shape
    groups = x.reshape(n, f, pieces)
    argmax[...] = groups.argmax(axis=2)
    out[...] = np.take_along_axis(groups, argmax[:, :, None], axis=2)[:, :, 0]


def maxout_backward(argmax, dy, dx, pieces):
    """Route each output gradient to the input that won its group."""
    n, f = dy.shape
    g = np.zeros((n, f, pieces), dtype=dx.dtype)
    np.put_along_axis(g, argmax[:, :, None], dy[:, :, None], axis=2)
    dx[...] = g.reshape(n, f * pieces)


ACTIVATIONS = {
    "identity": (identity_forward, identity_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "relu": (relu_forward, relu_backward),
}
"""Activations that can be fused into the dense layer before them: name -> (forward, backward)."""


def dense_act_forward(x, w, b, out, act):
    """out = act(x @ w + b) for ``act`` in ACTIVATIONS; the fused form of dense + activation."""
    dense_forward(x, w, b, out)
    ACTIVATIONS[act][0](out, out)


def dense_act_backward(x, w, y, dy, dz, dx, dw, db, act, accumulate=False):
    """Backward of :func:`dense_act_forward`: dz = act'(.) * dy (a buffer like y), then dense."""
    ACTIVATIONS[act][1](None, y, dy, dz)
    dense_backward(x, w, dz, dx, dw, db, accumulate)


# --------------------------------------------------------------------------- losses


def mse_loss(a, y, grad):
    """Mean over samples of 1/2 ||y - a||^2 (sum over outputs). grad = (a - y) / N."""
    n = a.shape[0]
    diff = a - y
    grad[...] = diff / n
    return float(0.5 * np.sum(diff * diff) / n)


def cross_entropy_loss(logits, labels, grad):
    """Softmax + negative log-likelihood of integer ``labels``, fused.

    logits : (N, K); labels : (N,) integers in [0, K). grad = (softmax - onehot) / N.
    """
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logsumexp = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - logsumexp
    rows = np.arange(n)
    grad[...] = np.exp(logp)
    grad[rows, labels] -= 1.0
    grad /= n
    return float(-logp[rows, labels].sum() / n)


def nll_loss(logp, labels, grad):
    """Negative log-likelihood of integer labels given log-probabilities (N, K)."""
    n = logp.shape[0]
    rows = np.arange(n)
    grad[...] = 0
    grad[rows, labels] = -1.0 / n
    return float(-logp[rows, labels].sum() / n)


def bce_with_logits_loss(logits, y, grad):
    """Binary cross-entropy of sigmoid(logits) against targets y in [0, 1].

    Mean over samples of the sum over outputs; stable form max(z,0) - z*y + log(1+exp(-|z|)).
    grad = (sigmoid(z) - y) / N.
    """
    n = logits.shape[0]
    z = logits
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    s = np.empty_like(z)
    sigmoid_forward(z, s)
    grad[...] = (s - y) / n
    return float(loss.sum() / n)


# --------------------------------------------------------------------------- metrics


def count_correct(out, labels):
    """Number of rows whose arg-max equals the integer label."""
    return int(np.count_nonzero(out.argmax(axis=1) == labels))


# --------------------------------------------------------------------------- optimizers


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, first_step=False):
    """One SGD step on flat arrays, PyTorch's rule (with an optional L1 term).

    g' = g + weight_decay * p + l1 * sign(p)
    with momentum: buf = g' on the first step, else momentum * buf + (1 - dampening) * g';
    the step direction is g' + momentum * buf (nesterov) or buf; p -= lr * direction.
    ``buf`` may be None when momentum == 0.
    """
    d = g
    if weight_decay != 0:
        d = d + weight_decay * p
    if l1 != 0:
        d = d + l1 * np.sign(p)
    if momentum != 0:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1.0 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


# ---- convolution and pooling
# Images are (N, C, H, W). ``kernel`` and ``stride`` are pairs (along H, along W); ``padding``
# is the 4-tuple (top, bottom, left, right) of zero rows / columns, as made by
# ``fastnn.convutil.resolve_padding``; the output size follows ``fastnn.convutil.output_hw``.
# Convolution goes through im2col with the per-image layout of Caffe:
#   cols : (N, C * kh * kw, OH * OW), row index (c * kh + i) * kw + j, column oh * OW + ow,
# so that out[n] (F, OH * OW) = w.reshape(F, C * kh * kw) @ cols[n] is already NCHW.
# Output and work buffers are C-contiguous (the layers make them with ``be.empty``).

from ..convutil import output_hw as _output_hw  # noqa: E402


def _pad(x, padding, value=0.0):
    """x (N, C, H, W) with ``padding`` (top, bottom, left, right) rows / columns of ``value``."""
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _window(a, i, j, oh, ow, stride):
    """The (N, C, oh, ow) view of a padded array seen by kernel offset (i, j) of every window."""
    sh, sw = stride
    return a[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]


def conv2d_needs_cols(stride, padding, kernel_size):
    """Whether this backend's conv2d kernels use the ``cols`` / ``dcols`` work buffers for a
    convolution of this geometry (stride pair, padding 4-tuple, kernel pair); when not, layers
    pass None and allocate nothing. Here (im2col + GEMM): always."""
    return True


def im2col(x, kh, kw, stride, padding, cols):
    """Unfold the (kh, kw) windows of ``x`` into the columns of ``cols``.

    x : (N, C, H, W); cols : (N, C * kh * kw, OH * OW), written:
    cols[n, (c * kh + i) * kw + j, oh * OW + ow] = x_padded[n, c, oh * sh + i, ow * sw + j].
    """
    n, c, h, w = x.shape
    oh, ow = _output_hw(h, w, (kh, kw), stride, padding)
    xp = _pad(x, padding)
    view = cols.reshape(n, c, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            view[:, :, i, j] = _window(xp, i, j, oh, ow, stride)


def col2im(cols, kh, kw, stride, padding, dx):
    """Adjoint of :func:`im2col`: fold the columns back, adding where windows overlap.

    cols : (N, C * kh * kw, OH * OW); dx : (N, C, H, W), written (not accumulated into);
    the parts of the windows that fall on the padding are dropped.
    """
    n, c, h, w = dx.shape
    oh, ow = _output_hw(h, w, (kh, kw), stride, padding)
    top, bottom, left, right = padding
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dx.dtype)
    view = cols.reshape(n, c, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            _window(dxp, i, j, oh, ow, stride)[...] += view[:, :, i, j]
    dx[...] = dxp[:, :, top:top + h, left:left + w]


def conv2d_forward(x, w, b, out, stride, padding, cols):
    """2-D cross-correlation (PyTorch's conv2d): im2col, one GEMM per image, bias.

    x : (N, C, H, W); w : (F, C, kh, kw); b : (F,); out : (N, F, OH, OW), written;
    cols : (N, C * kh * kw, OH * OW) work buffer, handed unchanged to the backward: here it is
    left holding im2col(x); a backend may keep something else in it (the cpu backend's direct
    stride-1 kernels leave it untouched and re-read x instead).
    """
    n, f = out.shape[:2]
    kh, kw = w.shape[2:]
    im2col(x, kh, kw, stride, padding, cols)
    np.matmul(w.reshape(f, -1), cols, out=out.reshape(n, f, -1))
    out += b.reshape(1, f, 1, 1)


def conv2d_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """Gradients of :func:`conv2d_forward`.

    cols : as the same backend's :func:`conv2d_forward` left it (not changed here);
    dy : (N, F, OH, OW); dw (F, C, kh, kw), db (F,): written, or added when ``accumulate``;
    dx : (N, C, H, W) written, or None to skip it; dcols : work buffer shaped like cols,
    contents unspecified afterwards (layers always pass it: accelerated backends may use it
    as scratch for the weight gradient too; here it may be None when dx is None).
    """
    n, f = dy.shape[:2]
    kh, kw = w.shape[2:]
    dy3 = dy.reshape(n, f, -1)
    gw = np.tensordot(dy3, cols, axes=([0, 2], [0, 2])).reshape(dw.shape)   # sum_n dy[n] @ cols[n].T
    gb = dy.sum(axis=(0, 2, 3))
    if accumulate:
        dw += gw
        db += gb
    else:
        dw[...] = gw
        db[...] = gb
    if dx is not None:
        np.matmul(w.reshape(f, -1).T, dy3, out=dcols)
        col2im(dcols, kh, kw, stride, padding, dx)


def _fused_conv_act(conv_forward, conv_backward, activations):
    """A backend's ``conv2d_act_forward`` / ``conv2d_act_backward`` composed from its own
    convolution and activation kernels (the fused form for backends without a fused kernel)."""

    def conv2d_act_forward(x, w, b, out, stride, padding, cols, act):
        """out = act(conv2d(x, w) + b) for ``act`` in ACTIVATIONS (see :func:`conv2d_forward`)."""
        conv_forward(x, w, b, out, stride, padding, cols)
        activations[act][0](out, out)

    def conv2d_act_backward(x, w, y, dy, dz, dx, dw, db, stride, padding, cols, dcols, act,
                            accumulate=False):
        """Backward of :func:`conv2d_act_forward` from its output ``y``: dz = act'(.) * dy (a
        buffer like y), then :func:`conv2d_backward` with dz."""
        activations[act][1](None, y, dy, dz)
        conv_backward(x, w, dz, dx, dw, db, stride, padding, cols, dcols, accumulate)

    return conv2d_act_forward, conv2d_act_backward


conv2d_act_forward, conv2d_act_backward = _fused_conv_act(conv2d_forward, conv2d_backward,
                                                          ACTIVATIONS)


def maxpool2d_forward(x, out, argmax, kernel, stride, padding):
    """Max over each (kh, kw) window; the padding never wins (it counts as -inf).

    x : (N, C, H, W); out : (N, C, OH, OW); argmax : (N, C, OH, OW) intp, written with the
    flat index h * W + w of the winner inside its input plane (PyTorch's ``indices``). As
    PyTorch: on ties the first in row-major window order wins, a NaN wins (the last NaN of
    the window), and a window of -inf points at its first in-bounds position.
    """
    n, c, h, w = x.shape
    oh, ow = out.shape[2:]
    sh, sw = stride
    top, _, left, _ = padding
    xp = _pad(x, padding, -np.inf)
    best = np.full(out.shape, -np.inf, dtype=x.dtype)
    first_row = np.maximum(np.arange(oh) * sh - top, 0)[:, None]
    first_col = np.maximum(np.arange(ow) * sw - left, 0)[None, :]
    idx = np.broadcast_to(first_row * w + first_col, out.shape)
    for i in range(kernel[0]):
        rows = (np.arange(oh) * sh - top + i)[:, None]
        for j in range(kernel[1]):
            cols = (np.arange(ow) * sw - left + j)[None, :]
            v = _window(xp, i, j, oh, ow, stride)
            better = (v > best) | np.isnan(v)
            best = np.where(better, v, best)
            idx = np.where(better, rows * w + cols, idx)
    out[...] = best
    argmax[...] = idx


def maxpool2d_backward(argmax, dy, dx):
    """Route each output gradient to its window's winner; overlapping windows add up.

    argmax, dy : (N, C, OH, OW); dx : (N, C, H, W), written.
    """
    n, c = dy.shape[:2]
    dx[...] = 0
    planes = dx.reshape(n * c, -1)
    np.add.at(planes, (np.arange(n * c)[:, None], argmax.reshape(n * c, -1)), dy.reshape(n * c, -1))


def avgpool2d_forward(x, out, kernel, stride, padding):
    """Mean over each (kh, kw) window, zero padding included in the count (PyTorch's default
    ``count_include_pad=True``): every window divides by kh * kw.

    x : (N, C, H, W); out : (N, C, OH, OW), written.
    """
    oh, ow = out.shape[2:]
    xp = _pad(x, padding)
    acc = np.zeros(out.shape, dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            acc += _window(xp, i, j, oh, ow, stride)
    out[...] = acc / (kernel[0] * kernel[1])


def avgpool2d_backward(dy, dx, kernel, stride, padding):
    """Spread each output gradient evenly (1 / (kh * kw)) over its window; overlaps add up.

    dy : (N, C, OH, OW); dx : (N, C, H, W), written.
    """
    n, c, h, w = dx.shape
    oh, ow = dy.shape[2:]
    top, bottom, left, right = padding
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dx.dtype)
    g = dy / (kernel[0] * kernel[1])
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            _window(dxp, i, j, oh, ow, stride)[...] += g
    dx[...] = dxp[:, :, top:top + h, left:left + w]


# ---- optimizers (continued): AdaGrad, RMSProp, Adam / AdamW, and the helpers of gradient
# clipping and the max-norm constraint. Flat arrays; PyTorch's update rules (see fastnn.optim).


def adagrad_step(p, g, state_sum, lr, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1):
    """One AdaGrad step on flat arrays, PyTorch's rule.

    g' = g + weight_decay * p; clr = lr / (1 + (step - 1) * lr_decay);
    state_sum += g' * g'; p -= clr * g' / (sqrt(state_sum) + eps). ``step`` counts from 1.
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1.0 + (step - 1) * lr_decay)
    state_sum += g * g
    p -= clr * g / (np.sqrt(state_sum) + eps)


def rmsprop_step(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, nesterov=False):
    """One RMSProp step on flat arrays, PyTorch's rule plus a Nesterov variant.

    g' = g + weight_decay * p; square_avg = alpha * square_avg + (1 - alpha) * g'^2;
    centered: grad_avg = alpha * grad_avg + (1 - alpha) * g', a = sqrt(square_avg - grad_avg^2) + eps,
    else a = sqrt(square_avg) + eps; u = g' / a; with momentum:
    momentum_buffer = momentum * momentum_buffer + u and the step direction is
    u + momentum * momentum_buffer (nesterov) or momentum_buffer; p -= lr * direction.
    ``momentum_buffer`` may be None when momentum == 0, ``grad_avg`` when not centered.
    """
    if weight_decay != 0:
        g = g + weight_decay * p
    square_avg *= alpha
    square_avg += (1.0 - alpha) * g * g
    if centered:
        grad_avg *= alpha
        grad_avg += (1.0 - alpha) * g
        u = g / (np.sqrt(square_avg - grad_avg * grad_avg) + eps)
    else:
        u = g / (np.sqrt(square_avg) + eps)
    if momentum != 0:
        momentum_buffer *= momentum
        momentum_buffer += u
        u = u + momentum * momentum_buffer if nesterov else momentum_buffer
    p -= lr * u


def adam_step(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, step=1, amsgrad=False, decoupled=False):
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step on flat arrays,
    PyTorch's rule.

    Adam: g' = g + weight_decay * p; AdamW: g' = g and p *= 1 - lr * weight_decay first.
    exp_avg = beta1 * exp_avg + (1 - beta1) * g'; exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g'^2;
    amsgrad: max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq), used in place of exp_avg_sq below;
    p -= lr / (1 - beta1^step) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2^step) + eps).
    ``step`` counts from 1; ``max_exp_avg_sq`` may be None without amsgrad.
    """
    if weight_decay != 0:
        if decoupled:
            p *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * p
    exp_avg *= beta1
    exp_avg += (1.0 - beta1) * g
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * g * g
    second = exp_avg_sq
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    step_size = lr / (1.0 - beta1 ** step)
    denom = np.sqrt(second) / (1.0 - beta2 ** step) ** 0.5 + eps
    p -= step_size * exp_avg / denom


def sum_of_squares(x):
    """sum(x ** 2) over every element, as a Python float (the squared L2 norm; gradient
    clipping by global norm adds it up over the runs of the flat gradient buffer)."""
    x = x.reshape(-1)
    return float(np.dot(x, x))


def scale_inplace(x, factor):
    """x *= factor, in place."""
    x *= factor


def renorm_units(w, max_norm, unit_axis):
    """Max-norm constraint: rescale each unit's weights to L2 norm ``max_norm`` where longer.

    The units lie along ``unit_axis`` of ``w`` (-1 for a Dense weight (in, out), 0 for a
    Conv2D weight (out, in, kh, kw)); each unit's norm is over all the other axes. Units with
    norm <= max_norm are left unchanged; the others are multiplied by max_norm / norm. In place.
    """
    axis = unit_axis % w.ndim
    axes = tuple(i for i in range(w.ndim) if i != axis)
    norms = np.sqrt(np.sum(w * w, axis=axes, keepdims=True))
    w *= (max_norm / np.maximum(norms, max_norm)).astype(w.dtype)


# ---- regularization: dropout, batch normalization, class-weighted losses


def dropout_forward(x, mask, out):
    """Inverted dropout with a given mask: out = x * mask.

    x, mask, out : same shape (any); ``mask`` holds 0 for dropped units and 1 / (1 - p) for
    kept ones (the layer draws it), so the expectation of ``out`` is ``x`` and inference is the
    identity.
    """
    np.multiply(x, mask, out=out)


def dropout_backward(mask, dy, dx):
    """dx = dy * mask (the mask of the forward pass)."""
    np.multiply(dy, mask, out=dx)


def _bn_view(a):
    """(N, F) or (N, C, H, W) as (N, C, S) with S = 1 or H * W: statistics over axes 0 and 2."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def batchnorm_forward_train(x, gamma, beta, out, mean, invstd, running_mean, running_var,
                            momentum=0.1, eps=1e-5):
    """Batch normalization in training mode, per feature of (N, F) or per channel of (N, C, H, W).

    With m = N (or N * H * W) values per feature: mean = sum(x) / m, var = sum((x - mean)^2) / m
    (biased), invstd = 1 / sqrt(var + eps); out = gamma * (x - mean) * invstd + beta.
    ``mean`` and ``invstd`` (shape (C,)) are written for the backward pass. The running
    estimates are updated in place with PyTorch's convention:
    running_mean = (1 - momentum) * running_mean + momentum * mean,
    running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1) (unbiased).
    gamma, beta, running_mean, running_var : (C,); out : shaped like x. Needs m > 1.
    """
    xv = _bn_view(x)
    m = xv.shape[0] * xv.shape[2]
    mu = xv.mean(axis=(0, 2))
    var = ((xv - mu[None, :, None]) ** 2).mean(axis=(0, 2))
    mean[...] = mu
    invstd[...] = 1.0 / np.sqrt(var + eps)
    xhat = (xv - mu[None, :, None]) * invstd[None, :, None]
    _bn_view(out)[...] = gamma[None, :, None] * xhat + beta[None, :, None]
    running_mean *= 1.0 - momentum
    running_mean += momentum * mu
    running_var *= 1.0 - momentum
    running_var += momentum * var * (m / (m - 1))


def batchnorm_forward_eval(x, gamma, beta, out, running_mean, running_var, eps=1e-5):
    """Batch normalization at inference: out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta."""
    scale = gamma / np.sqrt(running_var + eps)
    shift = beta - running_mean * scale
    _bn_view(out)[...] = _bn_view(x) * scale[None, :, None] + shift[None, :, None]


def batchnorm_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, accumulate=False):
    """Gradients of :func:`batchnorm_forward_train` (the batch statistics depend on every sample).

    With xhat = (x - mean) * invstd and sums over the m values of each feature:
    dbeta = sum(dy), dgamma = sum(dy * xhat),
    dx = gamma * invstd / m * (m * dy - dbeta - xhat * dgamma).
    dgamma, dbeta (C,): written, or added when ``accumulate``; dx shaped like x, or None.
    """
    xv, dyv = _bn_view(x), _bn_view(dy)
    m = xv.shape[0] * xv.shape[2]
    xhat = (xv - mean[None, :, None]) * invstd[None, :, None]
    gb = dyv.sum(axis=(0, 2))
    gg = (dyv * xhat).sum(axis=(0, 2))
    if dx is not None:
        k = (gamma * invstd / m)[None, :, None]
        _bn_view(dx)[...] = k * (m * dyv - gb[None, :, None] - xhat * gg[None, :, None])
    if accumulate:
        dgamma += gg
        dbeta += gb
    else:
        dgamma[...] = gg
        dbeta[...] = gb


def weighted_cross_entropy_loss(logits, labels, weight, grad):
    """Class-weighted softmax + NLL, PyTorch's ``cross_entropy(weight=...)`` with mean reduction.

    logits : (N, K); labels : (N,) integers in [0, K); weight : (K,) per-class weights.
    loss = sum_i w[y_i] * nll_i / sum_i w[y_i];
    grad_i = w[y_i] * (softmax_i - onehot_i) / sum_j w[y_j].
    """
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    wi = weight[labels]
    total = wi.sum()
    grad[...] = np.exp(logp)
    grad[rows, labels] -= 1.0
    grad *= (wi / total)[:, None]
    return float(-(wi * logp[rows, labels]).sum() / total)


def weighted_nll_loss(logp, labels, weight, grad):
    """Class-weighted NLL of log-probabilities (N, K), PyTorch's ``nll_loss(weight=...)``:
    loss = -sum_i w[y_i] * logp[i, y_i] / sum_i w[y_i]."""
    n = logp.shape[0]
    rows = np.arange(n)
    wi = weight[labels]
    total = wi.sum()
    grad[...] = 0
    grad[rows, labels] = -wi / total
    return float(-(wi * logp[rows, labels]).sum() / total)
