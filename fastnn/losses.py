"""Loss functions, all averaged over the samples of the batch.

``value = loss(out, y)`` checks its inputs, returns a Python float and keeps the gradient
w.r.t. ``out`` for ``loss.backward()``. The fit loop calls ``loss.compute`` (no checks; the
data were checked once before training).
"""
import numpy as np

from . import validation
from .backend import backend_for_array
from .kernels import contract
from .parameter import restore_backend


class Loss:
    """Base class; subclasses name their backend kernel and the kind of target they take.

    A loss pickles and deep-copies with its configuration (class weights included) and its
    backend by name; its gradient buffers are made again by the next computation.
    """

    kernel = None            # e.g. "cross_entropy_loss"
    kind = None              # the contract.Loss code of a loss the compiled epoch computes
    weight = None            # per-class weights (the class-weighted losses set them)
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
        return getattr(self.be, self.kernel)(*_steps_as_rows(out, y, self._grad_buffer(out)))

    def _grad_buffer(self, out):
        """``self.grad``: the gradient buffer for outputs like ``out`` (made once per shape)."""
        key = (out.shape, out.dtype.str)
        grad = self._grad.get(key)
        if grad is None:
            grad = self._grad[key] = self.be.empty(out.shape, out.dtype)
        self.grad = grad
        return grad

    _work_attrs = ("_grad", "grad", "_weight_dev")

    def __getstate__(self):
        state = self.__dict__.copy()
        be = state.pop("be", None)
        state["_backend_name"] = None if be is None else be.NAME
        for name in self._work_attrs:
            if name in state:
                state[name] = None if name == "grad" else {}
        return state

    def __setstate__(self, state):
        state = dict(state)
        name = state.pop("_backend_name", None)
        self.__dict__.update(state)
        self.be = None if name is None else restore_backend(name, type(self).__name__)

    def __call__(self, out, y):
        if self.be is None:
            self.bind(backend_for_array(out))
        shape = tuple(out.shape)          # a plain tuple (a device array's shape may not be one)
        self.check(shape, y)
        y = self.prepare_targets(y, shape[-1], out.dtype)
        return self.compute(out, self.be.to_device(y))

    def backward(self):
        """Gradient of the last computed loss w.r.t. the network output, shape of ``out``
        (a buffer reused by the next loss computation of the same shape)."""
        if self.grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before the loss was computed")
        return self.grad

    def __repr__(self):
        return f"{type(self).__name__}()"


class _OneHotLabelsLoss(Loss):
    """A loss of targets shaped like the output that also takes an (N,) integer label vector,
    one-hot encoded before the kernel (the course texts' digit targets); ``fit`` then logs the
    arg-max accuracy against the labels."""

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


class MSELoss(_OneHotLabelsLoss):
    """Quadratic cost: mean over samples of 1/2 ||y - a||^2, summed over outputs.

    ``y`` has the shape of the output, or is an (N,) integer label vector that is one-hot
    encoded (the course texts' digit targets).
    """

    kernel = "mse_loss"
    kind = contract.Loss.MSE


