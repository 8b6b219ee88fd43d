"""Recurrent cells and the embedding lookup on the device (same signatures as
:mod:`fastnn.kernels.reference.recurrent`).

Each kernel is a grid-stride loop over output elements that reads its operands (strided views
included) directly. Launches: forward ``T + 1`` (one for the input projection of every step
with b_ih, then per step one that does the recurrent product, the gate nonlinearities and the
state update for its unit), plus one for ``h_last``; backward ``2T + 4`` (one to start the
carried gradients, per step one for the gates' gradients and one for the gradient reaching
h(t-1), then dw_hh with both bias sums, dw_ih and dx), plus one for dh0/dc0 when asked
(counted by tests/test_recurrent.py::test_cuda_launches_per_step). The
recurrent weight gradient is summed over all steps at the end from ``dgates`` (the GRU's n gate
times the kept r), so no per-step buffer is kept. Plain loops, no shared-memory tiling: the
launch count per step is what is kept small.
"""
import math

from numba import cuda

from ..contract import Cell
from .common import launch_1d

RNN_TANH, RNN_RELU, LSTM, GRU = int(Cell.RNN_TANH), int(Cell.RNN_RELU), int(Cell.LSTM), int(Cell.GRU)


@cuda.jit(device=True)
def _sig(v):
    return 1 / (1 + math.exp(-v))


@cuda.jit
def _project(x, w_ih, b_ih, gates):
    """gates[i, t, c] = x[i, t] @ w_ih[:, c] + b_ih[c] for c < G*H."""
    n, t_steps, f = x.shape
    g = w_ih.shape[1]
    for e in range(cuda.grid(1), n * t_steps * g, cuda.gridsize(1)):
        c, r = e % g, e // g
        i, t = r // t_steps, r % t_steps
        acc = b_ih[c]
        for k in range(f):
            acc += x[i, t, k] * w_ih[k, c]
        gates[i, t, c] = acc


@cuda.jit(device=True)
def _hh(h_prev, w_hh, b_hh, i, c):
    acc = b_hh[c]
    for k in range(h_prev.shape[1]):
        acc += h_prev[i, k] * w_hh[k, c]
    return acc


@cuda.jit
def _step(gates, t, h_prev, c_prev, w_hh, b_hh, hs, cs, cell):
    """Step t for unit (i, j): the recurrent products of its gates, the nonlinearities, the
    state; the activated gates kept in gates[i, t]."""
    n, h = h_prev.shape
    for e in range(cuda.grid(1), n * h, cuda.gridsize(1)):
        i, j = e // h, e % h
        if cell == LSTM:
            ig = _sig(gates[i, t, j] + _hh(h_prev, w_hh, b_hh, i, j))
            fg = _sig(gates[i, t, h + j] + _hh(h_prev, w_hh, b_hh, i, h + j))
            gg = math.tanh(gates[i, t, 2 * h + j] + _hh(h_prev, w_hh, b_hh, i, 2 * h + j))
            og = _sig(gates[i, t, 3 * h + j] + _hh(h_prev, w_hh, b_hh, i, 3 * h + j))
            c = fg * c_prev[i, j] + ig * gg
            cs[i, t, j] = c
            hs[i, t, j] = og * math.tanh(c)
            gates[i, t, j], gates[i, t, h + j] = ig, fg
            gates[i, t, 2 * h + j], gates[i, t, 3 * h + j] = gg, og
        elif cell == GRU:
            r = _sig(gates[i, t, j] + _hh(h_prev, w_hh, b_hh, i, j))
            z = _sig(gates[i, t, h + j] + _hh(h_prev, w_hh, b_hh, i, h + j))
            hn = _hh(h_prev, w_hh, b_hh, i, 2 * h + j)
            nn = math.tanh(gates[i, t, 2 * h + j] + r * hn)
            hs[i, t, j] = (1 - z) * nn + z * h_prev[i, j]
            gates[i, t, j], gates[i, t, h + j] = r, z
            gates[i, t, 2 * h + j], gates[i, t, 3 * h + j] = nn, hn
        else:
            a = gates[i, t, j] + _hh(h_prev, w_hh, b_hh, i, j)
            hs[i, t, j] = math.tanh(a) if cell == RNN_TANH else max(a, 0)


