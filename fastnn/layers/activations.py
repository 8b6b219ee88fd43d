"""Activation layers: element-wise and row-wise ones, the learned PReLU and Maxout."""
import numpy as np

from ..errors import ShapeError
from ..kernels import contract
from .base import Layer, shape_text


class Activation(Layer, abstract=True):
    """Element-wise activation calling ``be.<kernel>_forward`` / ``be.<kernel>_backward``.

    A subclass names its ``kernel``; one that can be fused into a preceding Dense / Conv2D
    also declares its ``code`` (a :class:`fastnn.kernels.contract.Activation`), which the model
    hands to that layer instead of running this one.

    Shapes: any ``(N, ...)`` -> the same shape.
    """

    kernel = None            # op name in the backend, e.g. "relu"
    code = None              # contract.Activation when fusable, else None
    work_attrs = ("x", "y")

    @property
    def fusable(self):
        """Whether the model may fuse this activation into the Dense / Conv2D before it."""
        return self.code is not None

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
    kernel, code, init_family = "sigmoid", contract.Activation.SIGMOID, "xavier"


class Tanh(Activation):
    """Hyperbolic tangent."""
    kernel, code, init_family = "tanh", contract.Activation.TANH, "xavier"


class ReLU(Activation):
    """max(x, 0)."""
    kernel, code, init_family = "relu", contract.Activation.RELU, "he"


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

    init_family = "he"
    work_attrs = ("x",)

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
                             f"got input of shape {shape_text(shape)}")

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

    work_attrs = ("x_shape", "argmax")

    def __init__(self, pieces):
        super().__init__()
        self.pieces = int(pieces)

    def check_input(self, shape):
        if len(shape) != 1 or shape[0] % self.pieces:
            raise ShapeError(f"{self!r} expected input (N, F * {self.pieces}), "
                             f"got {shape_text(shape)}")

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
