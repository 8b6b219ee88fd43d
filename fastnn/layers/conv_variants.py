"""Convolution variants: 1-D, transposed, depthwise-separable, locally connected and tiled.

Parameter layouts as PyTorch where it has the op (Conv1D, ConvTranspose2D), Keras's for
SeparableConv2D; the unshared forms (LocallyConnected2D, TiledConv2D) as the texts define them
(Goodfellow et al., *Deep Learning*, 9.5).
"""
from .. import init as initializers
from ..errors import ShapeError
from ..kernels import geometry
from .base import Layer, initializer_config, shape_text
from .conv import (_hw_config, _Spatial, check_groups, dilated_extent, grouped_backward,
                   grouped_forward, resolve_conv_padding)


def _positive(name, **values):
    """ValueError naming ``name`` when any of the int / pair ``values`` is not positive."""
    bad = {k: v for k, v in values.items() if min(v if isinstance(v, tuple) else (v,)) < 1}
    if bad:
        raise ValueError(f"{name} needs positive {', '.join(bad)}, got {bad}")


def _weight_and_bias(layer, rng, dtype, next_activation, fan_in, fan_out):
    """[weight, bias] as ``layer.parameter_shapes()`` gives them, from its ``init`` (by default
    chosen from the next activation) and ``bias_init``."""
    (_, wshape), (_, bshape) = layer.parameter_shapes()
    init = initializers.get(layer.init or initializers.default_for(next_activation))
    w = init(rng, wshape, fan_in, fan_out)
    b = initializers.get(layer.bias_init)(rng, bshape, fan_in, fan_out)
    return [w.astype(dtype), b.astype(dtype)]


