"""Compiled training steps for a stack of dense layers (an MLP), with no Python per step.

One call runs a range of mini-batches: gather the batch rows, forward through every layer
(GEMM + fused bias/activation), the fused loss and its gradient, backward (activation
derivative fused) and, for plain SGD, the update folded into the weight-gradient GEMM
(``W -= lr * x.T @ dz`` is one GEMM with alpha = -lr, beta = 1). This is what removes the
per-layer Python and dispatch cost that dominates at batch 32. x @ W and x.T @ dz run in SIMD
registers (:mod:`.gemm_simd`), dz @ W.T through single-threaded BLAS, all split over the
Numba threads (``parts``).

Layout
------
layers : int64 (L, 6), one row per dense layer:
    [weight offset, bias offset, in_features, out_features, activation code, workspace offset]
    offsets into ``flat_p``/``flat_g`` (parameters) and into ``ws``/``dws`` (activations).
ws, dws : flat work buffers of at least batch_size * sum(out_features) elements: the output of
    every layer and the gradient w.r.t. it, for the current batch.
loss codes: 0 cross-entropy on integer labels, 1 MSE on float targets, 2 BCE with logits.
"""
import math

from numba import njit

from .elementwise import act_backward, bias_act, bce_with_logits_loss, copy_row, \
    count_correct, cross_entropy_loss, mse_loss
from .gemm_simd import gemm_rows
from .parallel import pgemm

CROSS_ENTROPY, MSE, BCE_WITH_LOGITS = 0, 1, 2


@njit(cache=True)
def _layer_view(buf, offset, rows, cols):
    return buf[offset:offset + rows * cols].reshape((rows, cols))


@njit(cache=True)
def dense_stack_steps(x, labels, targets, order, first, stop, batch_size, flat_p, flat_g,
                      layers, ws, dws, xb, lb, tb, loss_code, count_labels, lr, fold_sgd, stats,
                      parts):
    """Run mini-batches ``first`` .. ``stop - 1`` of the permutation ``order``.

    x : (N, F0) inputs; labels : (N,) int64 (or empty); targets : (N, K) floats (or (0, 0));
    order : (N,) int64 sample order; xb, lb, tb : batch gather buffers (batch_size, ...).
    With ``fold_sgd`` the parameters are updated by plain SGD with rate ``lr`` inside the GEMMs;
    otherwise ``flat_g`` receives the gradients of the (single) batch for an outside optimizer.

    stats (float64, 3): [sum over samples of the loss, number correct, index of the first batch
    whose loss was NaN/Inf or -1]. On a non-finite loss the run stops before that batch's update.
    parts: Numba threads to split each GEMM over.
    """
    n = x.shape[0]
    n_layers = layers.shape[0]
    stats[2] = -1
    for batch in range(first, stop):
        start = batch * batch_size
        rows = min(n, start + batch_size) - start
        xin = xb[:rows]
        for i in range(rows):
            s = order[start + i]
            copy_row(x[s], xin[i])
            if count_labels or loss_code == CROSS_ENTROPY:
                lb[i] = labels[s]
            if loss_code != CROSS_ENTROPY:
                copy_row(targets[s], tb[i])
        # forward
        inp = xin
        for l in range(n_layers):
            w_off, b_off, n_in, n_out, code, ws_off = layers[l]
            w = _layer_view(flat_p, w_off, n_in, n_out)
            y = _layer_view(ws, ws_off, rows, n_out)
            gemm_rows(False, 1.0, inp, w, 0.0, y, parts)
            bias_act(y, flat_p[b_off:b_off + n_out], code)
            inp = y
        # loss and its gradient w.r.t. the logits
        last = layers[n_layers - 1]
        g = _layer_view(dws, last[5], rows, last[3])
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
            w_off, b_off, n_in, n_out, code, ws_off = layers[l]
            w = _layer_view(flat_p, w_off, n_in, n_out)
            dz = _layer_view(dws, ws_off, rows, n_out)
            if code != 0:
                act_backward(_layer_view(ws, ws_off, rows, n_out), dz, dz, code)
            if l > 0:
                prev = layers[l - 1]
                inp = _layer_view(ws, prev[5], rows, n_in)
                pgemm(False, True, 1.0, dz, w, 0.0, _layer_view(dws, prev[5], rows, n_in), parts)
            else:
                inp = xin
            if fold_sgd:
                gemm_rows(True, -lr, inp, dz, 1.0, w, parts)
                b = flat_p[b_off:b_off + n_out]
                for i in range(rows):
                    for j in range(n_out):
                        b[j] -= lr * dz[i, j]
            else:
                gemm_rows(True, 1.0, inp, dz, 0.0, _layer_view(flat_g, w_off, n_in, n_out), parts)
                db = flat_g[b_off:b_off + n_out]
                db[:] = 0
                for i in range(rows):
                    for j in range(n_out):
                        db[j] += dz[i, j]
