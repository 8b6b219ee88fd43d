"""RNN, LSTM and GRU: forward, input and parameter gradients against PyTorch's nn.RNN / nn.LSTM /
nn.GRU with the weights copied (float64, 1e-9), against central differences, and every backend
against the reference kernels; the course's hand-unrolled 3-step tanh RNN; gradient clipping on
a long sequence. The cuda backend runs in the simulator with tiny shapes."""
import numpy as np
import pytest

import fastnn as fn
from fastnn.kernels.contract import Cell
from support import SIMULATED, check_layer_grad, forward_backward, host

KINDS = {"rnn_tanh": lambda f, h, **kw: fn.RNN(f, h, "tanh", **kw),
         "rnn_relu": lambda f, h, **kw: fn.RNN(f, h, "relu", **kw),
         "lstm": fn.LSTM, "gru": fn.GRU}


def _sizes(backend, seed):
    """(N, T, F, H): random sizes, tiny on the CUDA simulator."""
    rng = np.random.default_rng(seed)
    if backend == "cuda" and SIMULATED:
        return 2, int(rng.integers(1, 4)), 2, int(rng.integers(1, 4))
    return (int(rng.integers(1, 6)), int(rng.integers(1, 13)), int(rng.integers(1, 7)),
            int(rng.integers(1, 8)))


def _torch_module(torch, kind, layer, model):
    """PyTorch's layer with ``layer``'s weights copied (transposed), batch first, float64."""
    cls = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
           "gru": torch.nn.GRU}[kind]
    extra = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
    net = cls(layer.input_size, layer.hidden_size, batch_first=True,
              bidirectional=layer.bidirectional, **extra).double()
    with torch.no_grad():
        for p in layer.params:
            name = p.name.split(".")[-1]
            base, _, rev = name.partition("_reverse")
            value = torch.tensor(host(p.data))
            getattr(net, base + "_l0" + ("_reverse" if name.endswith("_reverse") else "")).copy_(
                value.T if base.startswith("weight") else value)
    return net


def _torch_run(torch, net, layer, x, r, h0=None):
    """Output, dx and the parameter gradients (in fastnn's order and layout) of sum(out * r)."""
    xt = torch.tensor(x, requires_grad=True)
    if h0 is None:
        seq, state = net(xt)
    else:
        seq, state = net(xt, tuple(torch.tensor(a) for a in h0) if len(h0) == 2
                         else torch.tensor(h0[0]))
    h_n = state[0] if isinstance(state, tuple) else state
    if layer.return_sequences:
        out = seq
    else:
        out = torch.cat([h_n[k] for k in range(h_n.shape[0])], dim=1)
    (out * torch.tensor(r)).sum().backward()
    grads = []
    for p in layer.params:
        name = p.name.split(".")[-1]
        base = name.replace("_reverse", "")
        g = getattr(net, base + "_l0" + ("_reverse" if name.endswith("_reverse") else "")).grad
        grads.append((g.T if base.startswith("weight") else g).numpy())
    return out.detach().numpy(), xt.grad.numpy(), grads


CASES = [(kind, seq, bi, seed) for kind in KINDS for seq in (False, True) for bi in (False, True)
         for seed in (1, 2)]


@pytest.mark.parametrize("kind, return_sequences, bidirectional, seed", CASES)
def test_matches_torch(backend, torch, kind, return_sequences, bidirectional, seed):
    """Forward, dL/dx and every parameter gradient of L = sum(out * R) equal PyTorch's to 1e-9
    (float64), for random sizes (T 1-12), both output kinds, one and two directions."""
    if backend == "cuda" and SIMULATED and seed == 2:
        pytest.skip("one size per case in the CUDA simulator (slow)")
    n, t, f, h = _sizes(backend, seed + 10 * len(CASES))
    layer = KINDS[kind](f, h, return_sequences=return_sequences, bidirectional=bidirectional)
    model = fn.Sequential([layer], backend=backend, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, f))
    out_shape = (n,) + model.output_shape((t, f))
    r = rng.standard_normal(out_shape)
    out, gx, grads = forward_backward(model, x, r)
    t_out, t_gx, t_grads = _torch_run(torch, _torch_module(torch, kind, layer, model), layer, x, r)
    np.testing.assert_allclose(out, t_out, rtol=1e-9, atol=1e-9, err_msg="forward")
    np.testing.assert_allclose(gx, t_gx, rtol=1e-9, atol=1e-9, err_msg="dL/dx")
    for p, g, tg in zip(layer.params, grads, t_grads):
        np.testing.assert_allclose(g, tg, rtol=1e-9, atol=1e-9, err_msg=p.name)


