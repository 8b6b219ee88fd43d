"""Convolution and pooling: the layers that slide a window over (N, C, H, W) images.

Output sizes and padding come from :mod:`fastnn.kernels.geometry`, the same arithmetic the
kernels use.
"""
import numpy as np

from ..errors import ShapeError
from ..kernels import geometry
from .base import Layer, initial_weight_and_bias, initializer_config, shape_text


def _hw_config(pair):
    """A (kh, kw) pair as it goes into get_config: an int when both are equal, else a list."""
    return pair[0] if pair[0] == pair[1] else list(pair)


class _Spatial(Layer):
    """Shared input checks of the layers that slide a window over (N, C, H, W) images."""

    channels = None          # required input channels, or None for any

    @property
    def window(self):
        """(rows, columns) of input one window covers: the kernel, or its dilated extent."""
        return self.kernel_size

    def check_input(self, shape):
        if len(shape) != 3:
            hint = "; reshape flat rows to (N, C, H, W) first" if len(shape) == 1 else ""
            raise ShapeError(f"{self!r} expected images (N, C, H, W), got input of shape "
                             f"{shape_text(shape)}{hint}")
        c, h, w = shape
        if self.channels is not None and c != self.channels:
            raise ShapeError(f"{self!r} expected {self.channels} input channel(s), got images of "
                             f"shape {shape_text(shape)} with {c}")
        oh, ow = geometry.output_hw(h, w, self.window, self.stride, self.pads)
        if oh < 1 or ow < 1:
            top, bottom, left, right = self.pads
            raise ShapeError(f"{self!r}: the {h}x{w} image (padded to {h + top + bottom}x"
                             f"{w + left + right}) is smaller than the {self.window[0]}x"
                             f"{self.window[1]} kernel; use larger images, more padding or "
                             f"a smaller kernel")

    def output_hw(self, h, w):
        return geometry.output_hw(h, w, self.window, self.stride, self.pads)


def dilated_extent(kernel, dilation):
    """(rows, columns) a ``kernel`` pair with ``dilation`` covers: ``d * (k - 1) + 1`` each."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


def resolve_conv_padding(padding, window, stride):
    """User padding -> (top, bottom, left, right) for a window of (rows, columns) ``window``:
    :func:`fastnn.kernels.geometry.resolve_padding`, plus ``"full"`` (window - 1 zeros on every
    side: every partial overlap of kernel and image gives an output, the texts' full
    convolution)."""
    if padding == "full":
        return (window[0] - 1, window[0] - 1, window[1] - 1, window[1] - 1)
    if isinstance(padding, str) and padding not in ("valid", "same"):
        raise ValueError(f"padding must be an int, a pair, 'valid', 'same' or 'full', got "
                         f"{padding!r}")
    return geometry.resolve_padding(padding, window, stride)


def check_groups(name, in_channels, out_channels, groups):
    """``groups`` as an int that divides both channel counts; ValueError otherwise."""
    g = int(groups)
    if g != groups or g < 1 or in_channels % g or out_channels % g:
        raise ValueError(f"{name}: groups={groups!r} must be a positive int dividing in_channels "
                         f"({in_channels}) and out_channels ({out_channels})")
    return g


def grouped_forward(layer, be, x, w, b, out, kernel, stride, pads, dilation, groups, tag=""):
    """``be.conv2d_ex_forward`` of (N, C, H, W) ``x`` into ``out`` with ``layer``'s cols
    buffer (named "cols" + ``tag``), which it returns for the backward. Shared by Conv2D (when
    dilated or grouped), Conv1D and SeparableConv2D."""
    n, c = x.shape[:2]
    cols = layer.buffer(be, "cols" + tag, (n, c * kernel[0] * kernel[1],
                                           out.shape[2] * out.shape[3]), x.dtype)
    be.conv2d_ex_forward(x, w, b, out, stride, pads, dilation, groups, cols)
    return cols


def grouped_backward(layer, be, x, w, dy, dx, dw, db, cols, stride, pads, dilation, groups,
                     accumulate, tag=""):
    """``be.conv2d_ex_backward`` of :func:`grouped_forward` with ``layer``'s dcols buffer."""
    dcols = layer.buffer(be, "dcols" + tag, cols.shape, x.dtype)
    be.conv2d_ex_backward(x, w, dy, dx, dw, db, stride, pads, dilation, groups, cols, dcols,
                          accumulate)


