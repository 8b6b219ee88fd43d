"""Recurrent cells and the embedding lookup on the CPU (same signatures as
:mod:`fastnn.kernels.reference.recurrent`).

Forward: one GEMM projects the inputs of every time step at once (``x (N*T, F) @ w_ih`` into
the ``gates`` buffer); then per step one GEMM ``h(t-1) @ w_hh`` into ``hw`` and the epilogue
(both biases, the gate nonlinearities, the cell update) that writes the state and keeps the
activated gates in ``gates`` for the backward. Backward (BPTT over the whole sequence in
compiled code): per step the gates' gradients and one GEMM for the gradient reaching h(t-1);
then ``dw_hh`` over all steps, and one GEMM each for ``dw_ih`` and ``dx``. Nothing is allocated.

Threads: batch rows never meet in the recurrence, so each Numba thread runs its own block of
rows through every step (:func:`_sequence_forward`, :func:`_sequence_backward`): one parallel
region per sequence, not one per step (a region per step cost 20x more than it saved on a
loaded 2-core machine: every step waited at a barrier for a descheduled thread), and
``dw_hh`` is split by its columns. The GEMMs over all steps are BLAS split over the threads
(:func:`.parallel.pgemm`). The epilogues run one loop per stage over contiguous units (sums,
then the vectorised sigmoid / tanh of :mod:`.activations`, then the cell update): one loop
doing all per unit did not vectorise. LSTM-128, 256 rows, 28 steps, float32, 2 threads on a
2-core Xeon (AVX-512): forward 39 -> 8.6 ms, backward 38 -> 19 ms.
"""
from numba import njit, prange

from ..contract import Activation, Cell
from .activations import _act_in_place
from .blas import gemm
from .common import scale_or_zero
from .parallel import ALIGN, aligned_bound, chunk, parts, pgemm

RNN_TANH, RNN_RELU, LSTM, GRU = int(Cell.RNN_TANH), int(Cell.RNN_RELU), int(Cell.LSTM), int(Cell.GRU)
RELU, SIGMOID, TANH = int(Activation.RELU), int(Activation.SIGMOID), int(Activation.TANH)
ROWS_PER_PART = 8     # batch rows per thread at least in the per-step work


@njit(cache=True, error_model="numpy")
def _add3(g, b_ih, a, b_hh, lo, hi):
    """g[lo:hi] += b_ih[lo:hi] + a[lo:hi] + b_hh[lo:hi] (contiguous: vectorised)."""
    for k in range(lo, hi):
        g[k] = g[k] + b_ih[k] + a[k] + b_hh[k]


@njit(cache=True, error_model="numpy")
def _step_forward(g2, t_steps, t, tp, hw, b_ih, b_hh, h0, c0, hs, cs, cell, lo, hi):
    """The epilogue of step t for batch rows lo..hi-1: gates from g2's rows i*T + t (the input
    projection) + hw + the biases; hs[:, t] (and cs[:, t]) written, the activated gates kept
    in g2. The previous state is step tp's (h0, c0 when tp < 0). Per row, each stage is one loop over contiguous gates
    (the sums, then sigmoid / tanh by :func:`.activations._act_in_place`, then the cell update),
    so that every loop vectorises: one loop doing everything per unit ran 5x slower."""
    h = hs.shape[2]
    for i in range(lo, hi):
        g, a, out = g2[i * t_steps + t], hw[i], hs[i, t]
        if cell == LSTM:
            c_prev, c_out = (c0[i] if tp < 0 else cs[i, tp]), cs[i, t]
            _add3(g, b_ih, a, b_hh, 0, 4 * h)
            _act_in_place(g[:2 * h], SIGMOID)
            _act_in_place(g[2 * h:3 * h], TANH)
            _act_in_place(g[3 * h:4 * h], SIGMOID)
            for j in range(h):
                c = g[h + j] * c_prev[j] + g[j] * g[2 * h + j]
                c_out[j] = c
                out[j] = c
            _act_in_place(out, TANH)
            for j in range(h):
                out[j] = g[3 * h + j] * out[j]
        elif cell == GRU:
            _add3(g, b_ih, a, b_hh, 0, 2 * h)
            _act_in_place(g[:2 * h], SIGMOID)
            for j in range(h):                  # hn kept for the backward
                g[3 * h + j] = a[2 * h + j] + b_hh[2 * h + j]
            for j in range(h):
                g[2 * h + j] = g[2 * h + j] + b_ih[2 * h + j] + g[j] * g[3 * h + j]
            _act_in_place(g[2 * h:3 * h], TANH)
            h_prev = h0[i] if tp < 0 else hs[i, tp]
            for j in range(h):
                z = g[h + j]
                out[j] = (1 - z) * g[2 * h + j] + z * h_prev[j]
        else:
            for j in range(h):
                out[j] = g[j] + b_ih[j] + a[j] + b_hh[j]
            _act_in_place(out, TANH if cell == RNN_TANH else RELU)


