"""Embedding, TimeDistributed, cross-entropy on sequences (N, T, C), the char-RNN model and
free-running sampling: against PyTorch (float64), central differences, on every backend."""
import numpy as np
import pytest

import fastnn as fn
from fastnn import sampling
from support import check_layer_grad, check_loss_grad, forward_backward, host


def test_embedding_matches_torch(backend, torch):
    """Rows looked up, and repeated ids' gradients summed, as torch.nn.Embedding."""
    rng = np.random.default_rng(0)
    model = fn.Sequential([fn.Embedding(5, 3)], backend=backend, dtype="float64", seed=0)
    ids = np.array([[0, 4, 4], [2, 0, 4]])
    dy = rng.standard_normal((2, 3, 3))
    out, gx, (gw,) = forward_backward(model, ids, dy)
    emb = torch.nn.Embedding(5, 3).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(host(model.layers[0].weight.data)))
    t_out = emb(torch.tensor(ids))
    (t_out * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gw, emb.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(gx, np.zeros(ids.shape))


def test_embedding_rejects_bad_ids():
    model = fn.Sequential([fn.Embedding(5, 3)], backend="numpy")
    with pytest.raises(ValueError, match=r"in \[0, 4\]"):
        model.forward(np.array([[1, 5]]))
    with pytest.raises(fn.errors.ShapeError, match=r"\(N, T\)"):
        model.forward(np.zeros((2, 3, 1)))


def test_time_distributed_dense(backend):
    """TimeDistributed(Dense) + Tanh (fused) on (N, T, F): each step is Dense's own output;
    input and weight gradients against central differences."""
    model = check_layer_grad(lambda: [fn.TimeDistributed(fn.Dense(3, 2)), fn.Tanh()],
                             (2, 4, 3), backend, seed=1)
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    out = host(model.forward(x))
    layer = model.layers[0].layer
    want = np.tanh(x.reshape(8, 3) @ host(layer.weight.data) + host(layer.bias.data))
    np.testing.assert_allclose(out, want.reshape(2, 4, 2), rtol=1e-12)


def test_cross_entropy_on_sequences(backend, torch):
    """(N, T, C) logits with (N, T) labels: PyTorch's mean over all N*T, and its gradient."""
    rng = np.random.default_rng(2)
    logits, labels = rng.standard_normal((3, 4, 5)), rng.integers(0, 5, (3, 4))
    loss = fn.CrossEntropyLoss()
    value = check_loss_grad(loss, logits.shape, labels, backend=backend, out=logits)
    lt = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(lt.reshape(12, 5), torch.tensor(labels).reshape(12))
    want.backward()
    assert value == pytest.approx(want.item(), rel=1e-12)
    loss(fn.get_backend(backend).to_device(logits), labels)     # the gradient at logits itself
    np.testing.assert_allclose(host(loss.backward()), lt.grad.numpy(), rtol=1e-10, atol=1e-15)
    with pytest.raises(fn.errors.ShapeError, match="per sample and step"):
        loss(fn.get_backend(backend).to_device(logits), labels[:, :3])


def test_char_rnn_trains_and_samples(backend):
    """Teacher forcing on a slice of the bundled text lowers the loss; sampling is
    reproducible by seed, draws from the vocabulary, and restores the layers' state."""
    text = sampling.load_text()
    assert text.startswith("First Citizen:") and len(text) > 100_000
    small = backend == "cuda"
    x, y, vocab = sampling.char_sequences(text[:400 if small else 4000], 8 if small else 20)
    model = fn.models.char_rnn(len(vocab), embedding_dim=4 if small else 16,
                               hidden_size=4 if small else 32, backend=backend, seed=0)
    opt = fn.optim.Adam(model.parameters(), lr=1e-2)
    history = model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt,
                        epochs=2 if small else 5, batch_size=16, seed=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    a = fn.sample(model, "Fir", 12, temperature=0.8, seed=3, vocab=vocab)
    assert a == fn.sample(model, "Fir", 12, temperature=0.8, seed=3, vocab=vocab)
    assert len(a) == 12 and set(a) <= set(vocab)
    greedy = fn.sample(model, [vocab.index("F")], 5, temperature=0)
    assert greedy.shape == (5,) and greedy.dtype == np.int64
    assert model.layers[1].initial_state is None


def test_sample_feeds_back_its_own_outputs():
    """Free running step by step with carried state equals re-reading the whole generated
    prefix at each step (greedy), so the state hand-over is exact."""
    model = fn.models.char_rnn(7, embedding_dim=3, hidden_size=5, cell="gru", backend="numpy",
                               dtype="float64", seed=4)
    drawn = fn.sample(model, [1, 2], 6, temperature=0)
    seq = [1, 2]
    for _ in range(6):
        seq.append(int(np.argmax(host(model.forward(np.array([seq])))[0, -1])))
    np.testing.assert_array_equal(drawn, seq[2:])
    with pytest.raises(ValueError, match="bidirectional"):
        fn.sample(fn.Sequential([fn.Embedding(3, 2), fn.LSTM(2, 3, bidirectional=True)]), [0], 2)