@pytest.mark.parametrize("kind", KINDS)
def test_initial_state_matches_torch(backend, torch, kind):
    """A given initial state (h0, and c0 for the LSTM) gives PyTorch's output and gradients."""
    n, t, f, h = 2, 3, 2, 3
    layer = KINDS[kind](f, h, return_sequences=True, bidirectional=True)
    model = fn.Sequential([layer], backend=backend, dtype="float64", seed=3)
    rng = np.random.default_rng(3)
    state = tuple(rng.standard_normal((2, n, h)) for _ in range(1 + (kind == "lstm")))
    layer.initial_state = state
    x, r = rng.standard_normal((n, t, f)), rng.standard_normal((n, t, 2 * h))
    out, gx, grads = forward_backward(model, x, r)
    t_out, t_gx, t_grads = _torch_run(torch, _torch_module(torch, kind, layer, model), layer, x, r,
                                      h0=state)
    np.testing.assert_allclose(out, t_out, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gx, t_gx, rtol=1e-9, atol=1e-9)
    for g, tg in zip(grads, t_grads):
        np.testing.assert_allclose(g, tg, rtol=1e-9, atol=1e-9)
    final = layer.final_state(model.be)
    assert final[0].shape == (2, n, h)
    np.testing.assert_allclose(final[0][0], out[:, -1, :h], rtol=1e-12)
    np.testing.assert_allclose(final[0][1], out[:, 0, h:], rtol=1e-12)


GRAD_CASES = [("rnn_tanh", True, False), ("rnn_relu", False, True), ("lstm", False, False),
              ("lstm", True, True), ("gru", True, False), ("gru", False, True)]


@pytest.mark.parametrize("kind, return_sequences, bidirectional", GRAD_CASES)
def test_central_differences(backend, kind, return_sequences, bidirectional):
    """dL/dx and every parameter gradient against float64 central differences."""
    n, t, f, h = (2, 2, 2, 2) if backend == "cuda" and SIMULATED else (2, 4, 3, 3)
    check_layer_grad(lambda: KINDS[kind](f, h, return_sequences=return_sequences,
                                         bidirectional=bidirectional), (n, t, f), backend, seed=4)


@pytest.mark.parametrize("kind", KINDS)
def test_backend_matches_reference_kernels(backend, kind):
    """Each backend's recurrent kernels give the reference's outputs and gradients (float64
    and float32), a stacked bidirectional pair with an LSTM on top."""
    if backend == "numpy":
        pytest.skip("the reference itself")
    tiny = backend == "cuda" and SIMULATED
    n, t, f, h = (2, 3, 2, 2) if tiny else (5, 7, 4, 6)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, t, f))
    for dtype, tol in (("float64", 1e-11), ("float32", 2e-5)):
        results = []
        for name in ("numpy", backend):
            model = fn.Sequential([KINDS[kind](f, h, return_sequences=True, bidirectional=True),
                                   fn.LSTM(2 * h, h)], backend=name, dtype=dtype, seed=6)
            out, gx, _ = forward_backward(model, x.astype(dtype), np.ones((n, h), dtype))
            results.append((out, gx, host(model.flat_grads)))
        for what, a, b in zip(("forward", "dx", "parameter gradients"), *results):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol, err_msg=f"{backend} {dtype} {what}")


