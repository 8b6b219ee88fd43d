"""The fully connected layer."""
from ..errors import ShapeError
from .base import Layer, initial_weight_and_bias, initializer_config, shape_text


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

    fuses_activation = True
    work_attrs = ("x", "y")

    def __init__(self, in_features, out_features, init=None, bias_init="zeros"):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.init, self.bias_init = init, bias_init

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
                             f"got {shape_text(shape)}{hint}")

    def output_shape(self, input_shape):
        return (self.out_features,)

    def forward(self, be, x, training=False, act=None):
        """``x @ weight + bias``, or ``act`` of it when the model fused an activation."""
        self.x = x
        out = self.buffer(be, "out", (x.shape[0], self.out_features), x.dtype)
        if act is None:
            be.dense_forward(x, self.weight.data, self.bias.data, out)
        else:
            be.dense_act_forward(x, self.weight.data, self.bias.data, out, act)
        self.y = out
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False, act=None):
        """Gradients of the last forward; ``act`` as given to it."""
        x = self.x
        dx = self.buffer(be, "dx", x.shape, x.dtype) if need_dx else None
        w, dw, db = self.weight.data, self.weight.grad, self.bias.grad
        if act is None:
            be.dense_backward(x, w, dy, dx, dw, db, accumulate)
        else:
            dz = self.buffer(be, "dz", dy.shape, dy.dtype)
            be.dense_act_backward(x, w, self.y, dy, dz, dx, dw, db, act, accumulate)
        return dx

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                **initializer_config(self)}
