"""Losses and metrics: value and gradient in one launch, reduced on the device.

Each loss is one kernel of one block: its threads stride over the rows (or elements), write the
gradient, accumulate their share of the loss in float64, and a tree reduction in shared memory
leaves the batch mean in a one-element device array; the host then copies back that one scalar
(the only device-to-host transfer). Deterministic: a fixed reduction order, no atomics.

Same signatures as :mod:`fastnn.kernels.reference.losses`: losses return a Python float, grad
is written with the gradient of the batch mean (or, with class weights, of the weighted mean).
Cross-entropy and NLL, plain or class-weighted, are one kernel.
"""
import math

import numpy as np
from numba import cuda, float64, int64

from .common import THREADS, ScalarResult, block_sum, flat, larger, launch

_loss_result = ScalarResult(np.float64)
_count_result = ScalarResult(np.int64)


def _run(kernel, *args):
    launch(kernel, 1, THREADS, *args, _loss_result.device)
    return float(_loss_result.fetch())


@cuda.jit
def _class_nll(z, labels, weight, grad, k, softmax, weighted, result):
    """The (class-weighted) mean NLL of the rows of (N, K), one thread per row: z are logits
    (softmax fused) or log-probabilities. Without weights the mean is over the N rows; with
    them, pass 1 sums w[y_i] and the mean is sum_i w[y_i] * nll_i / sum_i w[y_i] (PyTorch's).
    grad_i = w[y_i] * (softmax_i - onehot_i) / total (or -w[y_i] * onehot_i / total)."""
    sh = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    n = z.size // k
    total_w = 1.0 * n
    if weighted:
        s = 0.0
        for r in range(tid, n, THREADS):
            s += weight[labels[r]]
        sh[tid] = s
        total_w = block_sum(sh, 0, tid, 1, THREADS)
        cuda.syncthreads()                    # every thread has read the sum before reuse
    total = 0.0
    for r in range(tid, n, THREADS):
        base, label = r * k, labels[r]
        w = weight[label] if weighted else 1.0
        scale = w / total_w
        if softmax:
            m = z[base]
            for j in range(1, k):
                m = larger(m, z[base + j])
            s = 0.0
            for j in range(k):
                e = math.exp(z[base + j] - m)
                grad[base + j] = e
                s += e
            nll = m + math.log(s) - z[base + label]
            for j in range(k):
                grad[base + j] *= scale / s
            grad[base + label] -= scale
        else:
            nll = -z[base + label]
            for j in range(k):
                grad[base + j] = 0
            grad[base + label] = -scale
        total += w * nll
    sh[tid] = total
    total = block_sum(sh, 0, tid, 1, THREADS)
    if tid == 0:
        result[0] = total / total_w


@cuda.jit
def _mse(a, y, grad, n, result):
    """0.5 * sum((a - y)**2) / N over (N, K) seen flat; grad = (a - y) / N."""
    sh = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    total = 0.0
    for i in range(tid, a.size, THREADS):
        d = a[i] - y[i]
        grad[i] = d / n
        total += d * d
    sh[tid] = total
    total = block_sum(sh, 0, tid, 1, THREADS)
    if tid == 0:
        result[0] = 0.5 * total / n


@cuda.jit
def _bce_with_logits(z, y, grad, n, result):
    """sum(max(z, 0) - z y + log(1 + exp(-|z|))) / N over (N, K) seen flat;
    grad = (sigmoid(z) - y) / N."""
    sh = cuda.shared.array(THREADS, float64)
    tid = cuda.threadIdx.x
    total = 0.0
    for i in range(tid, z.size, THREADS):
        v, t = z[i], y[i]
        e = math.exp(-abs(v))
        total += larger(v, 0.0) - v * t + math.log1p(e)
        s = 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)
        grad[i] = (s - t) / n
    sh[tid] = total
    total = block_sum(sh, 0, tid, 1, THREADS)
    if tid == 0:
        result[0] = total / n


@cuda.jit
def _count_correct(out, labels, k, result):
    """Rows of (N, K) whose first arg-max equals the label."""
    sh = cuda.shared.array(THREADS, int64)
    tid = cuda.threadIdx.x
    count = 0
    for r in range(tid, out.size // k, THREADS):
        base = r * k
        best = 0
        for j in range(1, k):
            if out[base + j] > out[base + best]:
                best = j
        if best == labels[r]:
            count += 1
    sh[tid] = count
    count = block_sum(sh, 0, tid, 1, THREADS)
    if tid == 0:
        result[0] = count


def _class_loss(z, labels, grad, weight, softmax):
    zf = flat(z)
    # without weights the kernel never reads ``weight``: z stands in for it
    return _run(_class_nll, zf, flat(labels), zf if weight is None else flat(weight), flat(grad),
                z.shape[1], softmax, weight is not None)


def cross_entropy_loss(logits, labels, grad, weight=None):
    """Softmax + negative log-likelihood of integer ``labels``, fused; one launch.

    logits : (N, K); labels : (N,) integers in [0, K); weight : (K,) per-class weights or None.
    grad = (softmax - onehot) / N, or with weights w[y_i] (softmax_i - onehot_i) / sum_j w[y_j]
    (PyTorch's ``cross_entropy(weight=...)``, mean reduction).
    """
    return _class_loss(logits, labels, grad, weight, True)


def nll_loss(logp, labels, grad, weight=None):
    """Negative log-likelihood of integer labels given log-probabilities (N, K), optionally
    class-weighted as :func:`cross_entropy_loss`; one launch."""
    return _class_loss(logp, labels, grad, weight, False)


def mse_loss(a, y, grad):
    """Mean over samples of 1/2 ||y - a||^2 (sum over outputs); grad = (a - y) / N; one launch."""
    return _run(_mse, flat(a), flat(y), flat(grad), a.shape[0])


def bce_with_logits_loss(logits, y, grad):
    """Binary cross-entropy of sigmoid(logits) against targets y in [0, 1], mean over samples
    of the sum over outputs (stable form); grad = (sigmoid(z) - y) / N; one launch."""
    return _run(_bce_with_logits, flat(logits), flat(y), flat(grad), logits.shape[0])


def count_correct(out, labels):
    """Number of rows of ``out`` (N, K) whose arg-max equals the integer label; one launch and
    one scalar copied back."""
    launch(_count_correct, 1, THREADS, flat(out), flat(labels), out.shape[1],
           _count_result.device)
    return int(_count_result.fetch())
