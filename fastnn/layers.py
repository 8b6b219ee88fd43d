"""Layers: each knows its parameters, its output shape, and calls its backend's kernels.

A layer never imports a backend module; the model hands it the backend (``be``), a namespace
of kernel functions with the signatures of :mod:`fastnn.kernels.reference`. Output buffers are
made once per input shape and reused, so a training step allocates nothing after the first
batch of a given shape.
"""
import numpy as np

from . import init as initializers
from .errors import ShapeError
from .parameter import Parameter


class Layer:
    """Base class. Subclasses set ``param_names`` and implement ``forward``/``backward``.

    ``forward(be, x, training)`` returns the output; ``backward(be, dy, need_dx, accumulate)``
    writes the parameter gradients and returns the gradient w.r.t. the input (or None when
    ``need_dx`` is False).
    """

    param_names = ()

    def __init__(self):
        self.params = []
        self._buffers = {}

    # -- parameters ---------------------------------------------------------------------
    def parameter_shapes(self):
        """List of ``(name, shape)`` of this layer's parameters, in order."""
        return []

    def initial_values(self, rng, dtype, next_activation=None):
        """Host arrays with the initial values of the parameters, in ``parameter_shapes`` order."""
        return []

    def make_parameters(self, prefix):
        self.params = [Parameter(f"{prefix}.{name}", shape) for name, shape in self.parameter_shapes()]
        for p, name in zip(self.params, self.param_names):
            setattr(self, name, p)
        return self.params

    # -- shapes -------------------------------------------------------------------------
    def output_shape(self, input_shape):
        """Per-sample output shape for a per-sample ``input_shape`` (no batch axis)."""
        return tuple(input_shape)

    def check_input(self, shape):
        """Raise ShapeError if a batch of per-sample ``shape`` cannot enter this layer."""

    # -- buffers ------------------------------------------------------------------------
    def buffer(self, be, name, shape, dtype):
        """A cached work array: allocated the first time a (name, shape, dtype) is asked for
        on backend ``be`` (a layer instance may move between models on different backends)."""
        key = (be.NAME, name, tuple(shape), np.dtype(dtype).str)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = be.empty(shape, dtype)
        return buf

    # -- serialisation -------------------------------------------------------------------
    def get_config(self):
        """Keyword arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# ------------------------------------------------------------------------------- dense


class Dense(Layer):
    """Fully connected layer: ``y = x @ weight + bias``.

    Parameters
    ----------
    in_features, out_features : int
    init : str or callable, optional
        Weight initialiser (see :mod:`fastnn.init`); by default chosen from the activation that
        follows (He for ReLU-like, Xavier for sigmoid/tanh, LeCun otherwise).
    bias_init : str or callable, default "zeros"

    Shapes: x ``(N, in_features)`` float32/float64 -> ``(N, out_features)``;
    weight ``(in_features, out_features)``, bias ``(out_features,)``.
    """

    param_names = ("weight", "bias")

    def __init__(self, in_features, out_features, init=None, bias_init="zeros"):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.init, self.bias_init = init, bias_init
        self.fused_activation = None     # set by Sequential when an activation follows

    def parameter_shapes(self):
        return [("weight", (self.in_features, self.out_features)), ("bias", (self.out_features,))]

    def initial_values(self, rng, dtype, next_activation=None):
        return initial_weight_and_bias(self, rng, dtype, next_activation,
                                       (self.in_features, self.out_features),
                                       self.in_features, self.out_features)

    def check_input(self, shape):
        if tuple(shape) != (self.in_features,):
            hint = "; add Flatten() first" if len(shape) > 1 else ""
            raise ShapeError(f"{self!r} expected input of shape (N, {self.in_features}), "
                             f"got (N, {', '.join(map(str, shape))}){hint}")

    def output_shape(self, input_shape):
        return (self.out_features,)

    def forward(self, be, x, training=False):
        self.x = x
        out = self.buffer(be, "out", (x.shape[0], self.out_features), x.dtype)
        if self.fused_activation is None:
            be.dense_forward(x, self.weight.data, self.bias.data, out)
        else:
            be.dense_act_forward(x, self.weight.data, self.bias.data, out, self.fused_activation)
        self.y = out
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        x = self.x
        dx = self.buffer(be, "dx", x.shape, x.dtype) if need_dx else None
        w, dw, db = self.weight.data, self.weight.grad, self.bias.grad
        if self.fused_activation is None:
            be.dense_backward(x, w, dy, dx, dw, db, accumulate)
        else:
            dz = self.buffer(be, "dz", dy.shape, dy.dtype)
            be.dense_act_backward(x, w, self.y, dy, dz, dx, dw, db, self.fused_activation, accumulate)
        return dx

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                **initializer_config(self)}


def initial_weight_and_bias(layer, rng, dtype, next_activation, weight_shape, fan_in, fan_out):
    """[weight, bias] of a layer with ``init`` / ``bias_init`` attributes (Dense, Conv2D); the
    bias has one entry per output unit (the last axis of a Dense weight, the first of a conv)."""
    init = layer.init or initializers.default_for(next_activation)
    n_out = weight_shape[-1] if len(weight_shape) == 2 else weight_shape[0]
    w = initializers.get(init)(rng, weight_shape, fan_in, fan_out)
    b = initializers.get(layer.bias_init)(rng, (n_out,), fan_in, fan_out)
    return [w.astype(dtype), b.astype(dtype)]


def initializer_config(layer):
    """The ``init`` / ``bias_init`` given by name (a function cannot be saved as JSON)."""
    return {key: getattr(layer, key) for key in ("init", "bias_init")
            if isinstance(getattr(layer, key), str) or getattr(layer, key) is None}


# ------------------------------------------------------------------------------- activations


class Activation(Layer):
    """Element-wise activation calling ``be.<kernel>_forward`` / ``be.<kernel>_backward``.

    Shapes: any ``(N, ...)`` -> the same shape.
    """

    kernel = None            # name in the backend, e.g. "relu"
    fusable = False          # can be fused into a preceding Dense / Conv2D (reference.ACTIVATIONS)
    init_family = "lecun"    # weight initialiser suited to this activation

    def _kwargs(self):
        return {}

    def forward(self, be, x, training=False):
        self.x = x
        out = self.buffer(be, "out", x.shape, x.dtype)
        getattr(be, self.kernel + "_forward")(x, out, **self._kwargs())
        self.y = out
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        dx = self.buffer(be, "dx", dy.shape, dy.dtype)
        getattr(be, self.kernel + "_backward")(self.x, self.y, dy, dx, **self._kwargs())
        return dx


class Sigmoid(Activation):
    """Logistic sigmoid 1 / (1 + exp(-x))."""
    kernel, fusable, init_family = "sigmoid", True, "xavier"


class Tanh(Activation):
    """Hyperbolic tangent."""
    kernel, fusable, init_family = "tanh", True, "xavier"


class ReLU(Activation):
    """max(x, 0)."""
    kernel, fusable, init_family = "relu", True, "he"


class LeakyReLU(Activation):
    """x for x > 0, ``negative_slope * x`` otherwise."""
    kernel, init_family = "leaky_relu", "he"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def _kwargs(self):
        return {"negative_slope": self.negative_slope}

    def get_config(self):
        return {"negative_slope": self.negative_slope}


class Softmax(Activation):
    """Row-wise softmax of ``(N, K)``; for training prefer logits with CrossEntropyLoss."""
    kernel = "softmax"


class LogSoftmax(Activation):
    """Row-wise log-softmax of ``(N, K)``; pair with NLLLoss."""
    kernel = "log_softmax"


class PReLU(Layer):
    """Parametric ReLU: ``x`` for x > 0, ``a * x`` otherwise, with ``a`` learned.

    Parameters
    ----------
    num_parameters : int, default 1
        1 for one shared slope, or the number of features / channels (axis 1) for one each.
    init : float, default 0.25
    """

    param_names = ("weight",)
    init_family = "he"

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_parameters, self.init = int(num_parameters), float(init)

    def parameter_shapes(self):
        return [("weight", (self.num_parameters,))]

    def initial_values(self, rng, dtype, next_activation=None):
        return [np.full(self.num_parameters, self.init, dtype=dtype)]

    def check_input(self, shape):
        if self.num_parameters != 1 and (not shape or shape[0] != self.num_parameters):
            raise ShapeError(f"{self!r} has {self.num_parameters} slopes for axis 1, "
                             f"got input of shape (N, {', '.join(map(str, shape))})")

    def forward(self, be, x, training=False):
        self.x = x
        out = self.buffer(be, "out", x.shape, x.dtype)
        be.prelu_forward(x, self.weight.data, out)
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        dx = self.buffer(be, "dx", dy.shape, dy.dtype)
        be.prelu_backward(self.x, self.weight.data, dy, dx, self.weight.grad, accumulate)
        return dx

    def get_config(self):
        return {"num_parameters": self.num_parameters, "init": self.init}


class Maxout(Layer):
    """Maximum over groups of ``pieces`` consecutive features: (N, F * pieces) -> (N, F)."""

    def __init__(self, pieces):
        super().__init__()
        self.pieces = int(pieces)

    def check_input(self, shape):
        if len(shape) != 1 or shape[0] % self.pieces:
            raise ShapeError(f"{self!r} expected input (N, F * {self.pieces}), "
                             f"got (N, {', '.join(map(str, shape))})")

    def output_shape(self, input_shape):
        return (input_shape[0] // self.pieces,)

    def forward(self, be, x, training=False):
        n, f = x.shape[0], x.shape[1] // self.pieces
        self.x_shape = x.shape
        out = self.buffer(be, "out", (n, f), x.dtype)
        self.argmax = self.buffer(be, "argmax", (n, f), np.intp)
        be.maxout_forward(x, out, self.argmax, self.pieces)
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        dx = self.buffer(be, "dx", self.x_shape, dy.dtype)
        be.maxout_backward(self.argmax, dy, dx, self.pieces)
        return dx

    def get_config(self):
        return {"pieces": self.pieces}


# ------------------------------------------------------------------------------- shape layers


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), a view without copying."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, be, x, training=False):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, be, dy, need_dx=True, accumulate=False):
        return dy.reshape(self.x_shape)


LAYERS = {cls.__name__: cls for cls in
          (Dense, Sigmoid, Tanh, ReLU, LeakyReLU, Softmax, LogSoftmax, PReLU, Maxout, Flatten)}
"""Registry used by ``Sequential.load``: class name -> class. Other modules add their layers."""


def register(cls):
    """Class decorator that makes a layer loadable by ``Sequential.load``."""
    LAYERS[cls.__name__] = cls
    return cls


# ------------------------------------------------------------------------------- convolution and pooling

from . import convutil  # noqa: E402


def _hw_config(pair):
    """A (kh, kw) pair as it goes into get_config: an int when both are equal, else a list."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def _shape_text(shape):
    return "(N, " + ", ".join(map(str, shape)) + ")"


