"""Recurrent layers: RNN, LSTM and GRU over batch-first sequences, trained by back-propagation
through time (the kernels' ``recurrent_forward`` / ``recurrent_backward``).

Gates and equations are PyTorch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (see
:mod:`fastnn.kernels.reference.recurrent`); the weights are PyTorch's transposed, as Dense's,
so PyTorch weights load one to one: ``weight_ih = weight_ih_l0.T``, ``weight_hh =
weight_hh_l0.T``, ``bias_ih = bias_ih_l0``, ``bias_hh = bias_hh_l0`` (``*_reverse`` for the
backward direction, from PyTorch's ``*_l0_reverse``). Stack layers by putting them in sequence
(the first with ``return_sequences=True``).
"""
import math

import numpy as np

from ..errors import ShapeError
from ..kernels.contract import Cell
from .base import Layer, shape_text


class _Recurrent(Layer, abstract=True):
    """A recurrent layer: ``cell`` unrolled over the T steps of each sequence.

    Parameters
    ----------
    input_size, hidden_size : int
        F and H.
    return_sequences : bool, default False
        Output every step's state, (N, T, D*H), or only the final state, (N, D*H).
    bidirectional : bool, default False
        Also read each sequence backwards (D = 2): the features are the forward direction's H
        then the backward direction's H (as PyTorch); the final state of the backward
        direction is the one after reading step 0 (PyTorch's ``h_n``).

    Shapes: x ``(N, T, input_size)`` float32/float64. Parameters, per direction (the backward
    direction's named ``*_reverse``): weight_ih ``(input_size, G*H)``, weight_hh ``(H, G*H)``,
    bias_ih, bias_hh ``(G*H,)``, G the cell's number of gates; initialised uniform in
    ``(-1/sqrt(H), 1/sqrt(H))`` as PyTorch.

    Attributes
    ----------
    initial_state : None or tuple of arrays of shape (D, N, H)
        None starts every sequence from zeros; ``(h0,)`` (``(h0, c0)`` for the LSTM) starts
        from the given host arrays (no gradient flows into them).
    """

    work_attrs = ("_x", "_runs")

    def __init__(self, input_size, hidden_size, return_sequences=False, bidirectional=False):
        super().__init__()
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.return_sequences, self.bidirectional = bool(return_sequences), bool(bidirectional)
        self.initial_state = None

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    def parameter_shapes(self):
        g, h = self.cell.gates * self.hidden_size, self.hidden_size
        shapes = []
        for suffix in ("", "_reverse")[:self.directions]:
            shapes += [(f"weight_ih{suffix}", (self.input_size, g)), (f"weight_hh{suffix}", (h, g)),
                       (f"bias_ih{suffix}", (g,)), (f"bias_hh{suffix}", (g,))]
        return shapes

    def initial_values(self, rng, dtype, next_activation=None):
        k = 1.0 / math.sqrt(self.hidden_size)
        return [rng.uniform(-k, k, shape).astype(dtype) for _, shape in self.parameter_shapes()]

    def check_input(self, shape):
        if len(shape) != 2 or shape[1] != self.input_size:
            raise ShapeError(f"{self!r} expected input of shape (N, T, {self.input_size}) "
                             f"(batch, steps, features), got {shape_text(shape)}")

    def output_shape(self, input_shape):
        width = self.directions * self.hidden_size
        return (input_shape[0], width) if self.return_sequences else (width,)

    # -- forward / backward -----------------------------------------------------------------
    def _start(self, be, n, dtype):
        """Per direction (h0, c0) on ``be``: zeros, or ``initial_state``."""
        lstm, h, d = self.cell == Cell.LSTM, self.hidden_size, self.directions
        if self.initial_state is None:
            key = ("zeros", be.NAME, n, np.dtype(dtype).str)
            zeros = self._buffers.get(key)
            if zeros is None:
                zeros = self._buffers[key] = be.zeros((n, h), dtype)
            return [(zeros, zeros if lstm else None)] * d
        arrays = [np.asarray(a, dtype=dtype) for a in self.initial_state]
        if len(arrays) != (2 if lstm else 1) or any(a.shape != (d, n, h) for a in arrays):
            raise ShapeError(f"{self!r}.initial_state must be {'(h0, c0)' if lstm else '(h0,)'} "
                             f"with arrays of shape ({d}, {n}, {h}) (directions, batch, hidden); "
                             f"got {[a.shape for a in arrays]}")
        return [tuple(be.to_device(np.ascontiguousarray(a[k])) for a in arrays) + (None,) * (not lstm)
                for k in range(d)]

    def _direction_params(self, k):
        return self.params[4 * k:4 * k + 4]

    def _half(self, a, k):
        """Direction ``k``'s features of a (..., D*H) array (the array itself when D = 1)."""
        h = self.hidden_size
        return a if self.directions == 1 else a[..., k * h:(k + 1) * h]

    def forward(self, be, x, training=False):
        """Every step's state (N, T, D*H) or the final one (N, D*H); see the class docstring."""
        n, t, _ = x.shape
        h, d, cell, dt = self.hidden_size, self.directions, self.cell, x.dtype
        seq = self.return_sequences
        out = self.buffer(be, "out", (n, t, d * h) if seq else (n, d * h), dt)
        hw = self.buffer(be, "hw", (n, cell.gates * h), dt)
        self._x, self._runs = x, []
        for k, (h0, c0) in enumerate(self._start(be, n, dt)):
            hs = self._half(out, k) if seq else self.buffer(be, f"hs{k}", (n, t, h), dt)
            cs = self.buffer(be, f"cs{k}", (n, t, h), dt) if cell == Cell.LSTM else None
            gates = self.buffer(be, f"gates{k}", (n, t, cell.work_width(h)), dt)
            w_ih, w_hh, b_ih, b_hh = (p.data for p in self._direction_params(k))
            be.recurrent_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs,
                                 None if seq else self._half(out, k), gates, hw, cell, k == 1)
            self._runs.append((h0, c0, hs, cs, gates))
        return out

    def backward(self, be, dy, need_dx=True, accumulate=False):
        """BPTT of the last forward: parameter gradients written (added when ``accumulate``);
        returns the gradient w.r.t. x (N, T, F), or None without ``need_dx``."""
        x, cell, h = self._x, self.cell, self.hidden_size
        n, t, _ = x.shape
        dt = x.dtype
        dx = self.buffer(be, "dx", x.shape, dt) if need_dx else None
        dgates = self.buffer(be, "dgates", (n, t, cell.gates * h), dt)
        dgh = self.buffer(be, "dgh", (n, cell.gates * h), dt)
        dh = self.buffer(be, "dh", (n, h), dt)
        dc = self.buffer(be, "dc", (n, h), dt) if cell == Cell.LSTM else None
        for k, (h0, c0, hs, cs, gates) in enumerate(self._runs):
            w_ih, w_hh, b_ih, b_hh = self._direction_params(k)
            dpart = self._half(dy, k)
            be.recurrent_backward(x, h0, c0, w_ih.data, w_hh.data, hs, cs, gates,
                                  dpart if self.return_sequences else None,
                                  None if self.return_sequences else dpart, dx, None, None,
                                  w_ih.grad, w_hh.grad, b_ih.grad, b_hh.grad, dgates, dgh, dh, dc,
                                  cell, k == 1, accumulate, k == 1)
        return dx

    def final_state(self, be):
        """Host copies of the final states of the last forward: ``(h_n,)`` or, for the LSTM,
        ``(h_n, c_n)``, each (D, N, H) float (the backward direction's after reading step 0),
        the ``initial_state`` that continues the sequences (e.g. when sampling)."""
        states = []
        for pos in (2, 3)[:1 + (self.cell == Cell.LSTM)]:
            states.append(np.stack([be.to_host(run[pos])[:, 0 if k == 1 else -1]
                                    for k, run in enumerate(self._runs)]))
        return tuple(states)

    def get_config(self):
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "return_sequences": self.return_sequences, "bidirectional": self.bidirectional}


