"""Losses and the accuracy count of the reference backend.

Losses are averaged over the ``N`` samples of the batch (with class weights: the weighted
mean, as PyTorch); the gradient they write into ``grad`` is the gradient of that average and
the value is returned as a Python float.
"""
import numpy as np

from .activations import sigmoid_forward


def mse_loss(a, y, grad):
    """Mean over samples of 1/2 ||y - a||^2 (sum over outputs). grad = (a - y) / N."""
    n = a.shape[0]
    diff = a - y
    grad[...] = diff / n
    return float(0.5 * np.sum(diff * diff) / n)


def _weighted_mean(nll, labels, grad, weight):
    """The (weighted) mean of the per-sample losses ``nll`` (N,); ``grad`` holds the per-sample
    gradients and is scaled in place to that mean's gradient. ``weight`` None: the plain mean
    over the N samples; else (K,) per-class weights: sum_i w[y_i] * nll_i / sum_i w[y_i]
    (PyTorch's ``weight=`` with mean reduction), each row's gradient times w[y_i] / sum w."""
    if weight is None:
        n = nll.shape[0]
        grad /= n
        return float(nll.sum() / n)
    wi = weight[labels]
    total = wi.sum()
    grad *= (wi / total)[:, None]
    return float((wi * nll).sum() / total)


def cross_entropy_loss(logits, labels, grad, weight=None):
    """Softmax + negative log-likelihood of integer ``labels``, fused.

    logits : (N, K); labels : (N,) integers in [0, K); weight : (K,) per-class weights or None.
    grad = (softmax - onehot) / N, or with weights w[y_i] * (softmax_i - onehot_i) / sum_j w[y_j].
    """
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    grad[...] = np.exp(logp)
    grad[rows, labels] -= 1.0
    return _weighted_mean(-logp[rows, labels], labels, grad, weight)


def nll_loss(logp, labels, grad, weight=None):
    """Negative log-likelihood of integer labels given log-probabilities (N, K); ``weight``
    (K,) per-class weights or None, as :func:`cross_entropy_loss`."""
    n = logp.shape[0]
    rows = np.arange(n)
    grad[...] = 0
    grad[rows, labels] = -1.0
    return _weighted_mean(-logp[rows, labels], labels, grad, weight)


def bce_with_logits_loss(logits, y, grad):
    """Binary cross-entropy of sigmoid(logits) against targets y in [0, 1].

    Mean over samples of the sum over outputs; stable form max(z,0) - z*y + log(1+exp(-|z|)).
    grad = (sigmoid(z) - y) / N.
    """
    n = logits.shape[0]
    z = logits
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    s = np.empty_like(z)
    sigmoid_forward(z, s)
    grad[...] = (s - y) / n
    return float(loss.sum() / n)


def count_correct(out, labels):
    """Number of rows whose arg-max equals the integer label."""
    return int(np.count_nonzero(out.argmax(axis=1) == labels))
