"""Greedy supervised pretraining (fn.pretrain.greedy_layerwise) and the stochastic curriculum
(fn.curriculum.Stochastic, fit(curriculum=...))."""
import numpy as np
import pytest

import fastnn as fn
from support import host


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)).astype(np.int64)
    return x, y


def _build(i):
    width_in = 6 if i == 0 else 12
    return [fn.Dense(width_in, 12), fn.Tanh()], [fn.Dense(12, 3)]


class _Watch(fn.Callback):
    """Records, per fit, the weights of the layers that were frozen during it, before and after."""

    def __init__(self):
        self.frozen = []

    def on_train_begin(self, logs=None):
        self.before = {i: [host(p.data).copy() for p in layer.params]
                       for i, layer in enumerate(self.model.layers) if not layer.trainable}

    def on_train_end(self, logs=None):
        for i, values in self.before.items():
            now = [host(p.data) for p in self.model.layers[i].params]
            self.frozen.append(all(np.array_equal(a, b) for a, b in zip(values, now)))


def test_greedy_layerwise_keeps_and_freezes_the_trained_blocks(backend):
    watch = _Watch()
    model, histories = fn.pretrain.greedy_layerwise(
        _build, *_data(), depth=3, epochs=3, fine_tune_epochs=2, backend=backend, seed=0,
        optimizer="adam", lr=0.01, batch_size=16, verbose=0, callbacks=[watch])
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Tanh"] * 3 + ["Dense"]
    assert len(histories) == 4
    assert watch.frozen == [True] * (2 + 4)      # stage 2: block 0; stage 3: blocks 0 and 1
    assert all(layer.trainable for layer in model.layers)
    first, last = histories[0].history["loss"][0], histories[-1].history["loss"][-1]
    assert last < first


def test_greedy_layerwise_carries_the_weights_over():
    stages = []

    def build(i):
        block, head = _build(i)
        stages.append(block[0])
        return block, head

    x, y = _data()
    model, _ = fn.pretrain.greedy_layerwise(build, x, y, depth=2, epochs=1, backend="numpy",
                                            verbose=0, batch_size=32)
    one = fn.Sequential([fn.Dense(6, 12), fn.Tanh(), fn.Dense(12, 3)], backend="numpy", seed=0)
    one.fit(x, y, epochs=1, batch_size=32, verbose=0)    # stage 1 alone, the same seed
    np.testing.assert_array_equal(host(model.layers[0].weight.data), host(one.layers[0].weight.data))


def test_greedy_layerwise_arguments():
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        fn.pretrain.greedy_layerwise(_build, *_data(), depth=0)
    model = fn.Sequential([fn.Dense(6, 3)], backend="numpy")
    with pytest.raises(ValueError, match="optimizer by name"):
        fn.pretrain.greedy_layerwise(_build, *_data(), depth=1,
                                     optimizer=fn.optim.SGD(model.parameters(), lr=0.1))


def test_stochastic_share_grows_and_each_epoch_mixes_the_pools():
    difficulty = np.arange(40.0)
    cur = fn.curriculum.Stochastic(difficulty, schedule=(0.25, 0.75))
    assert [cur.share(e, 3) for e in (1, 2, 3)] == [0.25, 0.5, 0.75]
    hard = set(range(20, 40))
    rng = np.random.default_rng(0)
    for epoch, expected in ((1, 10), (2, 20), (3, 30)):
        order = cur.order(epoch, 3, 40, rng)
        picks = [i for i in order if i in hard]
        assert order.dtype == np.int64 and len(order) == 40
        assert len(picks) == expected
        assert len(set(picks)) == min(expected, 20)             # no repeat while the pool lasts
    custom = fn.curriculum.Stochastic(difficulty, schedule=lambda e, n: 1.0)
    assert set(custom.order(1, 5, 40, rng)) == hard


def test_fit_draws_its_epochs_from_the_curriculum(backend):
    """Only class-1 examples (the "hard" half) are ever shown: the model predicts class 1."""
    x, y = _data()
    y = (y > 0).astype(np.int64)
    cur = fn.curriculum.Stochastic(y + np.arange(len(y)) * 1e-6, schedule=(1.0, 1.0),
                                   hard_fraction=y.mean())
    model = fn.Sequential([fn.Dense(6, 2)], backend=backend, seed=0)
    model.fit(x, y, optimizer="sgd", lr=0.5, epochs=3, verbose=0, seed=0, curriculum=cur)
    assert np.all(model.predict(x).argmax(axis=1) == 1)


def test_curriculum_fit_is_reproducible_and_differs_from_shuffling():
    x, y = _data()
    difficulty = np.abs(x[:, 0] * x[:, 1])
    runs = []
    for curriculum in (fn.curriculum.Stochastic(difficulty), fn.curriculum.Stochastic(difficulty),
                       None):
        model = fn.Sequential([fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 3)], backend="cpu", seed=0)
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, seed=1, curriculum=curriculum)
        runs.append(model.get_weights())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_curriculum_arguments_are_checked():
    with pytest.raises(ValueError, match="finite 1-D array"):
        fn.curriculum.Stochastic([1.0])
    with pytest.raises(ValueError, match="shares must be in"):
        fn.curriculum.Stochastic([1.0, 2.0], schedule=(0.0, 2.0))
    model = fn.Sequential([fn.Dense(6, 3)], backend="numpy")
    with pytest.raises(ValueError, match="3 difficulty scores for 96 training samples"):
        model.fit(*_data(), epochs=1, verbose=0, curriculum=fn.curriculum.Stochastic([1, 2, 3]))