class Conv2D(_Spatial):
    """2-D convolution (cross-correlation, as PyTorch's ``conv2d``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default 1
    padding : int, (ph, pw), "valid", "same" or "full", default 0
        Zero padding on each side; "same" keeps H and W (stride 1 only; for an even kernel the
        extra row / column goes at the bottom / right, like PyTorch); "full" pads the (dilated)
        kernel size - 1 on every side (the texts' full convolution: OH = H + kh - 1).
    dilation : int or (dh, dw), default 1
        Spacing of the kernel taps (PyTorch's ``dilation``): a tap (i, j) reads input
        (oh * sh + i * dh, ow * sw + j * dw).
    groups : int, default 1
        Input and output channels split into ``groups`` groups, each output group seeing only
        its input group (PyTorch's ``groups``); ``groups = in_channels`` is depthwise.
    init : str or callable, optional
        Weight initialiser (see :mod:`fastnn.init`) with fan_in = in_channels * kh * kw and
        fan_out = out_channels * kh * kw; by default chosen from the activation that follows.
    bias_init : str or callable, default "zeros"

    Shapes: x ``(N, in_channels, H, W)`` float32/float64 -> ``(N, out_channels, OH, OW)`` with
    ``OH = (H + pad_top + pad_bottom - dh * (kh - 1) - 1) // sh + 1`` (likewise OW);
    weight ``(out_channels, in_channels / groups, kh, kw)``, bias ``(out_channels,)``.

    Dilated or grouped, the layer runs the backend's ``conv2d_ex_*`` kernels and fuses no
    activation (the activation layer after it runs on its own); otherwise the backend's
    ``conv2d_*`` kernels, which may fuse the activation that follows. The numpy and cuda
    backends compute those with im2col + GEMM. The cpu backend does too for strides other
    than 1 and for padding of more than ``k - 1`` on a side (im2col + BLAS,
    :mod:`fastnn.kernels.cpu.conv`); a stride-1 convolution within that padding runs either
    that or the direct kernels of :mod:`fastnn.kernels.cpu.conv_direct` (no im2col), as
    :mod:`fastnn.kernels.cpu.conv_choice` decided for its shape (batch, channels, image,
    filters, kernel, padding, dtype, threads; one choice for forward and backward), the first
    time the shape is run: ``FASTNN_CONV=direct`` or ``im2col`` forces it; with ``auto`` (the
    default) a decision stored before on this machine is read from
    ``$XDG_CACHE_HOME/fastnn/gemm-choice.json`` (``~/.cache/fastnn/...`` without it), else both
    are timed once, forward + backward on one thread, im2col chosen only when faster by 10%,
    and the decision is stored there, so every run on the machine makes the same choice.
    """

    fuses_activation = True
    work_attrs = ("x", "cols", "y")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, init=None,
                 bias_init="zeros", dilation=1, groups=1):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = geometry.pair(kernel_size, "kernel_size")
        self.stride = geometry.pair(stride, "stride")
        self.dilation = geometry.pair(dilation, "dilation")
        if min(self.in_channels, self.out_channels) < 1 or \
                min(self.kernel_size + self.stride + self.dilation) < 1:
            raise ValueError(f"Conv2D needs positive channels, kernel_size, stride and dilation, "
                             f"got {in_channels}, {out_channels}, {kernel_size}, {stride}, "
                             f"{dilation}")
        self.groups = check_groups("Conv2D", self.in_channels, self.out_channels, groups)
        self.padding = geometry.padding_config(padding)
        self.pads = resolve_conv_padding(padding, self.window, self.stride)
        self.channels = self.in_channels
        self.init, self.bias_init = init, bias_init
        self.plain = self.dilation == (1, 1) and self.groups == 1
        self.fuses_activation = self.plain     # the conv2d_ex kernels fuse none

    @property
    def window(self):
        return dilated_extent(self.kernel_size, self.dilation)

    def parameter_shapes(self):
        kh, kw = self.kernel_size
        return [("weight", (self.out_channels, self.in_channels // self.groups, kh, kw)),
                ("bias", (self.out_channels,))]

    def initial_values(self, rng, dtype, next_activation=None):
        kh, kw = self.kernel_size
        return initial_weight_and_bias(self, rng, dtype, next_activation,
                                       (self.out_channels, self.in_channels // self.groups, kh, kw),
                                       self.in_channels // self.groups * kh * kw,
                                       self.out_channels * kh * kw)

    def output_shape(self, input_shape):
        return (self.out_channels,) + self.output_hw(*input_shape[1:])

    def forward(self, be, x, training=False, act=None):
        """The convolution plus bias, or ``act`` of it when the model fused an activation."""
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        oh, ow = self.output_hw(h, w)
        out = self.buffer(be, "out", (n, self.out_channels, oh, ow), x.dtype)
        if not self.plain:
            self.x, self.y = x, out
            self.cols = grouped_forward(self, be, x, self.weight.data, self.bias.data, out,
                                        self.kernel_size, self.stride, self.pads,
                                        self.dilation, self.groups)
            return out
        cols = None
        if be.conv2d_needs_cols(self.stride, self.pads, self.kernel_size, x.shape,
                                self.out_channels, x.dtype):
            cols = self.buffer(be, "cols", (n, c * kh * kw, oh * ow), x.dtype)
        w, b = self.weight.data, self.bias.data
        if act is None:
            be.conv2d_forward(x, w, b, out, self.stride, self.pads, cols)
        else:
            be.conv2d_act_forward(x, w, b, out, self.stride, self.pads, cols, act)
        self.x, self.cols, self.y = x, cols, out
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False, act=None):
        """Gradients of the last forward; ``act`` as given to it."""
        x, cols = self.x, self.cols
        dx = self.buffer(be, "dx", x.shape, x.dtype) if need_dx else None
        if not self.plain:
            grouped_backward(self, be, x, self.weight.data, dy, dx, self.weight.grad,
                             self.bias.grad, cols, self.stride, self.pads, self.dilation,
                             self.groups, accumulate)
            return dx
        dcols = None                                               # scratch even without dx
        if cols is not None:
            dcols = self.buffer(be, "dcols", cols.shape, x.dtype)
        w, dw, db = self.weight.data, self.weight.grad, self.bias.grad
        if act is None:
            be.conv2d_backward(x, w, dy, dx, dw, db, self.stride, self.pads, cols, dcols,
                               accumulate)
        else:
            dz = self.buffer(be, "dz", dy.shape, dy.dtype)
            be.conv2d_act_backward(x, w, self.y, dy, dz, dx, dw, db, self.stride, self.pads,
                                   cols, dcols, act, accumulate)
        return dx

    def get_config(self):
        cfg = {"in_channels": self.in_channels, "out_channels": self.out_channels,
               "kernel_size": _hw_config(self.kernel_size), "stride": _hw_config(self.stride),
               "padding": self.padding}
        if not self.plain:
            cfg.update(dilation=_hw_config(self.dilation), groups=self.groups)
        return {**cfg, **initializer_config(self)}



class _Pool2D(_Spatial):
    """Shared construction and buffers of the pooling layers: kernel, stride (default: the
    kernel) and symmetric zero padding of at most half the kernel (as PyTorch). A subclass
    calls its kernels in ``_pool_forward(be, x, out)`` and ``_pool_backward(be, dy, dx)``."""

    work_attrs = ("x_shape", "x_dtype", "argmax")

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = geometry.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else geometry.pair(stride, "stride")
        if min(self.kernel_size + self.stride) < 1:
            raise ValueError(f"{type(self).__name__} needs a positive kernel_size and stride, got "
                             f"{kernel_size} and {stride}")
        ph, pw = geometry.pair(padding, "padding")
        if ph < 0 or pw < 0 or 2 * ph > self.kernel_size[0] or 2 * pw > self.kernel_size[1]:
            raise ValueError(f"{type(self).__name__}: padding {padding!r} must be >= 0 and at "
                             f"most half the kernel size {self.kernel_size}")
        self.padding = (ph, pw)
        self.pads = (ph, ph, pw, pw)

    def output_shape(self, input_shape):
        return (input_shape[0],) + self.output_hw(*input_shape[1:])

    def forward(self, be, x, training=False):
        n, c, h, w = x.shape
        out = self.buffer(be, "out", (n, c) + self.output_hw(h, w), x.dtype)
        self._pool_forward(be, x, out)
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        if not need_dx:
            return None
        dx = self.buffer(be, "dx", self.x_shape, self.x_dtype)
        self._pool_backward(be, dy, dx)
        return dx

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

    def _pool_forward(self, be, x, out):
        self.argmax = self.buffer(be, "argmax", out.shape, np.intp)
        be.maxpool2d_forward(x, out, self.argmax, self.kernel_size, self.stride, self.pads)

    def _pool_backward(self, be, dy, dx):
        be.maxpool2d_backward(self.argmax, dy, dx)


class AvgPool2D(_Pool2D):
    """Mean over each window of every channel (zero padding counted, PyTorch's default).

    Parameters and shapes as :class:`MaxPool2D`.
    """

    def _pool_forward(self, be, x, out):
        be.avgpool2d_forward(x, out, self.kernel_size, self.stride, self.pads)

    def _pool_backward(self, be, dy, dx):
        be.avgpool2d_backward(dy, dx, self.kernel_size, self.stride, self.pads)