@cuda.jit
def _copy_step(src, t, dst):
    """dst[i, j] = src[i, t, j]."""
    n, h = dst.shape
    for e in range(cuda.grid(1), n * h, cuda.gridsize(1)):
        dst[e // h, e % h] = src[e // h, t, e % h]


@cuda.jit
def _start_grads(dh, dh_last, has_last, dc):
    n, h = dh.shape
    for e in range(cuda.grid(1), n * h, cuda.gridsize(1)):
        i, j = e // h, e % h
        dh[i, j] = dh_last[i, j] if has_last else 0
        dc[i, j] = 0


@cuda.jit
def _step_grad(gates, t, hs, h_prev, c_prev, cs, dhs, has_dhs, dh, dc, dgates, dgh, cell):
    """The gates' gradients of step t for unit (i, j) (see the cpu kernel's _step_backward);
    dh[i, j] left with the direct share of h(t-1)'s gradient (the GRU's d * z, else 0)."""
    n, h = dh.shape
    for e in range(cuda.grid(1), n * h, cuda.gridsize(1)):
        i, j = e // h, e % h
        d = dh[i, j]
        if has_dhs:
            d += dhs[i, t, j]
        y = hs[i, t, j]
        if cell == RNN_TANH or cell == RNN_RELU:
            v = d * (1 - y * y) if cell == RNN_TANH else (d if y > 0 else 0 * d)
            dgates[i, t, j] = v
            dgh[i, j] = v
            dh[i, j] = 0
        elif cell == LSTM:
            ig, fg = gates[i, t, j], gates[i, t, h + j]
            gg, og = gates[i, t, 2 * h + j], gates[i, t, 3 * h + j]
            tc = math.tanh(cs[i, t, j])
            dct = dc[i, j] + d * og * (1 - tc * tc)
            vals = (dct * gg * ig * (1 - ig), dct * c_prev[i, j] * fg * (1 - fg),
                    dct * ig * (1 - gg * gg), d * tc * og * (1 - og))
            for k in range(4):
                dgates[i, t, k * h + j] = vals[k]
                dgh[i, k * h + j] = vals[k]
            dc[i, j] = dct * fg
            dh[i, j] = 0
        else:
            r, z = gates[i, t, j], gates[i, t, h + j]
            nn, hn = gates[i, t, 2 * h + j], gates[i, t, 3 * h + j]
            dn = d * (1 - z) * (1 - nn * nn)
            drr = dn * hn * r * (1 - r)
            dz = d * (h_prev[i, j] - nn) * z * (1 - z)
            dgates[i, t, j], dgates[i, t, h + j], dgates[i, t, 2 * h + j] = drr, dz, dn
            dgh[i, j], dgh[i, h + j], dgh[i, 2 * h + j] = drr, dz, dn * r
            dh[i, j] = d * z


@cuda.jit
def _carry(dgh, w_hh, dh):
    """dh[i, k] += dgh[i] @ w_hh[k]: the gradient reaching h(t-1)."""
    n, h = dh.shape
    for e in range(cuda.grid(1), n * h, cuda.gridsize(1)):
        i, k = e // h, e % h
        acc = dh[i, k]
        for c in range(dgh.shape[1]):
            acc += dgh[i, c] * w_hh[k, c]
        dh[i, k] = acc


@cuda.jit(device=True)
def _dgh(dgates, gates, i, t, c, h, cell):
    """The recurrent product's gradient at (i, t, c), from dgates (the GRU's n gate times r)."""
    v = dgates[i, t, c]
    if cell == GRU and c >= 2 * h:
        v *= gates[i, t, c - 2 * h]
    return v


@cuda.jit
def _recurrent_weight_grads(h0, hs, dgates, gates, dw_hh, db_ih, db_hh, beta, reverse, cell):
    """dw_hh[k, c] (+)= sum over steps and rows of h(t-1)[i, k] * dgh(t)[i, c]; the row k == 0
    threads also sum db_ih[c] and db_hh[c]."""
    n, t_steps, h = hs.shape
    g = dw_hh.shape[1]
    for e in range(cuda.grid(1), h * g, cuda.gridsize(1)):
        k, c = e // g, e % g
        acc, bi, bh = beta * 0, beta * 0, beta * 0     # zeros of the dtype (the output may hold NaN)
        for t in range(t_steps):
            tp = t + 1 if reverse else t - 1
            first = tp < 0 or tp >= t_steps
            for i in range(n):
                v = _dgh(dgates, gates, i, t, c, h, cell)
                acc += (h0[i, k] if first else hs[i, tp, k]) * v
                if k == 0:
                    bi += dgates[i, t, c]
                    bh += v
        dw_hh[k, c] = acc + (beta * dw_hh[k, c] if beta != 0 else 0)
        if k == 0:
            db_ih[c] = bi + (beta * db_ih[c] if beta != 0 else 0)
            db_hh[c] = bh + (beta * db_hh[c] if beta != 0 else 0)


@cuda.jit
def _input_weight_grad(x, dgates, dw_ih, beta):
    """dw_ih[f, c] (+)= sum over rows and steps of x[i, t, f] * dgates[i, t, c]."""
    n, t_steps, nf = x.shape
    g = dw_ih.shape[1]
    for e in range(cuda.grid(1), nf * g, cuda.gridsize(1)):
        f, c = e // g, e % g
        acc = beta * 0
        for i in range(n):
            for t in range(t_steps):
                acc += x[i, t, f] * dgates[i, t, c]
        dw_ih[f, c] = acc + (beta * dw_ih[f, c] if beta != 0 else 0)


@cuda.jit
def _input_grad(dgates, w_ih, dx, beta):
    """dx[i, t, f] (+)= dgates[i, t] @ w_ih[f]."""
    n, t_steps, nf = dx.shape
    for e in range(cuda.grid(1), n * t_steps * nf, cuda.gridsize(1)):
        f, r = e % nf, e // nf
        i, t = r // t_steps, r % t_steps
        acc = beta * 0
        for c in range(w_ih.shape[1]):
            acc += dgates[i, t, c] * w_ih[f, c]
        dx[i, t, f] = acc + (beta * dx[i, t, f] if beta != 0 else 0)


@cuda.jit
def _copy_pair(dh, dh0, dc, dc0, has_dh0, has_dc0):
    n, h = dh.shape
    for e in range(cuda.grid(1), n * h, cuda.gridsize(1)):
        i, j = e // h, e % h
        if has_dh0:
            dh0[i, j] = dh[i, j]
        if has_dc0:
            dc0[i, j] = dc[i, j]


def recurrent_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, cell,
                      reverse=False):
    """The contract's recurrent_forward: T + 1 launches (+1 for h_last); hw is not needed."""
    cell, (n, t_steps, _), h = int(cell), x.shape, h0.shape[1]
    if cs is None:                          # stand-ins the RNN / GRU never touch
        c0, cs = h0, hs
    launch_1d(_project, n * t_steps * w_ih.shape[1], x, w_ih, b_ih, gates)
    h_prev, c_prev = h0, c0
    for step in range(t_steps):
        t = t_steps - 1 - step if reverse else step
        launch_1d(_step, n * h, gates, t, h_prev, c_prev, w_hh, b_hh, hs, cs, cell)
        h_prev, c_prev = hs[:, t], cs[:, t]
    if h_last is not None:
        launch_1d(_copy_step, n * h, hs, 0 if reverse else t_steps - 1, h_last)


