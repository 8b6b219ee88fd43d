"""The compiled epoch on the CPU: training steps of a dense stack (an MLP) with no Python per step.

One call runs a range of mini-batches: gather the batch rows, forward through every layer
(GEMM + fused bias/activation), the fused loss and its gradient, backward (activation
derivative fused) and, for plain SGD, the update folded into the weight-gradient GEMM
(``W -= lr * x.T @ dz`` is one GEMM with alpha = -lr, beta = 1). This is what removes the
per-layer Python and dispatch cost that dominates at batch 32. x @ W and x.T @ dz run in SIMD
registers (:mod:`.gemm_simd`) or through BLAS as each layer's ``gemm`` field says (the plan
:func:`.dense.dense_gemm_plan` measured for the batch size, :mod:`.gemm_choice`), dz @ W.T
through BLAS, all split over ``parts`` Numba threads (BLAS single-threaded in each).

The arguments are the named structures of :mod:`fastnn.kernels.contract`: ``layers`` an array
of ``COMPILED_LAYER`` records (one per dense layer: offsets of weight and bias in the flat
parameter/gradient buffers, sizes, activation code, offset of its output in the work buffers,
GEMM plan),
``data`` an ``EpochData``, ``work`` an ``EpochWork``; ``loss_code`` a ``contract.Loss``.
"""
import math

from numba import njit

from ..contract import Loss
from .activations import act_backward, bias_act
from .losses import bce_with_logits_loss, count_correct, cross_entropy_loss, mse_loss
from .memory import copy_row
from .gemm_choice import PLAN_FORWARD_BLAS, PLAN_WEIGHT_GRAD_BLAS
from .gemm_simd import gemm_rows
from .parallel import pgemm

CROSS_ENTROPY, MSE = int(Loss.CROSS_ENTROPY), int(Loss.MSE)


@njit(cache=True)
def _layer_view(buf, offset, rows, cols):
    return buf[offset:offset + rows * cols].reshape((rows, cols))


def compiled_epoch_steps(layers, data, work, loss_code, first, stop, lr, fold_sgd, stats, parts):
    """Run mini-batches ``first`` .. ``stop - 1`` of the permutation ``data.order``.

    data : EpochData - x (N, F0) inputs; labels (N,) int64 (or empty: no accuracy, and not
    cross-entropy); targets (N, K) floats (or (0, 0) for cross-entropy); order (N,) int64;
    params, grads the flat buffers. work : EpochWork - ws, dws (at least batch_size *
    sum(out_features)): every layer's output and the gradient w.r.t. it; xb (batch_size, F0),
    lb (batch_size,), tb (batch_size, K) the batch gather buffers.
    With ``fold_sgd`` the parameters are updated by plain SGD with rate ``lr`` inside the GEMMs;
    otherwise ``data.grads`` receives the gradients of the (single) batch for an outside optimizer.

    stats (float64, 3): [sum over samples of the loss, number correct, index of the first batch
    whose loss was NaN/Inf or -1]. On a non-finite loss the run stops before that batch's update.
    parts: Numba threads to split each GEMM over.
    """
    _steps(layers, *data, *work, loss_code, first, stop, lr, fold_sgd, stats, parts)


@njit(cache=True)
def _steps(layers, x, labels, targets, order, flat_p, flat_g, ws, dws, xb, lb, tb, loss_code,
           first, stop, lr, fold_sgd, stats, parts):
    """:func:`compiled_epoch_steps` with the named tuples unpacked: Numba types array arguments
    in C, but a named tuple in Python on every call (microseconds, and ~440 bytes of type objects
    that wait for the cyclic garbage collector)."""
    n, batch_size = x.shape[0], xb.shape[0]
    n_layers = layers.shape[0]
    count_labels = labels.shape[0] > 0
    stats[2] = -1
    for batch in range(first, stop):
        start = batch * batch_size
        rows = min(n, start + batch_size) - start
        xin = xb[:rows]
        for i in range(rows):
            s = order[start + i]
            copy_row(x[s], xin[i])
            if count_labels:
                lb[i] = labels[s]
            if loss_code != CROSS_ENTROPY:
                copy_row(targets[s], tb[i])
        # forward
        inp = xin
        for l in range(n_layers):
            layer = layers[l]
            w = _layer_view(flat_p, layer.weight, layer.n_in, layer.n_out)
            y = _layer_view(ws, layer.work, rows, layer.n_out)
            if layer.gemm & PLAN_FORWARD_BLAS:
                pgemm(False, False, 1.0, inp, w, 0.0, y, parts)
            else:
                gemm_rows(False, 1.0, inp, w, 0.0, y, parts)
            bias_act(y, flat_p[layer.bias:layer.bias + layer.n_out], layer.act)
            inp = y
        # loss and its gradient w.r.t. the logits
        last = layers[n_layers - 1]
        g = _layer_view(dws, last.work, rows, last.n_out)
        if loss_code == CROSS_ENTROPY:
            value = cross_entropy_loss(inp, lb[:rows], g)
        elif loss_code == MSE:
            value = mse_loss(inp, tb[:rows], g)
        else:
            value = bce_with_logits_loss(inp, tb[:rows], g)
        if not math.isfinite(value):
            stats[2] = batch
            return
        stats[0] += value * rows
        if count_labels:
            stats[1] += count_correct(inp, lb[:rows])
        # backward
        for l in range(n_layers - 1, -1, -1):
            layer = layers[l]
            n_in, n_out = layer.n_in, layer.n_out
            w = _layer_view(flat_p, layer.weight, n_in, n_out)
            dz = _layer_view(dws, layer.work, rows, n_out)
            if layer.act != 0:
                act_backward(_layer_view(ws, layer.work, rows, n_out), dz, dz, layer.act)
            if l > 0:
                prev = layers[l - 1]
                inp = _layer_view(ws, prev.work, rows, n_in)
                pgemm(False, True, 1.0, dz, w, 0.0, _layer_view(dws, prev.work, rows, n_in), parts)
            else:
                inp = xin
            wgrad_blas = layer.gemm & PLAN_WEIGHT_GRAD_BLAS
            if fold_sgd:
                if wgrad_blas:
                    pgemm(True, False, -lr, inp, dz, 1.0, w, parts)
                else:
                    gemm_rows(True, -lr, inp, dz, 1.0, w, parts)
                b = flat_p[layer.bias:layer.bias + n_out]
                for i in range(rows):
                    for j in range(n_out):
                        b[j] -= lr * dz[i, j]
            else:
                dw = _layer_view(flat_g, layer.weight, n_in, n_out)
                if wgrad_blas:
                    pgemm(True, False, 1.0, inp, dz, 0.0, dw, parts)
                else:
                    gemm_rows(True, 1.0, inp, dz, 0.0, dw, parts)
                db = flat_g[layer.bias:layer.bias + n_out]
                db[:] = 0
                for i in range(rows):
                    for j in range(n_out):
                        db[j] += dz[i, j]
