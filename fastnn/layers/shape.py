"""Layers that only reshape."""
import numpy as np

from .base import Layer


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), a view without copying."""

    work_attrs = ("x_shape",)

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, be, x, training=False):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, be, dy, need_dx=True, accumulate=False):
        return dy.reshape(self.x_shape)
