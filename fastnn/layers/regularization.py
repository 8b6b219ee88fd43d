"""Regularization layers: inverted dropout and batch normalization."""
import numpy as np

from ..errors import ShapeError
from ..parameter import restore_backend
from .base import Layer, shape_text


def draw_key(rng):
    """One dropout-mask key from a ``numpy.random.Generator``: an int in [0, 2**63).
    ``rng.integers(0, 2**63, size=k)`` draws the same keys as k calls of this."""
    return int(rng.integers(0, 1 << 63, dtype=np.int64))


class Dropout(Layer):
    """Inverted dropout: in training each element is zeroed with probability ``p`` and the
    kept ones are scaled by 1 / (1 - p), so the expected output equals the input; at inference
    the layer is the identity (it returns its input unchanged).

    The mask is drawn by the backend from counter-based random bits
    (``fastnn.kernels.counter_rng``): one key per forward pass comes from the model's random
    stream (``Sequential`` hands it to the layer as ``self.rng``; during ``fit`` it is the fit's
    stream), and element i's keep/drop depends on (key, i) only. So the same seed gives the same
    masks on every backend, at any thread count, and the compiled epoch draws the same masks
    inside its loop without storing them.

    Parameters
    ----------
    p : float in [0, 1), default 0.5
        Probability of dropping each element.

    Shapes: any ``(N, ...)`` -> the same shape.
    """

    uses_rng = True          # Sequential sets ``self.rng`` to its random stream
    work_attrs = ("x_shape", "mask")

    def __init__(self, p=0.5):
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability p must be in [0, 1), got {p}")
        self.p = p
        self.rng = None
        self.mask = None

    def _draw_mask(self, be, shape, dtype):
        """The mask (0 or 1 / (1 - p)) for a batch of ``shape``, in a reused backend buffer."""
        if self.rng is None:
            raise RuntimeError(f"{self!r} has no random stream: use it inside a fastnn.Sequential "
                               "(or set layer.rng to a numpy.random.Generator)")
        mask = self.buffer(be, "mask", shape, np.dtype(dtype))
        be.dropout_mask(draw_key(self.rng), self.p, mask)
        return mask

    def __setstate__(self, state):
        super().__setstate__(state)
        self.mask = None      # the random stream ``rng`` is pickled

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

    state_names = ("running_mean", "running_var")
    work_attrs = ("x", "mean", "invstd")
    _device_state = ("be", "running_mean", "running_var", "_gamma", "_beta", "_dgamma", "_dbeta")

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

    def __getstate__(self):
        """As every layer's, with the running statistics as host arrays and the backend by
        name (they are made again on that backend when unpickled)."""
        state = super().__getstate__()
        for name in self._device_state:
            state.pop(name, None)
        state["trained_forward"] = False
        if self.be is not None:
            state["_backend_name"] = self.be.NAME
            state["_state_dtype"] = np.dtype(self.running_mean.dtype)
            state["_state_host"] = self.state_arrays()
        return state

    def __setstate__(self, state):
        state = dict(state)
        name = state.pop("_backend_name", None)
        dtype = state.pop("_state_dtype", None)
        host = state.pop("_state_host", None)
        super().__setstate__(state)
        self.be = None
        if name is not None:
            self.init_state(restore_backend(name, "BatchNorm layer"), dtype)
            self.load_state_arrays(host)

    def _affine(self):
        if self.affine:
            return self.weight.data, self.bias.data, self.weight.grad, self.bias.grad
        return self._gamma, self._beta, self._dgamma, self._dbeta

    # -- shapes ------------------------------------------------------------------------------
    def check_input(self, shape):
        if len(shape) not in (1, 3) or shape[0] != self.num_features:
            raise ShapeError(f"{self!r} expected input (N, {self.num_features}) or "
                             f"(N, {self.num_features}, H, W), got {shape_text(shape)}")

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