class _Spatial(Layer):
    """Shared input checks of the layers that slide a window over (N, C, H, W) images."""

    channels = None          # required input channels, or None for any

    def _check_image(self, shape):
        if len(shape) != 3:
            hint = "; reshape flat rows to (N, C, H, W) first" if len(shape) == 1 else ""
            raise ShapeError(f"{self!r} expected images (N, C, H, W), got input of shape "
                             f"{_shape_text(shape)}{hint}")
        c, h, w = shape
        if self.channels is not None and c != self.channels:
            raise ShapeError(f"{self!r} expected {self.channels} input channel(s), got images of "
                             f"shape {_shape_text(shape)} with {c}")
        oh, ow = convutil.output_hw(h, w, self.kernel_size, self.stride, self.pads)
        if oh < 1 or ow < 1:
            top, bottom, left, right = self.pads
            raise ShapeError(f"{self!r}: the {h}x{w} image (padded to {h + top + bottom}x"
                             f"{w + left + right}) is smaller than the {self.kernel_size[0]}x"
                             f"{self.kernel_size[1]} kernel; use larger images, more padding or "
                             f"a smaller kernel")

    def output_hw(self, h, w):
        return convutil.output_hw(h, w, self.kernel_size, self.stride, self.pads)


class Conv2D(_Spatial):
    """2-D convolution (cross-correlation, as PyTorch's ``conv2d``) computed with im2col + GEMM.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default 1
    padding : int, (ph, pw), "valid" or "same", default 0
        Zero padding on each side; "same" keeps H and W (stride 1 only; for an even kernel the
        extra row / column goes at the bottom / right, like PyTorch).
    init : str or callable, optional
        Weight initialiser (see :mod:`fastnn.init`) with fan_in = in_channels * kh * kw and
        fan_out = out_channels * kh * kw; by default chosen from the activation that follows.
    bias_init : str or callable, default "zeros"

    Shapes: x ``(N, in_channels, H, W)`` float32/float64 -> ``(N, out_channels, OH, OW)`` with
    ``OH = (H + pad_top + pad_bottom - kh) // sh + 1`` (likewise OW);
    weight ``(out_channels, in_channels, kh, kw)``, bias ``(out_channels,)``.
    """

    param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, init=None,
                 bias_init="zeros"):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = convutil.pair(kernel_size, "kernel_size")
        self.stride = convutil.pair(stride, "stride")
        if min(self.in_channels, self.out_channels) < 1 or min(self.kernel_size + self.stride) < 1:
            raise ValueError(f"Conv2D needs positive channels, kernel_size and stride, got "
                             f"{in_channels}, {out_channels}, {kernel_size}, {stride}")
        self.padding = convutil.padding_config(padding)
        self.pads = convutil.resolve_padding(padding, self.kernel_size, self.stride)
        self.channels = self.in_channels
        self.init, self.bias_init = init, bias_init
        self.fused_activation = None     # set by Sequential when an activation follows

    def parameter_shapes(self):
        kh, kw = self.kernel_size
        return [("weight", (self.out_channels, self.in_channels, kh, kw)),
                ("bias", (self.out_channels,))]

    def initial_values(self, rng, dtype, next_activation=None):
        kh, kw = self.kernel_size
        return initial_weight_and_bias(self, rng, dtype, next_activation,
                                       (self.out_channels, self.in_channels, kh, kw),
                                       self.in_channels * kh * kw, self.out_channels * kh * kw)

    def check_input(self, shape):
        self._check_image(shape)

    def output_shape(self, input_shape):
        return (self.out_channels,) + self.output_hw(*input_shape[1:])

    def forward(self, be, x, training=False):
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        oh, ow = self.output_hw(h, w)
        out = self.buffer(be, "out", (n, self.out_channels, oh, ow), x.dtype)
        cols = None
        if be.conv2d_needs_cols(self.stride, self.pads, self.kernel_size):
            cols = self.buffer(be, "cols", (n, c * kh * kw, oh * ow), x.dtype)
        w, b = self.weight.data, self.bias.data
        if self.fused_activation is None:
            be.conv2d_forward(x, w, b, out, self.stride, self.pads, cols)
        else:
            be.conv2d_act_forward(x, w, b, out, self.stride, self.pads, cols, self.fused_activation)
        self.x, self.cols, self.y = x, cols, out
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        x, cols = self.x, self.cols
        dx = self.buffer(be, "dx", x.shape, x.dtype) if need_dx else None
        dcols = None                                               # scratch even without dx
        if cols is not None:
            dcols = self.buffer(be, "dcols", cols.shape, x.dtype)
        w, dw, db = self.weight.data, self.weight.grad, self.bias.grad
        if self.fused_activation is None:
            be.conv2d_backward(x, w, dy, dx, dw, db, self.stride, self.pads, cols, dcols,
                               accumulate)
        else:
            dz = self.buffer(be, "dz", dy.shape, dy.dtype)
            be.conv2d_act_backward(x, w, self.y, dy, dz, dx, dw, db, self.stride, self.pads,
                                   cols, dcols, self.fused_activation, accumulate)
        return dx

    def get_config(self):
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": _hw_config(self.kernel_size), "stride": _hw_config(self.stride),
               "padding": self.padding}
        return {**cfg, **initializer_config(self)}