@njit(cache=True, parallel=True)
def _sequence_forward(g2, t_steps, w_hh, b_ih, b_hh, h0, c0, hs, cs, hw, cell, reverse, n_parts):
    """Every step's recurrent GEMM and epilogue; each of ``n_parts`` threads runs its own batch
    rows through the whole sequence (rows never meet), so there is one parallel region per
    sequence, not one per step."""
    n = hw.shape[0]
    for part in prange(n_parts):
        lo, hi = chunk(n, part, n_parts)
        tp = -1
        for step in range(t_steps):
            t = t_steps - 1 - step if reverse else step
            h_prev = h0 if tp < 0 else hs[:, tp]
            gemm(False, False, 1.0, h_prev[lo:hi], w_hh, 0.0, hw[lo:hi])
            _step_forward(g2, t_steps, t, tp, hw, b_ih, b_hh, h0, c0, hs, cs, cell, lo, hi)
            tp = t


@njit(cache=True)
def _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, cell, reverse,
             n_parts, row_parts):
    n, t_steps, f = x.shape
    g2 = gates.reshape((n * t_steps, gates.shape[2]))
    pgemm(False, False, 1.0, x.reshape((n * t_steps, f)), w_ih, 0.0, g2[:, :w_ih.shape[1]],
          n_parts)
    _sequence_forward(g2, t_steps, w_hh, b_ih, b_hh, h0, c0, hs, cs, hw, cell, reverse,
                      row_parts)
    if h_last is not None:
        h_last[...] = hs[:, 0 if reverse else t_steps - 1]


@njit(cache=True, error_model="numpy")
def _step_backward(gates, t, tp, hs, h0, c0, cs, dhs, dh, dc, dgates, dgh, cell, lo, hi):
    """The gates' gradients of step t for batch rows lo..hi-1: d = dh + dhs[:, t] reaches
    hs[:, t]; dgates[:, t] (the input projection's), dgh (the recurrent GEMM's) written; the
    LSTM's dc carried to c(t-1); the GRU's direct share d * z of the gradient of h(t-1) left in
    dh (others: 0). The previous state is step tp's (h0, c0 when tp < 0). As in
    :func:`_step_forward`, one loop per stage over contiguous units, the cell's branch outside
    them, so that they vectorise."""
    h = dh.shape[1]
    for i in range(lo, hi):
        gt, dg, dr, d, y = gates[i, t], dgates[i, t], dgh[i], dh[i], hs[i, t]
        if dhs is not None:
            ds = dhs[i, t]
            for j in range(h):
                d[j] = d[j] + ds[j]
        if cell == RNN_TANH:
            for j in range(h):
                dg[j] = d[j] * (1 - y[j] * y[j])
        elif cell == RNN_RELU:
            for j in range(h):
                dg[j] = d[j] if y[j] > 0 else 0 * d[j]
        elif cell == LSTM:
            c_prev, dcr, tc = (c0[i] if tp < 0 else cs[i, tp]), dc[i], dr[:h]
            tc[:] = cs[i, t]
            _act_in_place(tc, TANH)                 # tanh(c(t)), scratch in dr[:h]
            for j in range(h):
                ig, fg, gg, og = gt[j], gt[h + j], gt[2 * h + j], gt[3 * h + j]
                dct = dcr[j] + d[j] * og * (1 - tc[j] * tc[j])
                dg[3 * h + j] = d[j] * tc[j] * og * (1 - og)
                dg[j] = dct * gg * ig * (1 - ig)
                dg[h + j] = dct * c_prev[j] * fg * (1 - fg)
                dg[2 * h + j] = dct * ig * (1 - gg * gg)
                dcr[j] = dct * fg
        else:
            h_prev = h0[i] if tp < 0 else hs[i, tp]
            for j in range(h):
                r, z, nn, hn = gt[j], gt[h + j], gt[2 * h + j], gt[3 * h + j]
                dn = d[j] * (1 - z) * (1 - nn * nn)
                dg[j] = dn * hn * r * (1 - r)
                dg[h + j] = d[j] * (h_prev[j] - nn) * z * (1 - z)
                dg[2 * h + j] = dn
                dr[2 * h + j] = dn * r
                d[j] = d[j] * z
            for j in range(2 * h):
                dr[j] = dg[j]
        if cell != GRU:
            for j in range(dg.size):
                dr[j] = dg[j]
            for j in range(h):
                d[j] = 0


