"""Recurrent cells and the embedding lookup on the CPU (same signatures as
:mod:`fastnn.kernels.reference.recurrent`).

Forward: one GEMM projects the inputs of every time step at once (``x (N*T, F) @ w_ih`` into
the ``gates`` buffer); then per step one GEMM ``h(t-1) @ w_hh`` into ``hw`` and one fused pass
(the GEMM's epilogue: both biases, the gate nonlinearities, the cell update) that writes the
state and keeps the activated gates in ``gates`` for the backward. Backward (BPTT over the whole
sequence in compiled code): per step one fused pass for the gates' gradients, one GEMM for
``dw_hh`` and one for the gradient reaching h(t-1); then one GEMM each for ``dw_ih`` and ``dx``
over all steps. Nothing is allocated. The GEMMs over all steps are BLAS split over the Numba
threads (:func:`.parallel.pgemm`); the per-step GEMMs and fused passes run on one thread (a
parallel region per step cost 20x more than it saved on a loaded 2-core machine: every step
waited at a barrier for a descheduled thread).
"""
from numba import njit

from ..contract import Cell
from .activations import _sigmoid, _tanh
from .common import scale_or_zero
from .parallel import chunk, parts, pgemm

RNN_TANH, RNN_RELU, LSTM, GRU = int(Cell.RNN_TANH), int(Cell.RNN_RELU), int(Cell.LSTM), int(Cell.GRU)


@njit(cache=True, error_model="numpy")
def _step_forward(g2, t_steps, t, hw, b_ih, b_hh, h_prev, c_prev, hs, cs, cell, n_parts):
    """The epilogue of step t: gates from g2's rows i*T + t (the input projection) + hw + the
    biases; hs[:, t] (and cs[:, t]) written, the activated gates kept in g2."""
    n, h = hw.shape[0], hs.shape[2]
    for part in range(n_parts):
        lo, hi = chunk(n, part, n_parts)
        for i in range(lo, hi):
            g, a, out = g2[i * t_steps + t], hw[i], hs[i, t]
            if cell == LSTM:
                for j in range(h):
                    ig = _sigmoid(g[j] + b_ih[j] + a[j] + b_hh[j])
                    fg = _sigmoid(g[h + j] + b_ih[h + j] + a[h + j] + b_hh[h + j])
                    gg = _tanh(g[2 * h + j] + b_ih[2 * h + j] + a[2 * h + j] + b_hh[2 * h + j])
                    og = _sigmoid(g[3 * h + j] + b_ih[3 * h + j] + a[3 * h + j] + b_hh[3 * h + j])
                    c = fg * c_prev[i, j] + ig * gg
                    cs[i, t, j] = c
                    out[j] = og * _tanh(c)
                    g[j], g[h + j], g[2 * h + j], g[3 * h + j] = ig, fg, gg, og
            elif cell == GRU:
                for j in range(h):
                    r = _sigmoid(g[j] + b_ih[j] + a[j] + b_hh[j])
                    z = _sigmoid(g[h + j] + b_ih[h + j] + a[h + j] + b_hh[h + j])
                    hn = a[2 * h + j] + b_hh[2 * h + j]
                    nn = _tanh(g[2 * h + j] + b_ih[2 * h + j] + r * hn)
                    out[j] = (1 - z) * nn + z * h_prev[i, j]
                    g[j], g[h + j], g[2 * h + j], g[3 * h + j] = r, z, nn, hn
            elif cell == RNN_TANH:
                for j in range(h):
                    out[j] = _tanh(g[j] + b_ih[j] + a[j] + b_hh[j])
            else:
                for j in range(h):
                    out[j] = max(g[j] + b_ih[j] + a[j] + b_hh[j], 0)


@njit(cache=True)
def _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, cell, reverse,
             n_parts):
    n, t_steps, f = x.shape
    g2 = gates.reshape((n * t_steps, gates.shape[2]))
    pgemm(False, False, 1.0, x.reshape((n * t_steps, f)), w_ih, 0.0, g2[:, :w_ih.shape[1]],
          n_parts)
    h_prev, c_prev = h0, c0
    for step in range(t_steps):
        t = t_steps - 1 - step if reverse else step
        pgemm(False, False, 1.0, h_prev, w_hh, 0.0, hw, 1)
        _step_forward(g2, t_steps, t, hw, b_ih, b_hh, h_prev, c_prev, hs, cs, cell, 1)
        h_prev = hs[:, t]
        if cell == LSTM:
            c_prev = cs[:, t]
    if h_last is not None:
        h_last[...] = h_prev