def recurrent_backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih,
                       dw_hh, db_ih, db_hh, dgates, dgh, dh, dc, cell, reverse=False,
                       accumulate=False, add_dx=False):
    """The contract's recurrent_backward: 2T + 4 launches (+1 for dh0/dc0)."""
    cell, (n, t_steps, nf), h = int(cell), x.shape, h0.shape[1]
    lstm = cell == LSTM
    if not lstm:
        c0, cs, dc = h0, hs, dh
    beta = dw_hh.dtype.type(1 if accumulate else 0)
    launch_1d(_start_grads, n * h, dh, dh if dh_last is None else dh_last, dh_last is not None,
              dc if lstm else dgh)
    for step in range(t_steps - 1, -1, -1):
        t = t_steps - 1 - step if reverse else step
        tp = t + 1 if reverse else t - 1
        h_prev = h0 if step == 0 else hs[:, tp]
        c_prev = c0 if step == 0 else cs[:, tp]
        launch_1d(_step_grad, n * h, gates, t, hs, h_prev, c_prev, cs,
                  hs if dhs is None else dhs, dhs is not None, dh, dc, dgates, dgh, cell)
        launch_1d(_carry, n * h, dgh, w_hh, dh)
    launch_1d(_recurrent_weight_grads, dw_hh.size, h0, hs, dgates, gates, dw_hh, db_ih, db_hh,
              beta, bool(reverse), cell)
    launch_1d(_input_weight_grad, dw_ih.size, x, dgates, dw_ih, beta)
    if dx is not None:
        launch_1d(_input_grad, n * t_steps * nf, dgates, w_ih, dx,
                  dx.dtype.type(1 if add_dx else 0))
    if dh0 is not None or (dc0 is not None and lstm):
        launch_1d(_copy_pair, n * h, dh, dh if dh0 is None else dh0, dc,
                  dc if dc0 is None else dc0, dh0 is not None, dc0 is not None and lstm)


@cuda.jit
def _embedding_forward(ids, w, out):
    n, t, d = out.shape
    for e in range(cuda.grid(1), n * t * d, cuda.gridsize(1)):
        j, r = e % d, e // d
        i, s = r // t, r % t
        v = int(ids[i, s])
        out[i, s, j] = w[v, j] if 0 <= v < w.shape[0] else 0


@cuda.jit
def _embedding_backward(ids, dy, dw, beta):
    """One thread per (row v, feature j) sums dy over the tokens with id v (no atomics)."""
    v_count, d = dw.shape
    n, t = ids.shape
    for e in range(cuda.grid(1), v_count * d, cuda.gridsize(1)):
        v, j = e // d, e % d
        acc = beta * 0
        for i in range(n):
            for s in range(t):
                if int(ids[i, s]) == v:
                    acc += dy[i, s, j]
        dw[v, j] = acc + (beta * dw[v, j] if beta != 0 else 0)


def embedding_forward(ids, w, out):
    """The contract's embedding_forward: one launch (ids outside [0, V) give zeros)."""
    launch_1d(_embedding_forward, out.size, ids, w, out)


def embedding_backward(ids, dy, dw, accumulate=False):
    """The contract's embedding_backward: one launch, each weight entry summed by one thread."""
    launch_1d(_embedding_backward, dw.size, ids, dy, dw, dw.dtype.type(1 if accumulate else 0))