class RNN(_Recurrent):
    """Elman recurrent network (PyTorch's ``nn.RNN``): ``h(t) = act(x(t) W_ih + b_ih +
    h(t-1) W_hh + b_hh)``, act ``nonlinearity`` "tanh" or "relu". G = 1; see
    :class:`_Recurrent` for the arguments and shapes."""

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", return_sequences=False,
                 bidirectional=False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, return_sequences, bidirectional)
        self.nonlinearity = nonlinearity

    @property
    def cell(self):
        return Cell.RNN_TANH if self.nonlinearity == "tanh" else Cell.RNN_RELU

    def get_config(self):
        return {**super().get_config(), "nonlinearity": self.nonlinearity}


class LSTM(_Recurrent):
    """Long short-term memory (PyTorch's ``nn.LSTM``), gates i, f, g, o (G = 4):
    ``c(t) = f * c(t-1) + i * g``, ``h(t) = o * tanh(c(t))``. See :class:`_Recurrent`."""

    cell = Cell.LSTM


class GRU(_Recurrent):
    """Gated recurrent unit (PyTorch's ``nn.GRU``), gates r, z, n (G = 3):
    ``n = tanh(x W_in + b_in + r * (h(t-1) W_hn + b_hn))``, ``h(t) = (1 - z) * n + z * h(t-1)``.
    See :class:`_Recurrent`."""

    cell = Cell.GRU
