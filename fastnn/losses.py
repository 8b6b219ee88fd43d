"""Loss functions, all averaged over the samples of the batch.

``value = loss(out, y)`` checks its inputs, returns a Python float and keeps the gradient
w.r.t. ``out`` for ``loss.backward()``. The fit loop calls ``loss.compute`` (no checks; the
data were checked once before training).
"""
import numpy as np

from . import validation
from .backend import backend_for_array


class Loss:
    """Base class; subclasses name their backend kernel and the kind of target they take."""

    kernel = None            # e.g. "cross_entropy_loss"
    integer_labels = False   # targets are class indices (N,) rather than arrays like out

    def __init__(self):
        self.be = None
        self._grad = {}
        self.grad = None

    def bind(self, be):
        """Use backend ``be`` (a kernel module) from now on."""
        self.be = be
        return self

    def check(self, out_shape, y):
        """Raise a ValueError-family error if targets ``y`` do not fit outputs of ``out_shape``."""
        if self.integer_labels:
            validation.check_labels(y, out_shape[0], out_shape[-1])
        else:
            validation.check_targets(y, out_shape)

    def prepare_targets(self, y, n_outputs, dtype):
        """Targets as this loss's kernel wants them (labels int64, arrays in ``dtype``)."""
        if self.integer_labels:
            return np.ascontiguousarray(y, dtype=np.int64)
        return np.ascontiguousarray(y, dtype=dtype)

    def compute(self, out, y):
        """Loss value; writes the gradient w.r.t. ``out`` into ``self.grad``. No input checks."""
        key = (out.shape, out.dtype.str)
        grad = self._grad.get(key)
        if grad is None:
            grad = self._grad[key] = self.be.empty(out.shape, out.dtype)
        self.grad = grad
        return getattr(self.be, self.kernel)(out, y, grad)

    def __call__(self, out, y):
        if self.be is None:
            self.bind(backend_for_array(out))
        self.check(out.shape, y)
        y = self.prepare_targets(y, out.shape[-1], out.dtype)
        return self.compute(out, self.be.to_device(y))

    def backward(self):
        """Gradient of the last computed loss w.r.t. the network output, shape of ``out``."""
        if self.grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before the loss was computed")
        return self.grad

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSELoss(Loss):
    """Quadratic cost: mean over samples of 1/2 ||y - a||^2, summed over outputs.

    ``y`` has the shape of the output, or is an (N,) integer label vector that is one-hot
    encoded (the course texts' digit targets).
    """

    kernel = "mse_loss"

    def check(self, out_shape, y):
        if _is_label_vector(y, out_shape):
            validation.check_labels(y, out_shape[0], out_shape[-1])
        else:
            validation.check_targets(y, out_shape)

    def prepare_targets(self, y, n_outputs, dtype):
        y = np.asarray(y)
        if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
            return np.eye(n_outputs, dtype=dtype)[y]
        return np.ascontiguousarray(y, dtype=dtype)


class CrossEntropyLoss(Loss):
    """Softmax + negative log-likelihood of integer labels, fused and max-subtracted.

    out : (N, K) logits; y : (N,) integers in [0, K).
    """

    kernel = "cross_entropy_loss"
    integer_labels = True


class NLLLoss(Loss):
    """Negative log-likelihood: out (N, K) log-probabilities (e.g. from LogSoftmax), y (N,) labels."""

    kernel = "nll_loss"
    integer_labels = True


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy of sigmoid(logits): mean over samples of the sum over outputs.

    out : (N, K) logits; y : (N, K) targets in [0, 1].
    """

    kernel = "bce_with_logits_loss"


def _is_label_vector(y, out_shape):
    y = np.asarray(y)
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and len(out_shape) == 2


LOSSES = {"mse": MSELoss, "cross_entropy": CrossEntropyLoss, "nll": NLLLoss,
          "bce_with_logits": BCEWithLogitsLoss}


def get(loss):
    """A loss instance from an instance or a name in ``LOSSES``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    try:
        return LOSSES[loss]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {loss!r}; pass a fastnn loss or one of {sorted(LOSSES)}") from None