def test_hand_unrolled_three_step_tanh_rnn():
    """The course's recurrent network a(t) = b + W h(t-1) + U x(t), h(t) = tanh(a(t)),
    o(t) = c + V h(t), softmax outputs and the summed negative log-likelihood, its gradient by
    back-propagation through time written out step by step (the unfolded graph, 3 steps),
    against fastnn's RNN + TimeDistributed(Dense) + CrossEntropyLoss on (N, T, C) logits."""
    rng = np.random.default_rng(7)
    n_in, n_h, n_out, steps = 3, 4, 5, 3
    U, W, V = (rng.standard_normal(s) * 0.5 for s in ((n_h, n_in), (n_h, n_h), (n_out, n_h)))
    b, c = rng.standard_normal(n_h) * 0.1, rng.standard_normal(n_out) * 0.1
    x, y = rng.standard_normal((steps, n_in)), np.array([1, 4, 0])
    # forward, unrolled
    h = {-1: np.zeros(n_h)}
    yhat, loss = {}, 0.0
    for t in range(steps):
        a = b + W @ h[t - 1] + U @ x[t]
        h[t] = np.tanh(a)
        o = c + V @ h[t]
        yhat[t] = np.exp(o - o.max()) / np.exp(o - o.max()).sum()
        loss -= np.log(yhat[t][y[t]])
    # backward through time: grad_o(t) = yhat(t) - e_y(t); grad_h(tau) = V^T grad_o(tau);
    # grad_h(t) = W^T diag(1 - h(t+1)^2) grad_h(t+1) + V^T grad_o(t)
    grad_o = {t: yhat[t] - np.eye(n_out)[y[t]] for t in range(steps)}
    grad_h = {steps - 1: V.T @ grad_o[steps - 1]}
    for t in range(steps - 2, -1, -1):
        grad_h[t] = W.T @ ((1 - h[t + 1] ** 2) * grad_h[t + 1]) + V.T @ grad_o[t]
    da = {t: (1 - h[t] ** 2) * grad_h[t] for t in range(steps)}
    grads = {"c": sum(grad_o.values()), "b": sum(da.values()),
             "V": sum(np.outer(grad_o[t], h[t]) for t in range(steps)),
             "W": sum(np.outer(da[t], h[t - 1]) for t in range(steps)),
             "U": sum(np.outer(da[t], x[t]) for t in range(steps))}

    model = fn.Sequential([fn.RNN(n_in, n_h, return_sequences=True),
                           fn.TimeDistributed(fn.Dense(n_h, n_out))], backend="numpy",
                          dtype="float64")
    rnn, dense = model.layers[0], model.layers[1].layer
    model.set_weights(np.concatenate([U.T.ravel(), W.T.ravel(), b, np.zeros(n_h),
                                      V.T.ravel(), c]))
    ce = fn.CrossEntropyLoss()
    model.zero_grad()
    value = ce(model.forward(x[None], training=True), y[None])
    model.backward(ce.backward())
    # CrossEntropyLoss averages over the N*T = 3 steps; the course's loss is their sum
    np.testing.assert_allclose(value * steps, loss, rtol=1e-12)
    for got, want in ((rnn.weight_ih.grad.T, grads["U"]), (rnn.weight_hh.grad.T, grads["W"]),
                      (rnn.bias_ih.grad, grads["b"]), (rnn.bias_hh.grad, grads["b"]),
                      (dense.weight.grad.T, grads["V"]), (dense.bias.grad, grads["c"])):
        np.testing.assert_allclose(got * steps, want, rtol=1e-10, atol=1e-12)


def test_clipping_by_global_norm_tames_a_long_sequence():
    """An RNN with large recurrent weights on a 200-step sequence has exploding gradients; the
    optimizer's clip_grad_norm scales them to the given global norm before the step (as
    torch.nn.utils.clip_grad_norm_), and the step stays finite and of that size."""
    rng = np.random.default_rng(8)
    layer = fn.RNN(2, 8, "relu")
    model = fn.Sequential([layer, fn.Dense(8, 1)], backend="numpy", dtype="float64", seed=8)
    layer.weight_hh.data[...] = 1.5 * np.eye(8) + 0.01 * rng.standard_normal((8, 8))
    x, y = np.abs(rng.standard_normal((4, 200, 2))), np.ones((4, 1))
    mse = fn.MSELoss()
    model.zero_grad()
    mse(model.forward(x, training=True), y)
    model.backward(mse.backward())
    norm = np.sqrt(sum(np.sum(p.grad ** 2) for p in model.parameters()))
    assert norm > 1e10, f"the gradient did not explode (norm {norm:.3g}); the test needs it to"
    before = model.get_weights()
    opt = fn.optim.SGD(model.parameters(), lr=1.0, clip_grad_norm=1.0)
    opt.step()
    step = np.linalg.norm(model.get_weights() - before)
    np.testing.assert_allclose(step, 1.0, rtol=1e-5)