class Conv1D(Layer):
    """1-D convolution over sequences (PyTorch's ``Conv1d``): x ``(N, C, L)`` float32/float64
    -> ``(N, out_channels, OL)``, ``OL = (L + 2 p - d (k - 1) - 1) // s + 1``.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, dilation : int
    padding : int, "valid", "same" or "full", default 0
    groups : int dividing both channel counts, default 1
    init, bias_init : as :class:`~fastnn.Conv2D`

    weight ``(out_channels, in_channels / groups, kernel_size)``, bias ``(out_channels,)``.
    Runs the backend's grouped, dilated 2-D kernels on the ``(N, C, 1, L)`` view.
    """

    work_attrs = ("x4", "cols")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, init=None, bias_init="zeros"):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.dilation = int(kernel_size), int(stride), int(dilation)
        _positive("Conv1D", channels=(self.in_channels, self.out_channels),
                  kernel_size=self.kernel_size, stride=self.stride, dilation=self.dilation)
        self.groups = check_groups("Conv1D", self.in_channels, self.out_channels, groups)
        self.padding = geometry.padding_config(padding)
        if isinstance(padding, (list, tuple)):
            raise ValueError(f"Conv1D: padding must be an int, 'valid', 'same' or 'full', got "
                             f"{padding!r}")
        extent = dilated_extent((1, self.kernel_size), (1, self.dilation))
        self.pads = (0, 0) + resolve_conv_padding(padding, extent, (1, self.stride))[2:]
        self.init, self.bias_init = init, bias_init

    def _geometry(self):
        return (1, self.kernel_size), (1, self.stride), (1, self.dilation)

    def parameter_shapes(self):
        return [("weight", (self.out_channels, self.in_channels // self.groups, self.kernel_size)),
                ("bias", (self.out_channels,))]

    def initial_values(self, rng, dtype, next_activation=None):
        k = self.kernel_size
        return _weight_and_bias(self, rng, dtype, next_activation,
                                self.in_channels // self.groups * k, self.out_channels * k)

    def _length(self, length):
        return geometry.conv_output_size(length, self.dilation * (self.kernel_size - 1) + 1,
                                         self.stride, self.pads[2], self.pads[3])

    def check_input(self, shape):
        if len(shape) != 2 or shape[0] != self.in_channels:
            raise ShapeError(f"{self!r} expected sequences (N, {self.in_channels}, L), got input "
                             f"of shape {shape_text(shape)}")
        if self._length(shape[1]) < 1:
            raise ShapeError(f"{self!r}: a sequence of length {shape[1]} is shorter than the "
                             f"(dilated, padded) kernel; use longer sequences or more padding")

    def output_shape(self, input_shape):
        return (self.out_channels, self._length(input_shape[1]))

    def forward(self, be, x, training=False):
        n, c, length = x.shape
        kernel, stride, dilation = self._geometry()
        ol = self._length(length)
        out = self.buffer(be, "out", (n, self.out_channels, ol), x.dtype)
        self.x4 = x.reshape(n, c, 1, length)
        w = self.weight.data.reshape(self.out_channels, -1, 1, self.kernel_size)
        self.cols = grouped_forward(self, be, self.x4, w, self.bias.data,
                                    out.reshape(n, self.out_channels, 1, ol), kernel, stride,
                                    self.pads, dilation, self.groups)
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        x4 = self.x4
        kernel, stride, dilation = self._geometry()
        dx = self.buffer(be, "dx", x4.shape, x4.dtype) if need_dx else None
        shape4 = (self.out_channels, -1, 1, self.kernel_size)
        grouped_backward(self, be, x4, self.weight.data.reshape(shape4),
                         dy.reshape(dy.shape[0], dy.shape[1], 1, dy.shape[2]), dx,
                         self.weight.grad.reshape(shape4), self.bias.grad, self.cols, stride,
                         self.pads, dilation, self.groups, accumulate)
        return None if dx is None else dx.reshape(x4.shape[0], x4.shape[1], x4.shape[3])

    def get_config(self):
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
               "dilation": self.dilation, "groups": self.groups}
        return {**cfg, **initializer_config(self)}


class ConvTranspose2D(_Spatial):
    """Transposed convolution (PyTorch's ``ConvTranspose2d``): the adjoint of a Conv2D with
    the same kernel, stride and padding, used to back-propagate through a convolution and to
    upsample.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, output_padding : int or pairs
        ``output_padding`` (< stride) adds rows / columns at the bottom / right of the output.
    init, bias_init : as :class:`~fastnn.Conv2D` (fan_in and fan_out from the weight's layout,
        as PyTorch)

    Shapes: x ``(N, in_channels, H, W)`` -> ``(N, out_channels, OH, OW)`` with
    ``OH = (H - 1) sh - 2 ph + kh + output_padding_h``; weight
    ``(in_channels, out_channels, kh, kw)``, bias ``(out_channels,)``.
    """

    work_attrs = ("x", "cols")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, init=None, bias_init="zeros"):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = geometry.pair(kernel_size, "kernel_size")
        self.stride = geometry.pair(stride, "stride")
        self.padding = geometry.pair(padding, "padding")
        self.output_padding = geometry.pair(output_padding, "output_padding")
        _positive("ConvTranspose2D", channels=(self.in_channels, self.out_channels),
                  kernel_size=self.kernel_size, stride=self.stride)
        if min(self.padding + self.output_padding) < 0 or \
                any(a >= s for a, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2D: padding must be >= 0 and output_padding in "
                             f"[0, stride), got padding={padding!r}, output_padding="
                             f"{output_padding!r}, stride={stride!r}")
        (ph, pw), (ah, aw), (sh, sw) = self.padding, self.output_padding, self.stride
        # padding of the convolution that maps the output back to the input
        self.pads = (ph, ph + sh - 1 - ah, pw, pw + sw - 1 - aw)
        self.channels = self.in_channels
        self.init, self.bias_init = init, bias_init

    def parameter_shapes(self):
        return [("weight", (self.in_channels, self.out_channels) + self.kernel_size),
                ("bias", (self.out_channels,))]

    def initial_values(self, rng, dtype, next_activation=None):
        k = self.kernel_size[0] * self.kernel_size[1]
        return _weight_and_bias(self, rng, dtype, next_activation, self.out_channels * k,
                                self.in_channels * k)

    def output_hw(self, h, w):
        return tuple((size - 1) * s - 2 * p + k + a for size, s, p, k, a in
                     zip((h, w), self.stride, self.padding, self.kernel_size, self.output_padding))

    def check_input(self, shape):
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ShapeError(f"{self!r} expected images (N, {self.in_channels}, H, W), got input "
                             f"of shape {shape_text(shape)}")
        if min(self.output_hw(*shape[1:])) < 1:
            raise ShapeError(f"{self!r}: {shape[1]}x{shape[2]} images give an empty output; "
                             f"use less padding")

    def output_shape(self, input_shape):
        return (self.out_channels,) + self.output_hw(*input_shape[1:])

    def forward(self, be, x, training=False):
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        out = self.buffer(be, "out", (n, self.out_channels) + self.output_hw(h, w), x.dtype)
        self.cols = self.buffer(be, "cols", (n, self.out_channels * kh * kw, h * w), x.dtype)
        be.conv_transpose2d_forward(x, self.weight.data, self.bias.data, out, self.stride,
                                    self.pads, self.cols)
        self.x = x
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        x = self.x
        dx = self.buffer(be, "dx", x.shape, x.dtype) if need_dx else None
        be.conv_transpose2d_backward(x, self.weight.data, dy, dx, self.weight.grad,
                                     self.bias.grad, self.stride, self.pads, self.cols,
                                     accumulate)
        return dx

    def get_config(self):
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": _hw_config(self.kernel_size), "stride": _hw_config(self.stride),
               "padding": _hw_config(self.padding),
               "output_padding": _hw_config(self.output_padding)}
        return {**cfg, **initializer_config(self)}


