"""Losses and the accuracy count on the CPU, in Numba: one pass each, nothing allocated.

Same signatures as :mod:`fastnn.kernels.reference.losses`. Every function here is compiled
code, so the compiled epoch (:mod:`.compiled_epoch`) calls the same kernels from its loop.
"""
import math

from numba import njit

from .common import exp_shifted


@njit(cache=True, inline="always")
def _class_weight(weight, label):
    """Weight of class ``label``: 1 without class weights (``weight`` None)."""
    if weight is None:
        return 1.0
    return weight[label]


@njit(cache=True, inline="always")
def _weight_sum(weight, labels):
    """sum_i w[y_i], or N without class weights (no pass over the labels then)."""
    if weight is None:
        return float(labels.shape[0])
    wsum = 0.0
    for i in range(labels.shape[0]):
        wsum += weight[labels[i]]
    return wsum


@njit(cache=True, error_model="numpy")
def cross_entropy_loss(logits, labels, grad, weight=None):
    """Fused softmax + NLL, the mean over samples or, with ``weight`` (K,) per-class weights,
    sum_i w[y_i] nll_i / sum_i w[y_i] (PyTorch); writes its gradient w.r.t. the logits.
    Without weights (None or omitted) the weight branches are compiled away."""
    n, k = logits.shape
    wsum = _weight_sum(weight, labels)
    total = 0.0
    for i in range(n):
        m, s = exp_shifted(logits[i], grad[i])
        label = labels[i]
        wi = _class_weight(weight, label)
        total += wi * (m + math.log(s) - logits[i, label])
        scale = wi / wsum / s
        for j in range(k):
            grad[i, j] *= scale
        grad[i, label] -= wi / wsum
    return total / wsum


@njit(cache=True, error_model="numpy")
def nll_loss(logp, labels, grad, weight=None):
    """NLL of log-probabilities (N, K): the mean, or weighted per class as
    :func:`cross_entropy_loss`; grad = -w[y_i] / sum w at the labels, 0 elsewhere."""
    n, k = logp.shape
    wsum = _weight_sum(weight, labels)
    total = 0.0
    for i in range(n):
        for j in range(k):
            grad[i, j] = 0
        wi = _class_weight(weight, labels[i])
        total -= wi * logp[i, labels[i]]
        grad[i, labels[i]] = -wi / wsum
    return total / wsum


@njit(cache=True)
def mse_loss(a, y, grad):
    n, k = a.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = a[i, j] - y[i, j]
            total += d * d
            grad[i, j] = d / n
    return 0.5 * total / n


@njit(cache=True)
def bce_with_logits_loss(logits, y, grad):
    n, k = logits.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            z = logits[i, j]
            total += max(z, 0.0) - z * y[i, j] + math.log1p(math.exp(-abs(z)))
            if z >= 0:
                s = 1 / (1 + math.exp(-z))
            else:
                e = math.exp(z)
                s = e / (1 + e)
            grad[i, j] = (s - y[i, j]) / n
    return total / n


@njit(cache=True)
def count_correct(out, labels):
    """Rows whose arg-max (first maximum) equals the label."""
    n, k = out.shape
    correct = 0
    for i in range(n):
        best = 0
        for j in range(1, k):
            if out[i, j] > out[i, best]:
                best = j
        correct += best == labels[i]
    return correct