def test_shapes_errors_and_save_load(tmp_path):
    """Output shapes, the error for a wrong input, the cell codes, and a save/load round trip."""
    model = fn.Sequential([fn.GRU(3, 4, return_sequences=True, bidirectional=True),
                           fn.LSTM(8, 5), fn.Dense(5, 2)], backend="numpy", seed=9)
    assert model.output_shape((6, 3)) == (2,)
    assert [p.shape for p in model.layers[0].params[:4]] == [(3, 12), (4, 12), (12,), (12,)]
    assert model.layers[0].params[4].name.endswith("weight_ih_reverse")
    assert (Cell.RNN_TANH.gates, Cell.LSTM.gates, Cell.GRU.gates) == (1, 4, 3)
    with pytest.raises(fn.errors.ShapeError, match=r"\(N, T, 3\)"):
        model.forward(np.zeros((2, 6, 4)))
    with pytest.raises(ValueError, match="nonlinearity"):
        fn.RNN(2, 2, "sigmoid")
    x = np.random.default_rng(9).standard_normal((2, 6, 3)).astype(np.float32)
    want = model.predict(x)
    model.save(tmp_path / "m.npz")
    loaded = fn.Sequential.load(tmp_path / "m.npz")
    for saved, back in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(back.data, saved.data)
    # Same weights; the predictions may differ in the last float32 bit, because BLAS picks its
    # kernel by the buffers' alignment, which differs between the two models' flat buffers.
    np.testing.assert_allclose(loaded.predict(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cuda_launches_per_step(monkeypatch, kind):
    """On the cuda backend an LSTM/GRU over T steps launches T + 1 kernels forward (+1 for the
    final state) and 2T + 4 backward, as kernels/cuda/recurrent.py documents."""
    if "cuda" not in fn.available_backends():
        pytest.skip("no cuda backend here")
    if SIMULATED:
        from numba.cuda.simulator.kernel import FakeCUDAKernel as Kernel
    else:
        from numba.cuda.dispatcher import _LaunchConfiguration as Kernel
    count, original = [0], Kernel.__call__

    def counted(self, *args):
        count[0] += not SIMULATED or not self._device      # device functions are no launches
        return original(self, *args)

    n, t, f, h = 2, 3, 2, 2
    be = fn.get_backend("cuda")
    layer = KINDS[kind](f, h)
    fn.Sequential([layer], backend="cuda", dtype="float64", seed=0)    # binds its parameters
    x = be.to_device(np.random.default_rng(0).standard_normal((n, t, f)))
    dy = be.to_device(np.ones((n, h)))
    layer.forward(be, x)                   # buffers made, kernels compiled
    monkeypatch.setattr(Kernel, "__call__", counted)
    layer.forward(be, x)
    assert count[0] == t + 2
    count[0] = 0
    layer.backward(be, dy, need_dx=True)
    assert count[0] == 2 * t + 4


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_backward_overwrites_whatever_the_gradient_buffers_held(backend, kind):
    """Without accumulate, backward writes every gradient (and dx) whatever the buffers held
    before: NaN left in them (as uninitialised device memory may hold) does not leak in."""
    cell = {"rnn": fn.RNN, "lstm": fn.LSTM, "gru": fn.GRU}[kind]
    model = fn.Sequential([fn.Embedding(7, 3), cell(3, 4, return_sequences=True),
                           fn.TimeDistributed(fn.Dense(4, 7))], backend=backend, seed=0)
    ids = np.random.default_rng(0).integers(0, 5, (3, 4))       # ids 5, 6 never occur
    loss = fn.CrossEntropyLoss().bind(model.be)
    clean = []
    for poison in (False, True):
        if poison:
            model.be.copy_into(model.flat_grads, np.full(model.flat_grads.shape, np.nan, model.dtype))
        out = model.forward(ids, training=True)
        loss.compute(out, model.be.to_device(np.roll(ids, 1, axis=1)))
        model.backward_batch(loss.grad, need_input_grad=True, accumulate=False)
        clean.append(host(model.flat_grads).copy())
    assert np.isfinite(clean[1]).all()
    np.testing.assert_array_equal(clean[1], clean[0])
