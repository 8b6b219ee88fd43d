"""The per-dtype tolerances of the suite, in one table: how close two results must be, by what is
compared. Each row says why it is as loose as it is; a test names its row instead of writing
numbers, so that two tests comparing the same kind of thing cannot drift apart.
"""
import numpy as np

GRADIENT = dict(atol=1e-7, rtol=1e-6)
"""An analytic gradient against float64 central differences (eps 1e-6)."""

TOLERANCES = {
    # one op of a backend against the reference's on the same inputs: float32 rounds each
    # product and sum, float64 leaves the summation order
    "op": {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-5)},
    # the op-case table (support.op_cases): small inputs of size about 1, so a tighter atol
    "op case": {"float64": dict(rtol=1e-12, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)},
    # pooling: a maximum or the mean of a few values
    "pooling": {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-6, atol=1e-6)},
    # convolutions whose weight gradient sums over a whole batch of images (BLAS, direct kernels)
    "long sums": {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-4)},
    # batch statistics (batch norm): a mean and a variance over the batch, then their gradients
    "batch statistics": {"float64": dict(rtol=1e-10, atol=1e-12),
                         "float32": dict(rtol=2e-4, atol=1e-5)},
    # several steps of an update rule (Adam & co.) on the same gradients
    "optimizer steps": {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)},
    # several steps of SGD (one multiply-add per step)
    "sgd steps": {"float64": dict(rtol=1e-13, atol=1e-14), "float32": dict(rtol=1e-5, atol=1e-6)},
    # a short training (fit) against the "numpy" backend's
    "training": {"float64": dict(rtol=1e-10, atol=1e-10), "float32": dict(rtol=1e-5, atol=1e-5)},
}


def tolerance(kind, dtype):
    """``dict(rtol=..., atol=...)`` of row ``kind`` for ``dtype`` (a name, NumPy type or dtype),
    to pass to ``np.testing.assert_allclose(..., **tolerance(kind, dtype))``."""
    return dict(TOLERANCES[kind][np.dtype(dtype).name])