class SeparableConv2D(_Spatial):
    """Depthwise-separable convolution in Keras's form: a depthwise convolution (each input
    channel with its own ``depth_multiplier`` kernels, no bias) followed by a 1x1 pointwise
    convolution with bias.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or pairs
    padding : int, pair, "valid", "same" or "full" (of the depthwise step), default 0
    depth_multiplier : int, default 1
    init, bias_init : as :class:`~fastnn.Conv2D` (depthwise fan_in kh * kw, pointwise C * M)

    Shapes: x ``(N, C, H, W)`` -> ``(N, out_channels, OH, OW)`` (OH as Conv2D's);
    parameters ``depthwise_weight (C * M, 1, kh, kw)``, ``pointwise_weight (O, C * M, 1, 1)``,
    ``bias (O,)``.
    """

    work_attrs = ("x", "mid", "cols_dw", "cols_pw")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 depth_multiplier=1, init=None, bias_init="zeros"):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = geometry.pair(kernel_size, "kernel_size")
        self.stride = geometry.pair(stride, "stride")
        self.depth_multiplier = int(depth_multiplier)
        _positive("SeparableConv2D", channels=(self.in_channels, self.out_channels),
                  kernel_size=self.kernel_size, stride=self.stride,
                  depth_multiplier=self.depth_multiplier)
        self.padding = geometry.padding_config(padding)
        self.pads = resolve_conv_padding(padding, self.kernel_size, self.stride)
        self.channels = self.in_channels
        self.mid_channels = self.in_channels * self.depth_multiplier
        self.init, self.bias_init = init, bias_init

    def parameter_shapes(self):
        return [("depthwise_weight", (self.mid_channels, 1) + self.kernel_size),
                ("pointwise_weight", (self.out_channels, self.mid_channels, 1, 1)),
                ("bias", (self.out_channels,))]

    def initial_values(self, rng, dtype, next_activation=None):
        k = self.kernel_size[0] * self.kernel_size[1]
        init = initializers.get(self.init or initializers.default_for(next_activation))
        shapes = dict(self.parameter_shapes())
        dw = init(rng, shapes["depthwise_weight"], k, self.depth_multiplier * k)
        pw = init(rng, shapes["pointwise_weight"], self.mid_channels, self.out_channels)
        b = initializers.get(self.bias_init)(rng, (self.out_channels,), self.mid_channels,
                                             self.out_channels)
        return [v.astype(dtype) for v in (dw, pw, b)]

    def output_shape(self, input_shape):
        return (self.out_channels,) + self.output_hw(*input_shape[1:])

    def _zeros(self, be, dtype):
        """A zero bias for the depthwise step (made once per backend and dtype)."""
        key = (be.NAME, "zero_bias", (self.mid_channels,), dtype.str)
        if key not in self._buffers:
            self._buffers[key] = be.zeros((self.mid_channels,), dtype)
        return self._buffers[key]

    def forward(self, be, x, training=False):
        n, c, h, w = x.shape
        oh, ow = self.output_hw(h, w)
        mid = self.buffer(be, "mid", (n, self.mid_channels, oh, ow), x.dtype)
        out = self.buffer(be, "out", (n, self.out_channels, oh, ow), x.dtype)
        self.cols_dw = grouped_forward(self, be, x, self.depthwise_weight.data,
                                       self._zeros(be, x.dtype), mid, self.kernel_size,
                                       self.stride, self.pads, (1, 1), self.in_channels, "_dw")
        self.cols_pw = grouped_forward(self, be, mid, self.pointwise_weight.data, self.bias.data,
                                       out, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "_pw")
        self.x, self.mid = x, mid
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        x, mid = self.x, self.mid
        dmid = self.buffer(be, "dmid", mid.shape, mid.dtype)
        grouped_backward(self, be, mid, self.pointwise_weight.data, dy, dmid,
                         self.pointwise_weight.grad, self.bias.grad, self.cols_pw, (1, 1),
                         (0, 0, 0, 0), (1, 1), 1, accumulate, "_pw")
        dx = self.buffer(be, "dx", x.shape, x.dtype) if need_dx else None
        scratch_db = self.buffer(be, "dw_bias_grad", (self.mid_channels,), x.dtype)
        grouped_backward(self, be, x, self.depthwise_weight.data, dmid, dx,
                         self.depthwise_weight.grad, scratch_db, self.cols_dw, self.stride,
                         self.pads, (1, 1), self.in_channels, accumulate, "_dw")
        return dx

    def get_config(self):
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": _hw_config(self.kernel_size), "stride": _hw_config(self.stride),
               "padding": self.padding, "depth_multiplier": self.depth_multiplier}
        return {**cfg, **initializer_config(self)}