@njit(cache=True, parallel=True)
def _sequence_backward(gates, hs, h0, c0, cs, dhs, dh, dc, dgates, dgh, w_hh, cell, reverse,
                       n_parts):
    """BPTT through every step, each of ``n_parts`` threads on its own batch rows (as
    :func:`_sequence_forward`): the gates' gradients and the gradient reaching h(t-1)."""
    n, t_steps = hs.shape[0], hs.shape[1]
    for part in prange(n_parts):
        lo, hi = chunk(n, part, n_parts)
        for step in range(t_steps - 1, -1, -1):
            t = t_steps - 1 - step if reverse else step
            tp = -1 if step == 0 else (t + 1 if reverse else t - 1)
            _step_backward(gates, t, tp, hs, h0, c0, cs, dhs, dh, dc, dgates, dgh, cell, lo, hi)
            gemm(False, True, 1.0, dgh[lo:hi], w_hh, 1.0, dh[lo:hi])


@njit(cache=True, parallel=True)
def _recurrent_weight_grads(gates, hs, h0, dgates, dgh, dw_hh, db_hh, cell, reverse, n_parts):
    """dw_hh += sum over steps of h(t-1).T @ dr(t), db_hh += the sums of dr(t), where dr(t) is
    the recurrent GEMM's gradient: the gates' gradients (the GRU's candidate part times r).
    Each of ``n_parts`` threads owns a block of dw_hh's columns over all steps (one parallel
    region, no reduction between threads); the GRU's dr(t) is built in ``dgh``, column block by
    column block."""
    n, t_steps, h = hs.shape
    g_size = dgh.shape[1]
    for part in prange(n_parts):
        lo, hi = aligned_bound(g_size, part, n_parts), aligned_bound(g_size, part + 1, n_parts)
        for step in range(t_steps):
            t = t_steps - 1 - step if reverse else step
            tp = -1 if step == 0 else (t + 1 if reverse else t - 1)
            dr = dgates[:, t]              # the GEMM's gradient is the gates' (not the GRU's)
            if cell == GRU:
                dr = dgh
                for i in range(n):
                    dg, r = dgates[i, t], gates[i, t]
                    for j in range(lo, hi):
                        dr[i, j] = dg[j] * r[j - 2 * h] if j >= 2 * h else dg[j]
            for i in range(n):
                for j in range(lo, hi):
                    db_hh[j] += dr[i, j]
            h_prev = h0 if tp < 0 else hs[:, tp]
            gemm(True, False, 1.0, h_prev, dr[:, lo:hi], 1.0, dw_hh[:, lo:hi])


@njit(cache=True)
def _backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih, dw_hh,
              db_ih, db_hh, dgates, dgh, dh, dc, cell, reverse, beta, dx_beta, n_parts,
              row_parts):
    n, t_steps, f = x.shape
    if dh_last is None:
        dh[...] = 0
    else:
        dh[...] = dh_last
    if cell == LSTM:
        dc[...] = 0
    g_size = dgh.shape[1]
    _sequence_backward(gates, hs, h0, c0, cs, dhs, dh, dc, dgates, dgh, w_hh, cell, reverse,
                       row_parts)
    scale_or_zero(dw_hh, beta)
    scale_or_zero(db_hh, beta)
    _recurrent_weight_grads(gates, hs, h0, dgates, dgh, dw_hh, db_hh, cell, reverse,
                            min(n_parts, max(1, g_size // ALIGN)))
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


def _row_parts(n):
    """Threads for the per-step work: one per ``ROWS_PER_PART`` batch rows at least."""
    return parts(max(1, n // ROWS_PER_PART))


def recurrent_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, cell,
                      reverse=False):
    """The contract's recurrent_forward: one GEMM for every step's input projection, then per
    step the recurrent GEMM and the fused gate pass. (The cell branches at run time, so the
    RNN and GRU get stand-ins for the LSTM's arrays, never touched.)"""
    if cs is None:
        c0, cs = h0, hs
    _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, int(cell),
             bool(reverse), parts(x.shape[0]), _row_parts(x.shape[0]))


def recurrent_backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih,
                       dw_hh, db_ih, db_hh, dgates, dgh, dh, dc, cell, reverse=False,
                       accumulate=False, add_dx=False):
    """The contract's recurrent_backward: BPTT over the whole sequence in one compiled call
    (stand-ins for the LSTM's arrays as in :func:`recurrent_forward`)."""
    if cs is None:
        c0, cs, dc = h0, hs, dh
    _backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih, dw_hh,
              db_ih, db_hh, dgates, dgh, dh, dc, int(cell), bool(reverse),
              1.0 if accumulate else 0.0, 1.0 if add_dx else 0.0, parts(x.shape[0]),
              _row_parts(x.shape[0]))


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