@njit(cache=True, error_model="numpy")
def _step_backward(gates, t, hs, h_prev, c_prev, cs, dhs, dh, dc, dgates, dgh, cell, n_parts):
    """The gates' gradients of step t: d = dh + dhs[:, t] reaches hs[:, t]; dgates[:, t] (the
    input projection's), dgh (the recurrent GEMM's) written; the LSTM's dc carried to c(t-1);
    the GRU's direct share d * z of the gradient of h(t-1) left in dh (others: 0)."""
    n, h = dh.shape
    for part in range(n_parts):
        lo, hi = chunk(n, part, n_parts)
        for i in range(lo, hi):
            gt, dg, dr = gates[i, t], dgates[i, t], dgh[i]
            for j in range(h):
                d = dh[i, j]
                if dhs is not None:
                    d += dhs[i, t, j]
                y = hs[i, t, j]
                if cell == RNN_TANH:
                    v = d * (1 - y * y)
                    dg[j], dr[j], dh[i, j] = v, v, 0
                elif cell == RNN_RELU:
                    v = d if y > 0 else 0 * d
                    dg[j], dr[j], dh[i, j] = v, v, 0
                elif cell == LSTM:
                    ig, fg, gg, og = gt[j], gt[h + j], gt[2 * h + j], gt[3 * h + j]
                    tc = _tanh(cs[i, t, j])
                    dct = dc[i, j] + d * og * (1 - tc * tc)
                    di = dct * gg * ig * (1 - ig)
                    df = dct * c_prev[i, j] * fg * (1 - fg)
                    dgg = dct * ig * (1 - gg * gg)
                    do = d * tc * og * (1 - og)
                    dg[j], dg[h + j], dg[2 * h + j], dg[3 * h + j] = di, df, dgg, do
                    dr[j], dr[h + j], dr[2 * h + j], dr[3 * h + j] = di, df, dgg, do
                    dc[i, j] = dct * fg
                    dh[i, j] = 0
                else:
                    r, z, nn, hn = gt[j], gt[h + j], gt[2 * h + j], gt[3 * h + j]
                    dn = d * (1 - z) * (1 - nn * nn)
                    drr = dn * hn * r * (1 - r)
                    dz = d * (h_prev[i, j] - nn) * z * (1 - z)
                    dg[j], dg[h + j], dg[2 * h + j] = drr, dz, dn
                    dr[j], dr[h + j], dr[2 * h + j] = drr, dz, dn * r
                    dh[i, j] = d * z


@njit(cache=True)
def _backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih, dw_hh,
              db_ih, db_hh, dgates, dgh, dh, dc, cell, reverse, beta, dx_beta, n_parts):
    n, t_steps, f = x.shape
    if dh_last is None:
        dh[...] = 0
    else:
        dh[...] = dh_last
    if cell == LSTM:
        dc[...] = 0
    scale_or_zero(dw_hh, beta)
    scale_or_zero(db_hh, beta)
    g_size = dgh.shape[1]
    for step in range(t_steps - 1, -1, -1):
        t = t_steps - 1 - step if reverse else step
        tp = t + 1 if reverse else t - 1
        h_prev = h0 if step == 0 else hs[:, tp]
        c_prev = c0 if step == 0 else cs[:, tp]
        _step_backward(gates, t, hs, h_prev, c_prev, cs, dhs, dh, dc, dgates, dgh, cell, 1)
        pgemm(True, False, 1.0, h_prev, dgh, 1.0, dw_hh, 1)
        for i in range(n):
            for j in range(g_size):
                db_hh[j] += dgh[i, j]
        pgemm(False, True, 1.0, dgh, w_hh, 1.0, dh, 1)
    x2 = x.reshape((n * t_steps, f))
    dg2 = dgates.reshape((n * t_steps, g_size))
    pgemm(True, False, 1.0, x2, dg2, beta, dw_ih, n_parts)
    scale_or_zero(db_ih, beta)
    for i in range(n * t_steps):
        for j in range(g_size):
            db_ih[j] += dg2[i, j]
    if dx is not None:
        pgemm(False, True, 1.0, dg2, w_ih, dx_beta, dx.reshape((n * t_steps, f)), n_parts)
    if dh0 is not None:
        dh0[...] = dh
    if dc0 is not None and cell == LSTM:
        dc0[...] = dc


def recurrent_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, cell,
                      reverse=False):
    """The contract's recurrent_forward: one GEMM for every step's input projection, then per
    step the recurrent GEMM and the fused gate pass. (The cell branches at run time, so the
    RNN and GRU get stand-ins for the LSTM's arrays, never touched.)"""
    if cs is None:
        c0, cs = h0, hs
    _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, int(cell),
             bool(reverse), parts(x.shape[0]))


def recurrent_backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih,
                       dw_hh, db_ih, db_hh, dgates, dgh, dh, dc, cell, reverse=False,
                       accumulate=False, add_dx=False):
    """The contract's recurrent_backward: BPTT over the whole sequence in one compiled call
    (stand-ins for the LSTM's arrays as in :func:`recurrent_forward`)."""
    if cs is None:
        c0, cs, dc = h0, hs, dh
    _backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih, dw_hh,
              db_ih, db_hh, dgates, dgh, dh, dc, int(cell), bool(reverse),
              1.0 if accumulate else 0.0, 1.0 if add_dx else 0.0, parts(x.shape[0]))


@njit(cache=True)
def _embedding_forward(ids, w, out):
    n, t = ids.shape
    for i in range(n):
        for s in range(t):
            out[i, s] = w[int(ids[i, s])]


@njit(cache=True)
def _embedding_backward(ids, dy, dw, beta):
    scale_or_zero(dw, beta)
    n, t = ids.shape
    for i in range(n):
        for s in range(t):
            row = dw[int(ids[i, s])]
            src = dy[i, s]
            for j in range(row.size):
                row[j] += src[j]


def embedding_forward(ids, w, out):
    """The contract's embedding_forward: one row copy per token."""
    _embedding_forward(ids, w, out)


def embedding_backward(ids, dy, dw, accumulate=False):
    """The contract's embedding_backward: rows of dy added into dw (serial: ids repeat)."""
    _embedding_backward(ids, dy, dw, 1.0 if accumulate else 0.0)