class _ClassWeightedLoss(Loss):
    """A loss of integer labels with optional per-class weights, as PyTorch's ``weight=``:
    the weighted mean ``sum_i w[y_i] * loss_i / sum_i w[y_i]`` (the kernel's ``weight=``)."""

    integer_labels = True

    def __init__(self, weight=None):
        super().__init__()
        if weight is not None:
            weight = np.array(weight, dtype=np.float64)
            if weight.ndim != 1 or not np.all(np.isfinite(weight)) or np.any(weight < 0) \
                    or not np.any(weight > 0):
                raise ValueError(f"{type(self).__name__} weight must be a 1-D array of finite, "
                                 f"non-negative class weights, not all zero; got {weight!r}")
        self.weight = weight
        self._weight_dev = {}

    def check(self, out_shape, y):
        y = np.asarray(y)
        if len(out_shape) == 3:            # sequences: (N, T, K) outputs, (N, T) labels
            if y.shape != tuple(out_shape[:2]):
                raise validation.ShapeError(f"y has shape {y.shape}; expected {out_shape[:2]}, "
                                            f"one integer label per sample and step")
            validation.check_labels(y.ravel(), y.size, out_shape[-1])
        else:
            super().check(out_shape, y)
        if self.weight is not None and self.weight.shape[0] != out_shape[-1]:
            raise validation.ShapeError(f"{type(self).__name__} has {self.weight.shape[0]} class "
                                        f"weights but the network has {out_shape[-1]} outputs")

    def compute(self, out, y):
        if self.weight is None:
            return super().compute(out, y)
        wkey = (id(self.be), out.dtype.str)
        w = self._weight_dev.get(wkey)
        if w is None:
            w = self._weight_dev[wkey] = self.be.to_device(self.weight.astype(out.dtype))
        return getattr(self.be, self.kernel)(*_steps_as_rows(out, y, self._grad_buffer(out)),
                                             weight=w)

    def __repr__(self):
        if self.weight is None:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(weight={self.weight.tolist()!r})"


class CrossEntropyLoss(_ClassWeightedLoss):
    """Softmax + negative log-likelihood of integer labels, fused and max-subtracted.

    out : (N, K) logits; y : (N,) integers in [0, K). Sequences: out (N, T, K), y (N, T),
    the mean over all N*T steps.
    weight : (K,) array of per-class weights or None. With weights the loss is PyTorch's
    weighted mean ``sum_i w[y_i] * nll_i / sum_i w[y_i]``.
    """

    kernel = "cross_entropy_loss"
    kind = contract.Loss.CROSS_ENTROPY


class NLLLoss(_ClassWeightedLoss):
    """Negative log-likelihood: out (N, K) log-probabilities (e.g. from LogSoftmax), y (N,) labels.

    weight : (K,) per-class weights or None, as :class:`CrossEntropyLoss`.
    """

    kernel = "nll_loss"


class BCEWithLogitsLoss(_OneHotLabelsLoss):
    """Binary cross-entropy of sigmoid(logits): mean over samples of the sum over outputs.

    out : (N, K) logits; y : (N, K) targets in [0, 1], or (N,) integer labels in [0, K),
    one-hot encoded (the course texts' cross-entropy cost of sigmoid output units).
    """

    kernel = "bce_with_logits_loss"
    kind = contract.Loss.BCE_WITH_LOGITS


def _steps_as_rows(out, y, grad):
    """(out, y, grad) for the kernel: sequence outputs (N, T, K) with labels (N, T) as N*T rows
    (views), so the loss is the mean over every sample and step; other shapes unchanged."""
    if len(out.shape) != 3 or len(y.shape) != 2:
        return out, y, grad
    rows = out.shape[0] * out.shape[1]
    return (out.reshape((rows, out.shape[2])), y.reshape((rows,)),
            grad.reshape((rows, out.shape[2])))


def _is_label_vector(y, out_shape):
    y = np.asarray(y)
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and len(out_shape) == 2


LOSSES = {"mse": MSELoss, "cross_entropy": CrossEntropyLoss, "nll": NLLLoss,
          "bce_with_logits": BCEWithLogitsLoss}


def class_weight_vector(class_weight, n_classes):
    """Per-class weights (float64, shape (n_classes,)) from ``{label: weight}`` (missing
    labels weigh 1) or from an array of length ``n_classes``, as ``fit(class_weight=...)`` takes."""
    if isinstance(class_weight, dict):
        w = np.ones(n_classes)
        for label, value in class_weight.items():
            if not (isinstance(label, (int, np.integer)) and 0 <= label < n_classes):
                raise ValueError(f"class_weight has the label {label!r}; labels must be integers "
                                 f"in [0, {n_classes - 1}]")
            w[label] = value
        return w
    w = np.asarray(class_weight, dtype=np.float64)
    if w.shape != (n_classes,):
        raise ValueError(f"class_weight has shape {w.shape}; expected ({n_classes},), one weight "
                         f"per class (or a dict {{label: weight}})")
    return w


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