class _Unshared(_Spatial):
    """Shared code of the unshared convolutions (no padding): a weight set per output position
    (LocallyConnected2D) or per position modulo a tile (TiledConv2D); a subclass names its
    kernels ``_forward_op`` / ``_backward_op`` and its weight sets ``_sets``."""

    work_attrs = ("x", "cols")
    pads = (0, 0, 0, 0)

    def _init(self, in_channels, out_channels, kernel_size, stride, init, bias_init):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = geometry.pair(kernel_size, "kernel_size")
        self.stride = geometry.pair(stride, "stride")
        _positive(type(self).__name__, channels=(self.in_channels, self.out_channels),
                  kernel_size=self.kernel_size, stride=self.stride)
        self.channels = self.in_channels
        self.init, self.bias_init = init, bias_init

    def parameter_shapes(self):
        return [("weight", self._sets() + (self.out_channels, self.in_channels)
                 + self.kernel_size), ("bias", self._bias_shape())]

    def initial_values(self, rng, dtype, next_activation=None):
        k = self.kernel_size[0] * self.kernel_size[1]
        return _weight_and_bias(self, rng, dtype, next_activation, self.in_channels * k,
                                self.out_channels * k)

    def output_shape(self, input_shape):
        return (self.out_channels,) + self.output_hw(*input_shape[1:])

    def forward(self, be, x, training=False):
        n, c, h, w = x.shape
        oh, ow = self.output_hw(h, w)
        kh, kw = self.kernel_size
        out = self.buffer(be, "out", (n, self.out_channels, oh, ow), x.dtype)
        self.cols = self.buffer(be, "cols", (n, c * kh * kw, oh * ow), x.dtype)
        getattr(be, self._forward_op)(x, self.weight.data, self.bias.data, out, self.stride,
                                      self.cols)
        self.x = x
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        x = self.x
        dx = self.buffer(be, "dx", x.shape, x.dtype) if need_dx else None
        dcols = self.buffer(be, "dcols", self.cols.shape, x.dtype)
        getattr(be, self._backward_op)(x, self.weight.data, dy, dx, self.weight.grad,
                                       self.bias.grad, self.stride, self.cols, dcols, accumulate)
        return dx


