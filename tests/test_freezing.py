"""Freezing (``layer.trainable = False``, Keras's meaning): a frozen layer's weights stay bit
for bit what they were through fit on every backend (the compiled path falls back to the
loop), the layers below it still learn (it passes gradients down), a frozen bottom runs no
backward at all, and the flag is saved with the model and pickled."""
import pickle

import numpy as np
import pytest

import fastnn as fn
from support import host


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _mlp(backend, seed=0):
    return fn.Sequential([fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 5), fn.Tanh(), fn.Dense(5, 2)],
                         backend=backend, seed=seed)


def _layer_weights(model, i):
    return [host(p.data).copy() for p in model.layers[i].params]


@pytest.mark.parametrize("frozen", [0, 2], ids=["bottom", "middle"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adadelta"])
def test_frozen_weights_are_bit_identical_after_fit(backend, frozen, optimizer):
    model = _mlp(backend)
    model.layers[frozen].trainable = False
    before = [_layer_weights(model, i) for i in (0, 2, 4)]
    model.fit(*_data(), optimizer=optimizer, epochs=2, batch_size=16, verbose=0, seed=0)
    after = [_layer_weights(model, i) for i in (0, 2, 4)]
    for i, (b, a) in enumerate(zip(before, after)):
        same = all(np.array_equal(u, v) for u, v in zip(b, a))
        assert same == (2 * i == frozen), f"layer {2 * i}: unchanged={same}"


def test_the_compiled_epoch_falls_back_to_the_loop_and_says_why():
    model = _mlp("cpu")
    model.layers[2].trainable = False
    before = _layer_weights(model, 2)
    model.fit(*_data(), epochs=1, verbose=0, seed=0)           # compiled=None: the loop
    assert all(np.array_equal(a, b) for a, b in zip(before, _layer_weights(model, 2)))
    with pytest.raises(ValueError, match="frozen layers"):
        model.fit(*_data(), epochs=1, verbose=0, compiled=True)


def test_a_frozen_bottom_runs_no_backward(backend):
    model = _mlp(backend)
    model.layers[0].trainable = False
    model.fit(*_data(), optimizer="sgd", epochs=1, batch_size=16, verbose=0, seed=0)
    for p in model.layers[0].params:          # never written: still the zeros they started as
        assert not np.any(host(p.grad)), p.name


def test_a_frozen_conv_layer_under_a_trained_head(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = fn.Sequential([fn.Conv2D(1, 2, 3), fn.ReLU(), fn.Conv2D(2, 2, 3, groups=2),
                           fn.GlobalAvgPool2D(), fn.Dense(2, 3)], backend=backend, seed=0)
    model.layers[2].trainable = False
    before = [_layer_weights(model, i) for i in (0, 2, 4)]
    model.fit(x, y, optimizer="adam", epochs=2, batch_size=8, verbose=0, seed=0)
    changed = [not all(np.array_equal(u, v) for u, v in zip(b, _layer_weights(model, i)))
               for b, i in zip(before, (0, 2, 4))]
    assert changed == [True, False, True]


def test_an_optimizer_holding_frozen_parameters_is_refused():
    model = _mlp("numpy")
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    model.layers[2].trainable = False
    with pytest.raises(ValueError, match=r"layer 2 .* is frozen .* model.trainable_parameters"):
        model.fit(*_data(), optimizer=opt, epochs=1, verbose=0)
    ok = fn.optim.SGD(model.trainable_parameters(), lr=0.1)
    assert len(model.trainable_parameters()) == 4
    model.fit(*_data(), optimizer=ok, epochs=1, verbose=0)


def test_the_flag_is_saved_and_pickled(tmp_path):
    model = _mlp("numpy")
    model.layers[2].trainable = False
    model.save(tmp_path / "m.npz")
    loaded = fn.Sequential.load(tmp_path / "m.npz")
    copied = pickle.loads(pickle.dumps(model))
    for m in (loaded, copied):
        assert [layer.trainable for layer in m.layers] == [True, True, False, True, True]
        before = _layer_weights(m, 2)
        m.fit(*_data(), epochs=1, verbose=0, seed=0)
        assert all(np.array_equal(a, b) for a, b in zip(before, _layer_weights(m, 2)))