class _Pool2D(_Spatial):
    """Shared construction of the pooling layers: kernel, stride (default: the kernel) and
    symmetric zero padding of at most half the kernel (as PyTorch)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = convutil.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else convutil.pair(stride, "stride")
        if min(self.kernel_size + self.stride) < 1:
            raise ValueError(f"{type(self).__name__} needs a positive kernel_size and stride, got "
                             f"{kernel_size} and {stride}")
        ph, pw = convutil.pair(padding, "padding")
        if ph < 0 or pw < 0 or 2 * ph > self.kernel_size[0] or 2 * pw > self.kernel_size[1]:
            raise ValueError(f"{type(self).__name__}: padding {padding!r} must be >= 0 and at "
                             f"most half the kernel size {self.kernel_size}")
        self.padding = (ph, pw)
        self.pads = (ph, ph, pw, pw)

    def check_input(self, shape):
        self._check_image(shape)

    def output_shape(self, input_shape):
        return (input_shape[0],) + self.output_hw(*input_shape[1:])

    def _out(self, be, x):
        n, c, h, w = x.shape
        return self.buffer(be, "out", (n, c) + self.output_hw(h, w), x.dtype)

    def get_config(self):
        return {"kernel_size": _hw_config(self.kernel_size), "stride": _hw_config(self.stride),
                "padding": _hw_config(self.padding)}


class MaxPool2D(_Pool2D):
    """Max over each window of every channel; the gradient goes to the window's winner (the
    first maximum on ties, as PyTorch).

    Parameters
    ----------
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default: kernel_size
    padding : int or (ph, pw), default 0; implicit -inf padding, at most half the kernel

    Shapes: ``(N, C, H, W)`` -> ``(N, C, OH, OW)``, ``OH = (H + 2 ph - kh) // sh + 1``.
    """

    def forward(self, be, x, training=False):
        out = self._out(be, x)
        self.argmax = self.buffer(be, "argmax", out.shape, np.intp)
        be.maxpool2d_forward(x, out, self.argmax, self.kernel_size, self.stride, self.pads)
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        if not need_dx:
            return None
        dx = self.buffer(be, "dx", self.x_shape, self.x_dtype)
        be.maxpool2d_backward(self.argmax, dy, dx)
        return dx


class AvgPool2D(_Pool2D):
    """Mean over each window of every channel (zero padding counted, PyTorch's default).

    Parameters and shapes as :class:`MaxPool2D`.
    """

    def forward(self, be, x, training=False):
        out = self._out(be, x)
        be.avgpool2d_forward(x, out, self.kernel_size, self.stride, self.pads)
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        if not need_dx:
            return None
        dx = self.buffer(be, "dx", self.x_shape, self.x_dtype)
        be.avgpool2d_backward(dy, dx, self.kernel_size, self.stride, self.pads)
        return dx


for _cls in (Conv2D, MaxPool2D, AvgPool2D):
    register(_cls)


# ------------------------------------------------------------------------------- regularization


@register
class Dropout(Layer):
    """Inverted dropout: in training each element is zeroed with probability ``p`` and the
    kept ones are scaled by 1 / (1 - p), so the expected output equals the input; at inference
    the layer is the identity (it returns its input unchanged).

    The mask is drawn on the host from the model's random stream (``Sequential`` hands it to
    the layer as ``self.rng``; during ``fit`` it is the fit's stream), into a reused buffer, and
    copied to the device on a device backend, so the same seed gives the same masks, and the
    same masks on every backend.

    Parameters
    ----------
    p : float in [0, 1), default 0.5
        Probability of dropping each element.

    Shapes: any ``(N, ...)`` -> the same shape.
    """

    uses_rng = True          # Sequential sets ``self.rng`` to its random stream

    def __init__(self, p=0.5):
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability p must be in [0, 1), got {p}")
        self.p = p
        self.rng = None
        self.mask = None
        self._host = {}

    def _host_buffer(self, name, shape, dtype):
        key = (name, tuple(shape), np.dtype(dtype).str)
        buf = self._host.get(key)
        if buf is None:
            buf = self._host[key] = np.empty(shape, dtype=dtype)
        return buf

    def _draw_mask(self, be, shape, dtype):
        """The mask (0 or 1 / (1 - p)) for a batch of ``shape``, in a reused backend buffer."""
        if self.rng is None:
            raise RuntimeError(f"{self!r} has no random stream: use it inside a fastnn.Sequential "
                               "(or set layer.rng to a numpy.random.Generator)")
        dtype = np.dtype(dtype)
        mask = self.buffer(be, "mask", shape, dtype)
        host = mask if isinstance(mask, np.ndarray) else self._host_buffer("mask", shape, dtype)
        keep = self._host_buffer("keep", shape, np.bool_)
        self.rng.random(dtype=dtype, out=host)
        np.greater_equal(host, self.p, out=keep)
        np.multiply(keep, 1.0 / (1.0 - self.p), out=host)
        if host is not mask:
            be.copy_into(mask, host)
        return mask

    def forward(self, be, x, training=False):
        self.x_shape = tuple(x.shape)
        if not training or self.p == 0.0:
            self.mask = None
            return x
        self.mask = self._draw_mask(be, self.x_shape, x.dtype)
        out = self.buffer(be, "out", self.x_shape, x.dtype)
        be.dropout_forward(x, self.mask, out)
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        if not need_dx:
            return None
        if self.mask is None:
            return dy
        dx = self.buffer(be, "dx", tuple(dy.shape), dy.dtype)
        be.dropout_backward(self.mask, dy, dx)
        return dx

    def get_config(self):
        return {"p": self.p}


@register
class BatchNorm(Layer):
    """Batch normalization (Ioffe & Szegedy) of ``(N, F)`` per feature or ``(N, C, H, W)`` per
    channel, as PyTorch's ``BatchNorm1d`` / ``BatchNorm2d``.

    In training the batch mean and (biased) variance over N (and H, W) normalise the input,
    ``y = weight * (x - mean) / sqrt(var + eps) + bias``, and the running estimates are updated,
    ``running = (1 - momentum) * running + momentum * batch_value`` with the unbiased batch
    variance; at inference the running estimates are used instead.

    Parameters
    ----------
    num_features : int
        F of ``(N, F)`` inputs or C of ``(N, C, H, W)`` inputs.
    eps : float, default 1e-5
    momentum : float, default 0.1
    affine : bool, default True
        Learn a scale ``weight`` (gamma, initially 1) and a shift ``bias`` (beta, initially 0).

    Attributes
    ----------
    running_mean, running_var : backend arrays of shape (num_features,)
        Non-trainable state (not in ``parameters()``), saved and loaded with the model; see
    :meth:`state_arrays`.
    """

    param_names = ("weight", "bias")
    state_names = ("running_mean", "running_var")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        self.num_features = int(num_features)
        self.eps, self.momentum, self.affine = float(eps), float(momentum), bool(affine)
        if self.num_features < 1 or self.eps <= 0 or not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNorm needs num_features >= 1, eps > 0 and momentum in [0, 1], "
                             f"got {num_features}, {eps} and {momentum}")
        self.be = None
        self.trained_forward = False

    # -- parameters and state --------------------------------------------------------------
    def parameter_shapes(self):
        f = self.num_features
        return [("weight", (f,)), ("bias", (f,))] if self.affine else []

    def initial_values(self, rng, dtype, next_activation=None):
        f = self.num_features
        return [np.ones(f, dtype=dtype), np.zeros(f, dtype=dtype)] if self.affine else []

    def init_state(self, be, dtype):
        """Make the running estimates on backend ``be`` (mean 0, variance 1); Sequential calls it."""
        f = self.num_features
        self.be = be
        self.running_mean = be.to_device(np.zeros(f, dtype=dtype))
        self.running_var = be.to_device(np.ones(f, dtype=dtype))
        if not self.affine:                     # fixed gamma = 1, beta = 0 and scratch gradients
            self._gamma = be.to_device(np.ones(f, dtype=dtype))
            self._beta = be.to_device(np.zeros(f, dtype=dtype))
            self._dgamma, self._dbeta = be.empty((f,), dtype), be.empty((f,), dtype)

    def state_arrays(self):
        """Host copies of the non-trainable state: ``{"running_mean": ..., "running_var": ...}``."""
        return {name: np.array(self.be.to_host(getattr(self, name))) for name in self.state_names}

    def load_state_arrays(self, arrays):
        """Set the state from host arrays as :meth:`state_arrays` returns them."""
        for name in self.state_names:
            target = getattr(self, name)
            value = np.asarray(arrays[name])
            if value.shape != (self.num_features,):
                raise ValueError(f"{self!r}: {name} has shape {value.shape}, expected "
                                 f"({self.num_features},)")
            self.be.copy_into(target, value.astype(target.dtype))

    def _affine(self):
        if self.affine:
            return self.weight.data, self.bias.data, self.weight.grad, self.bias.grad
        return self._gamma, self._beta, self._dgamma, self._dbeta

    # -- shapes ------------------------------------------------------------------------------
    def check_input(self, shape):
        if len(shape) not in (1, 3) or shape[0] != self.num_features:
            raise ShapeError(f"{self!r} expected input (N, {self.num_features}) or "
                             f"(N, {self.num_features}, H, W), got {_shape_text(shape)}")

    # -- forward / backward ----------------------------------------------------------------
    def forward(self, be, x, training=False):
        shape, f = tuple(x.shape), self.num_features
        out = self.buffer(be, "out", shape, x.dtype)
        gamma, beta, _, _ = self._affine()
        if training:
            per_feature = shape[0] * int(np.prod(shape[2:]))
            if per_feature < 2:
                raise ShapeError(f"{self!r} in training needs more than one value per feature, got "
                                 f"a batch of shape {shape}; use batches of at least 2 samples")
            self.mean = self.buffer(be, "mean", (f,), x.dtype)
            self.invstd = self.buffer(be, "invstd", (f,), x.dtype)
            be.batchnorm_forward_train(x, gamma, beta, out, self.mean, self.invstd,
                                       self.running_mean, self.running_var, self.momentum, self.eps)
        else:
            be.batchnorm_forward_eval(x, gamma, beta, out, self.running_mean, self.running_var,
                                      self.eps)
        self.x, self.trained_forward = x, training
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        if not self.trained_forward:
            raise RuntimeError(f"{self!r}.backward() needs a forward(x, training=True) first")
        x = self.x
        dx = self.buffer(be, "dx", tuple(x.shape), x.dtype) if need_dx else None
        gamma, _, dgamma, dbeta = self._affine()
        be.batchnorm_backward(x, gamma, self.mean, self.invstd, dy, dx, dgamma, dbeta, accumulate)
        return dx

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine}