class LocallyConnected2D(_Unshared):
    """Locally connected layer (unshared convolution, the texts' 9.5): like a valid Conv2D,
    but every output position has its own kernel and bias.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or pairs
    input_size : (H, W), the image size (it fixes the number of positions)
    init, bias_init : as :class:`~fastnn.Conv2D`

    Shapes: x ``(N, C, H, W)`` -> ``(N, out_channels, OH, OW)``, ``OH = (H - kh) // sh + 1``;
    weight ``(OH, OW, out_channels, C, kh, kw)``, bias ``(out_channels, OH, OW)``.
    """

    _forward_op, _backward_op = "locally_connected2d_forward", "locally_connected2d_backward"

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, init=None,
                 bias_init="zeros"):
        super().__init__()
        self._init(in_channels, out_channels, kernel_size, stride, init, bias_init)
        self.input_size = geometry.pair(input_size, "input_size")
        if min(self.output_hw(*self.input_size)) < 1:
            raise ValueError(f"LocallyConnected2D: input_size {self.input_size} is smaller than "
                             f"the kernel {self.kernel_size}")

    def _sets(self):
        return self.output_hw(*self.input_size)

    def _bias_shape(self):
        return (self.out_channels,) + self._sets()

    def check_input(self, shape):
        super().check_input(shape)
        if tuple(shape[1:]) != self.input_size:
            raise ShapeError(f"{self!r} was built for {self.input_size[0]}x{self.input_size[1]} "
                             f"images, got input of shape {shape_text(shape)}")

    def get_config(self):
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": _hw_config(self.kernel_size), "input_size": list(self.input_size),
               "stride": _hw_config(self.stride)}
        return {**cfg, **initializer_config(self)}


class TiledConv2D(_Unshared):
    """Tiled convolution (the texts' 9.5): ``t x t`` kernel sets cycled over the output, the
    output at (i, j) using set (i mod t, j mod t); no padding. ``tile=1`` is a valid Conv2D.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or pairs
    tile : int, the t of the t x t kernel sets
    init, bias_init : as :class:`~fastnn.Conv2D`

    Shapes: x ``(N, C, H, W)`` -> ``(N, out_channels, OH, OW)`` as a valid Conv2D;
    weight ``(t, t, out_channels, C, kh, kw)``, bias ``(out_channels,)``.
    """

    _forward_op, _backward_op = "tiled_conv2d_forward", "tiled_conv2d_backward"

    def __init__(self, in_channels, out_channels, kernel_size, tile, stride=1, init=None,
                 bias_init="zeros"):
        super().__init__()
        self._init(in_channels, out_channels, kernel_size, stride, init, bias_init)
        self.tile = int(tile)
        _positive("TiledConv2D", tile=self.tile)

    def _sets(self):
        return (self.tile, self.tile)

    def _bias_shape(self):
        return (self.out_channels,)

    def get_config(self):
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": _hw_config(self.kernel_size), "tile": self.tile,
               "stride": _hw_config(self.stride)}
        return {**cfg, **initializer_config(self)}
