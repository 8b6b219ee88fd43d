"""Global and power-average (LP) pooling over (N, C, H, W) images."""
import numpy as np

from ..errors import ShapeError
from .base import Layer, shape_text
from .conv import _hw_config, _Pool2D


class _GlobalPool2D(Layer, abstract=True):
    """(N, C, H, W) -> (N, C): one window the size of the whole plane, through the backend's
    max / average pooling kernels; a subclass calls them in ``_pool_forward`` and
    ``_pool_backward`` on the (N, C, 1, 1) view."""

    work_attrs = ("x_shape", "x_dtype", "argmax")

    def check_input(self, shape):
        if len(shape) != 3:
            raise ShapeError(f"{self!r} expected images (N, C, H, W), got input of shape "
                             f"{shape_text(shape)}")

    def output_shape(self, input_shape):
        return (input_shape[0],)

    def forward(self, be, x, training=False):
        n, c, h, w = x.shape
        out = self.buffer(be, "out", (n, c, 1, 1), x.dtype)
        self._pool_forward(be, x, out, (h, w))
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return out.reshape(n, c)

    def backward(self, be, dy, need_dx=True, accumulate=False):
        if not need_dx:
            return None
        dx = self.buffer(be, "dx", self.x_shape, self.x_dtype)
        self._pool_backward(be, dy.reshape(dy.shape[0], dy.shape[1], 1, 1), dx,
                            tuple(self.x_shape[2:]))
        return dx


class GlobalAvgPool2D(_GlobalPool2D):
    """Mean of every channel's plane (PyTorch's ``adaptive_avg_pool2d(x, 1)`` flattened):
    ``(N, C, H, W)`` -> ``(N, C)``, same dtype."""

    def _pool_forward(self, be, x, out, plane):
        be.avgpool2d_forward(x, out, plane, plane, (0, 0, 0, 0))

    def _pool_backward(self, be, dy, dx, plane):
        be.avgpool2d_backward(dy, dx, plane, plane, (0, 0, 0, 0))


class GlobalMaxPool2D(_GlobalPool2D):
    """Maximum of every channel's plane (PyTorch's ``adaptive_max_pool2d(x, 1)`` flattened):
    ``(N, C, H, W)`` -> ``(N, C)``; the gradient goes to the first maximum."""

    def _pool_forward(self, be, x, out, plane):
        self.argmax = self.buffer(be, "argmax", out.shape, np.intp)
        be.maxpool2d_forward(x, out, self.argmax, plane, plane, (0, 0, 0, 0))

    def _pool_backward(self, be, dy, dx, plane):
        be.maxpool2d_backward(self.argmax, dy, dx)


class LPPool2D(_Pool2D):
    """Power-average pooling, PyTorch's ``LPPool2d``: each window gives
    ``(sum of x ** p) ** (1 / p)``, p = ``norm_type`` (p = 2: the texts' L2 pooling; large p
    tends to max pooling). No padding; windows may overlap (stride < kernel).

    Parameters
    ----------
    norm_type : float > 0
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default: kernel_size

    Shapes: ``(N, C, H, W)`` -> ``(N, C, OH, OW)``, ``OH = (H - kh) // sh + 1``. As PyTorch, a
    negative input with a non-integer p gives NaN; a window whose sum is 0 passes no gradient.
    """

    work_attrs = ("x", "y")

    def __init__(self, norm_type, kernel_size, stride=None):
        super().__init__(kernel_size, stride)
        self.norm_type = float(norm_type)
        if not self.norm_type > 0 or not np.isfinite(self.norm_type):
            raise ValueError(f"LPPool2D: norm_type must be a finite number > 0, got {norm_type!r}")

    def _pool_forward(self, be, x, out):
        be.lppool2d_forward(x, out, self.norm_type, self.kernel_size, self.stride)
        self.x, self.y = x, out

    def _pool_backward(self, be, dy, dx):
        be.lppool2d_backward(self.x, self.y, dy, dx, self.norm_type, self.kernel_size,
                             self.stride)

    def get_config(self):
        return {"norm_type": self.norm_type, "kernel_size": _hw_config(self.kernel_size),
                "stride": _hw_config(self.stride)}
