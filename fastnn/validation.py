"""Input checks done once at the boundary (fit / predict / evaluate / loss), never in kernels.

Each raises an error of the ValueError family from :mod:`fastnn.errors` that says what was
expected, what came, and what to do.
"""
import numpy as np

from .errors import DTypeError, LabelError, NonFiniteError, ShapeError


def _shape_str(shape):
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def check_inputs(x, sample_shape, name="x"):
    """``x`` must be a float array of shape (N, *sample_shape) with finite values.

    Returns it as a NumPy array (not yet cast).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DTypeError(f"{name} has dtype {x.dtype}; fastnn needs float32 or float64 inputs "
                         f"(e.g. x.astype(np.float32) / 255 for 8-bit images)")
    if x.ndim == 0 or tuple(x.shape[1:]) != tuple(sample_shape):
        raise ShapeError(f"{name} has shape {_shape_str(x.shape)}; the model expects "
                         f"(N, {', '.join(map(str, sample_shape))})")
    check_finite(x, name)
    return x


def check_finite(a, name):
    """Raise NonFiniteError if ``a`` holds NaN or Inf, saying how many and where the first is."""
    finite = np.isfinite(a)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise NonFiniteError(f"{name} contains {len(bad)} NaN/Inf value(s), the first at index "
                             f"{tuple(int(i) for i in bad[0])}; clean or impute the data first")


def check_labels(y, n_samples, n_classes, name="y"):
    """``y`` must be (n_samples,) integers in [0, n_classes)."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ShapeError(f"{name} has shape {_shape_str(y.shape)}; expected ({n_samples},) "
                         f"integer class labels, one per sample")
    if not np.issubdtype(y.dtype, np.integer):
        raise DTypeError(f"{name} has dtype {y.dtype}; class labels must be integers "
                         f"(y.astype(np.int64))")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise LabelError(f"{name} holds labels from {y.min()} to {y.max()}; the model has "
                         f"{n_classes} outputs, so labels must lie in [0, {n_classes - 1}]")
    return y


def check_targets(y, out_shape, name="y"):
    """``y`` must be a finite float array with the shape of the network output."""
    y = np.asarray(y)
    if tuple(y.shape) != tuple(out_shape):
        raise ShapeError(f"{name} has shape {_shape_str(y.shape)}; expected "
                         f"{_shape_str(out_shape)}, the shape of the network output")
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
        raise DTypeError(f"{name} has dtype {y.dtype}; targets must be numbers")
    check_finite(y, name)
    return y
