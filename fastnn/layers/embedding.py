"""Layers for sequences of tokens and per-step outputs: Embedding and TimeDistributed."""
import numpy as np

from ..errors import ShapeError
from .base import LAYERS, Layer, shape_text


class Embedding(Layer):
    """Lookup table of token vectors (PyTorch's ``nn.Embedding``): ``out[n, t] = weight[x[n, t]]``.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        V (the number of token ids) and D.

    Shapes: x ``(N, T)`` integer ids in [0, V) (Sequential hands them over in its float dtype,
    which holds them exactly below 2**24) -> ``(N, T, D)``; weight ``(V, D)``, initialised
    standard normal as PyTorch. No gradient flows into the ids: the input gradient is zeros.
    """

    work_attrs = ("_ids",)

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)

    def parameter_shapes(self):
        return [("weight", (self.num_embeddings, self.embedding_dim))]

    def initial_values(self, rng, dtype, next_activation=None):
        return [rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)]

    def check_input(self, shape):
        if len(shape) != 1:
            raise ShapeError(f"{self!r} expected integer ids of shape (N, T), got "
                             f"{shape_text(shape)}")

    def output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def _check_ids(self, be, ids):
        """Raise ValueError unless the ids (host backends) are integers in [0, V)."""
        if not be.HOST_ARRAYS or ids.size == 0:
            return
        bad = (ids < 0) | (ids >= self.num_embeddings) | (ids != np.floor(ids))
        if bad.any():
            raise ValueError(f"{self!r} got the id {ids[bad].flat[0]!r}; ids must be integers "
                             f"in [0, {self.num_embeddings - 1}]")

    def forward(self, be, x, training=False):
        """The rows of weight named by the ids x (N, T): (N, T, D)."""
        self._check_ids(be, x)
        self._ids = x
        out = self.buffer(be, "out", tuple(x.shape) + (self.embedding_dim,), x.dtype)
        be.embedding_forward(x, self.weight.data, out)
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        """weight's gradient (each row the sum of dy over its ids); returns zeros (N, T)
        w.r.t. the ids when ``need_dx``."""
        be.embedding_backward(self._ids, dy, self.weight.grad, accumulate)
        if not need_dx:
            return None
        key = ("dx", be.NAME, tuple(self._ids.shape), self._ids.dtype.str)
        dx = self._buffers.get(key)
        if dx is None:
            dx = self._buffers[key] = be.zeros(self._ids.shape, self._ids.dtype)
        return dx

    def get_config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}


class TimeDistributed(Layer):
    """Apply ``layer`` to every step of a sequence: (N, T, ...) is run as (N*T, ...).

    Parameters
    ----------
    layer : Layer
        A layer without random numbers or running state (e.g. Dense); its parameters are this
        layer's, and an activation after it fuses as after the layer itself.

    Shapes: x ``(N, T, *in)`` -> ``(N, T, *out)``, ``in``/``out`` the wrapped layer's per-sample
    shapes (Dense(F, K): (N, T, F) -> (N, T, K)).
    """

    def __init__(self, layer):
        super().__init__()
        if isinstance(layer, dict):                   # rebuilt from get_config by load
            layer = LAYERS[layer["class"]](**layer["config"])
        if not isinstance(layer, Layer) or layer.uses_rng or layer.state_names:
            raise TypeError(f"TimeDistributed takes a fastnn layer without random numbers or "
                            f"running state, got {layer!r}")
        self.layer = layer
        self.fuses_activation = layer.fuses_activation

    def parameter_shapes(self):
        return self.layer.parameter_shapes()

    def make_parameters(self, prefix):
        self.params = self.layer.make_parameters(prefix)
        return self.params

    def initial_values(self, rng, dtype, next_activation=None):
        return self.layer.initial_values(rng, dtype, next_activation)

    def check_input(self, shape):
        if len(shape) < 2:
            raise ShapeError(f"{self!r} expected sequences (N, T, ...), got {shape_text(shape)}")
        self.layer.check_input(shape[1:])

    def output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.layer.output_shape(input_shape[1:]))

    def forward(self, be, x, training=False, act=None):
        n, t = x.shape[:2]
        flat = x.reshape((n * t,) + tuple(x.shape[2:]))
        y = self.layer.forward(be, flat, training) if act is None \
            else self.layer.forward(be, flat, training, act)
        return y.reshape((n, t) + tuple(y.shape[1:]))

    def backward(self, be, dy, need_dx=True, accumulate=False, act=None):
        n, t = dy.shape[:2]
        flat = dy.reshape((n * t,) + tuple(dy.shape[2:]))
        args = (be, flat, need_dx, accumulate) + (() if act is None else (act,))
        dx = self.layer.backward(*args)
        return None if dx is None else dx.reshape((n, t) + tuple(dx.shape[1:]))

    def get_config(self):
        return {"layer": {"class": type(self.layer).__name__, "config": self.layer.get_config()}}

    def __repr__(self):
        return f"TimeDistributed({self.layer!r})"
