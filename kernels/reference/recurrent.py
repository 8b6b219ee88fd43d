"""Recurrent cells unrolled over a sequence, and the embedding lookup (plain NumPy, the oracle).

Batch-first: ``x`` is ``(N, T, F)``, hidden states ``(N, T, H)``. The cells and their gate
order are PyTorch's (``cell`` a :class:`~fastnn.kernels.contract.Cell`), with the weights
transposed as Dense's: ``w_ih`` ``(F, G*H)``, ``w_hh`` ``(H, G*H)``, biases ``(G*H,)``.

* RNN: ``h = act(x W_ih + b_ih + h' W_hh + b_hh)``, act tanh or relu (``h'`` the previous state);
* LSTM, gates i, f, g, o: ``c = f * c' + i * g``, ``h = o * tanh(c)``;
* GRU, gates r, z, n: ``n = tanh(x W_in + b_in + r * (h' W_hn + b_hn))``,
  ``h = (1 - z) * n + z * h'``.

The forward keeps what the backward needs in ``gates`` (``(N, T, cell.work_width(H))``): the
activated gates (LSTM: i, f, g, o; GRU: r, z, n and ``h' W_hn + b_hn``); the RNN needs only
``hs``. With ``reverse`` the sequence is read from its last step to its first (the backward
direction of a bidirectional layer); ``hs[:, t]`` is still the state after reading step ``t``.
The backward is back-propagation through time over the whole sequence.
"""
import numpy as np

from ..contract import Cell


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _order(t_steps, reverse):
    return range(t_steps - 1, -1, -1) if reverse else range(t_steps)


def recurrent_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, h_last, gates, hw, cell,
                      reverse=False):
    """Unroll ``cell`` over x (N, T, F) from h0 (N, H) (and c0 for the LSTM): hs (N, T, H)
    written, cs (N, T, H) the LSTM's cell states (else None), h_last (N, H) the final state
    (or None), gates kept for the backward, hw (N, G*H) work buffer."""
    cell = Cell(cell)
    n, t_steps, _ = x.shape
    h_size = h0.shape[1]
    h_prev, c_prev = h0, c0
    for t in _order(t_steps, reverse):
        xw = x[:, t] @ w_ih + b_ih                      # the input's share of every gate
        hw[...] = h_prev @ w_hh + b_hh                  # the previous state's share
        if cell in (Cell.RNN_TANH, Cell.RNN_RELU):
            a = xw + hw
            hs[:, t] = np.tanh(a) if cell == Cell.RNN_TANH else np.maximum(a, 0)
        elif cell == Cell.LSTM:
            a = xw + hw
            i, f, o = (_sigmoid(a[:, k * h_size:(k + 1) * h_size]) for k in (0, 1, 3))
            g = np.tanh(a[:, 2 * h_size:3 * h_size])
            cs[:, t] = f * c_prev + i * g
            hs[:, t] = o * np.tanh(cs[:, t])
            gates[:, t] = np.concatenate([i, f, g, o], axis=1)
            c_prev = cs[:, t]
        else:
            r = _sigmoid(xw[:, :h_size] + hw[:, :h_size])
            z = _sigmoid(xw[:, h_size:2 * h_size] + hw[:, h_size:2 * h_size])
            hn = hw[:, 2 * h_size:]
            nn = np.tanh(xw[:, 2 * h_size:] + r * hn)
            hs[:, t] = (1 - z) * nn + z * h_prev
            gates[:, t] = np.concatenate([r, z, nn, hn], axis=1)
        h_prev = hs[:, t]
    if h_last is not None:
        h_last[...] = h_prev


def recurrent_backward(x, h0, c0, w_ih, w_hh, hs, cs, gates, dhs, dh_last, dx, dh0, dc0, dw_ih,
                       dw_hh, db_ih, db_hh, dgates, dgh, dh, dc, cell, reverse=False,
                       accumulate=False, add_dx=False):
    """Back-propagation through time of :func:`recurrent_forward` (same x, h0, c0, hs, cs,
    gates). dhs (N, T, H): gradient w.r.t. every hs (or None), dh_last (N, H): w.r.t. the final
    state (or None). dx (N, T, F) written (added to when ``add_dx``), dh0, dc0 (N, H) written
    (each may be None); dw_ih, dw_hh,
    db_ih, db_hh written or added (``accumulate``). Work: dgates (N, T, G*H), dgh (N, G*H),
    dh (N, H), dc (N, H) (LSTM; else None)."""
    cell = Cell(cell)
    n, t_steps, _ = x.shape
    h_size = h0.shape[1]
    order = list(_order(t_steps, reverse))
    dh[...] = 0 if dh_last is None else dh_last
    if cell == Cell.LSTM:
        dc[...] = 0
    if not accumulate:
        for g in (dw_ih, dw_hh, db_ih, db_hh):
            g[...] = 0
    for step in range(t_steps - 1, -1, -1):
        t = order[step]
        h_prev = h0 if step == 0 else hs[:, order[step - 1]]
        d = dh + (0 if dhs is None else dhs[:, t])      # everything reaching hs[:, t]
        if cell == Cell.RNN_TANH:
            dgh[...] = d * (1 - hs[:, t] ** 2)
            dgates[:, t] = dgh
        elif cell == Cell.RNN_RELU:
            dgh[...] = d * (hs[:, t] > 0)
            dgates[:, t] = dgh
        elif cell == Cell.LSTM:
            c_prev = c0 if step == 0 else cs[:, order[step - 1]]
            i, f, g, o = (gates[:, t, k * h_size:(k + 1) * h_size] for k in range(4))
            tc = np.tanh(cs[:, t])
            dct = dc + d * o * (1 - tc ** 2)
            dgh[...] = np.concatenate([dct * g * i * (1 - i), dct * c_prev * f * (1 - f),
                                       dct * i * (1 - g ** 2), d * tc * o * (1 - o)], axis=1)
            dgates[:, t] = dgh
            dc[...] = dct * f
        else:
            r, z, nn, hn = (gates[:, t, k * h_size:(k + 1) * h_size] for k in range(4))
            dn = d * (1 - z) * (1 - nn ** 2)
            dr = dn * hn * r * (1 - r)
            dz = d * (h_prev - nn) * z * (1 - z)
            dgates[:, t] = np.concatenate([dr, dz, dn], axis=1)
            dgh[...] = np.concatenate([dr, dz, dn * r], axis=1)
        dw_hh += h_prev.T @ dgh
        db_hh += dgh.sum(axis=0)
        dh[...] = dgh @ w_hh.T + (d * gates[:, t, h_size:2 * h_size] if cell == Cell.GRU else 0)
    x2, dg2 = x.reshape(n * t_steps, -1), dgates.reshape(n * t_steps, -1)
    dw_ih += x2.T @ dg2
    db_ih += dg2.sum(axis=0)
    if dx is not None:
        dx[...] = (dx if add_dx else 0) + (dg2 @ w_ih.T).reshape(dx.shape)
    if dh0 is not None:
        dh0[...] = dh
    if dc0 is not None:
        dc0[...] = dc


def embedding_forward(ids, w, out):
    """out[n, t] = w[ids[n, t]]: ids (N, T) integer ids (in an integer or float array),
    w (V, D), out (N, T, D)."""
    out[...] = w[ids.astype(np.int64)]


def embedding_backward(ids, dy, dw, accumulate=False):
    """dw (V, D) written or added: row v gets the sum of dy[n, t] (N, T, D) where ids == v."""
    if not accumulate:
        dw[...] = 0
    np.add.at(dw, ids.astype(np.int64).ravel(), dy.reshape(-1, dw.shape[1]))
