"""Sequential as a user sees it: parameters and gradients, save/load, seeds, fit and its
callbacks, divergence, input errors, and an honest accuracy check on the bundled digits."""
import json
import os
import re

import numpy as np
import pytest

import fastnn as fn
from fastnn.errors import (DivergenceError, DTypeError, LabelError, ModelFileError, NonFiniteError,
                           ShapeError)
from support import host


def toy_data(n=60, seed=0):
    """(n, 4) float32 inputs and int64 labels in {0, 1, 2} that depend on the inputs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)).astype(np.int64)
    return x, y


def small_mlp(backend, seed=0, dtype="float32"):
    return fn.Sequential([fn.Dense(4, 8), fn.ReLU(), fn.Dense(8, 3)], backend=backend, dtype=dtype,
                         seed=seed)


def metrics(history):
    """History without the wall-clock times, for exact comparisons."""
    return {k: v for k, v in history.history.items() if k != "time"}


def fit_quietly(model, x, y, **kwargs):
    kwargs.setdefault("optimizer", fn.optim.SGD(model.parameters(), lr=0.1))
    kwargs.setdefault("loss", fn.CrossEntropyLoss())
    return model.fit(x, y, verbose=0, **kwargs)


# ----------------------------------------------------------------------------- parameters


def test_parameters_are_views_into_the_flat_buffers(backend):
    model = small_mlp(backend)
    params = model.parameters()
    assert [p.name for p in params] == ["0.Dense.weight", "0.Dense.bias", "2.Dense.weight", "2.Dense.bias"]
    assert [p.shape for p in params] == [(4, 8), (8,), (8, 3), (3,)]
    assert sum(p.size for p in params) == model.num_parameters() == host(model.flat_params).size
    assert [p.offset for p in params] == [0, 32, 40, 64]
    if isinstance(model.flat_params, np.ndarray):
        for p in params:
            assert np.shares_memory(p.data, model.flat_params)
            assert np.shares_memory(p.grad, model.flat_grads)
            assert not np.shares_memory(p.data, model.flat_grads)
    # writing through a view is what the model computes with
    model.be.copy_into(params[2].data, np.full((8, 3), 0.5, dtype=np.float32))
    np.testing.assert_array_equal(model.get_weights()[40:64], 0.5)


def test_zero_grad(backend):
    model = small_mlp(backend)
    x, _ = toy_data(8)
    model.forward(x, training=True)
    model.backward(model.be.to_device(np.ones((8, 3), np.float32)))
    assert np.abs(host(model.flat_grads)).sum() > 0
    model.zero_grad()
    assert not host(model.flat_grads).any()
    for p in model.parameters():
        assert not host(p.grad).any()


def test_backward_accumulates_like_pytorch(backend):
    """Two backward passes without zero_grad add up the gradients."""
    model = small_mlp(backend, dtype="float64")
    x, _ = toy_data(8)
    g = model.be.to_device(np.random.default_rng(1).standard_normal((8, 3)))
    model.zero_grad()
    model.forward(x, training=True)
    gx1 = host(model.backward(g))
    once = host(model.flat_grads)
    model.forward(x, training=True)
    gx2 = host(model.backward(g))
    np.testing.assert_allclose(host(model.flat_grads), 2 * once, rtol=1e-14)
    np.testing.assert_array_equal(gx1, gx2)       # the input gradient is not accumulated


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path, backend):
    model = fn.Sequential([fn.Flatten(), fn.Dense(4, 5, init="he_uniform"), fn.Tanh(), fn.PReLU(5),
                           fn.Dense(5, 6), fn.Maxout(2), fn.LeakyReLU(0.2), fn.Dense(3, 3),
                           fn.LogSoftmax()], backend=backend, seed=4)
    x = np.random.default_rng(0).standard_normal((7, 2, 2)).astype(np.float32)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fn.Sequential.load(str(path), backend=backend)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(loaded.get_weights(), model.get_weights())
    assert repr(loaded.layers) == repr(model.layers)
    assert loaded.dtype == model.dtype
    assert os.listdir(tmp_path) == ["m.npz"]

    with np.load(path, allow_pickle=False) as f:            # no pickle anywhere in the file
        arch = json.loads(str(f["architecture"]))
        np.testing.assert_array_equal(f["params"], model.get_weights())
    assert arch["format"] == "fastnn.Sequential"
    assert [layer["class"] for layer in arch["layers"]] == [type(l).__name__ for l in model.layers]
    assert arch["layers"][3]["config"] == {"num_parameters": 5, "init": 0.25}


def test_save_load_float64_and_optimizer_state(tmp_path, backend):
    model = small_mlp(backend, dtype="float64")
    x, y = toy_data()
    opt = fn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    fit_quietly(model, x, y, optimizer=opt, epochs=2, seed=0)
    model.save(tmp_path / "m.npz", optimizer=opt)
    loaded = fn.Sequential.load(tmp_path / "m.npz", backend=backend)
    assert loaded.dtype == np.float64
    opt2 = fn.optim.SGD(loaded.parameters(), lr=0.05, momentum=0.9)
    loaded.load_optimizer_state(tmp_path / "m.npz", opt2)
    # training resumes exactly where it stopped
    fit_quietly(model, x, y, optimizer=opt, epochs=1, seed=1)
    fit_quietly(loaded, x, y, optimizer=opt2, epochs=1, seed=1)
    np.testing.assert_array_equal(loaded.get_weights(), model.get_weights())


def test_save_is_atomic(tmp_path, monkeypatch, backend):
    model = small_mlp(backend)
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    model.set_weights(np.zeros(model.num_parameters()))

    def savez_that_fails(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", savez_that_fails)
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    with pytest.raises(OSError, match="No space left"):
        model.save(tmp_path / "new.npz")
    assert path.read_bytes() == before                     # the old model is intact
    assert os.listdir(tmp_path) == ["m.npz"]               # and no temporary file is left


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _valid_arch(model):
    return np.array(json.dumps(model.architecture()))


CORRUPTIONS = {
    "garbage": lambda path, model: path.write_bytes(b"this is not a zip file at all"),
    "empty": lambda path, model: path.write_bytes(b""),
    "truncated": lambda path, model: path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2]),
    "no-architecture": lambda path, model: _write_npz(path, params=model.get_weights()),
    "not-fastnn": lambda path, model: _write_npz(path, architecture=np.array('{"format": "keras"}'),
                                                 params=model.get_weights()),
    "bad-json": lambda path, model: _write_npz(path, architecture=np.array("{not json"),
                                               params=model.get_weights()),
    "pickled-object": lambda path, model: _write_npz(path, architecture=np.array([{"a": 1}], dtype=object),
                                                     params=model.get_weights()),
    "wrong-size": lambda path, model: _write_npz(path, architecture=_valid_arch(model),
                                                 params=np.zeros(5, np.float32)),
    "unknown-layer": lambda path, model: _write_npz(
        path, params=model.get_weights(), architecture=np.array(json.dumps(
            {**model.architecture(), "layers": [{"class": "Conv9D", "config": {}}]}))),
}




def _edit_architecture(edit):
    """A corruption that saves a valid model file whose architecture ``edit(arch)`` changed."""
    def corrupt(path, model):
        arch = model.architecture()
        edit(arch)
        _write_npz(path, architecture=np.array(json.dumps(arch)), params=model.get_weights())
    return corrupt


CORRUPTIONS.update({
    "bad-layer-config": _edit_architecture(lambda a: a["layers"][0]["config"].update(bogus=1)),
    "bad-dtype": _edit_architecture(lambda a: a.update(dtype="int8")),
    "no-layers": _edit_architecture(lambda a: a.pop("layers")),
})
CORRUPTION_CASES = sorted(CORRUPTIONS)


@pytest.mark.parametrize("kind", CORRUPTION_CASES)
def test_corrupt_model_file_raises_model_file_error_naming_the_file(tmp_path, kind):
    model = small_mlp("numpy")
    path = tmp_path / "broken-model.npz"
    model.save(path)
    CORRUPTIONS[kind](path, model)
    with pytest.raises(ModelFileError) as info:
        fn.Sequential.load(str(path))
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_model_file():
    with pytest.raises(FileNotFoundError, match="no-such-model.npz"):
        fn.Sequential.load("no-such-model.npz")


# ----------------------------------------------------------------------------- seeds


def test_same_seed_same_weights_and_history(backend):
    x, y = toy_data()
    runs = []
    for _ in range(2):
        model = small_mlp(backend, seed=3)
        initial = model.get_weights()
        history = fit_quietly(model, x, y, epochs=3, batch_size=8, seed=0,
                              validation_data=toy_data(20, seed=1))
        runs.append((initial, model.get_weights(), metrics(history)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]
    assert set(runs[0][2]) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}


def test_different_seed_different_weights(backend):
    a, b = small_mlp(backend, seed=0), small_mlp(backend, seed=1)
    assert not np.array_equal(a.get_weights(), b.get_weights())
    x, y = toy_data()
    fit_quietly(a, x, y, epochs=1, seed=0)
    c = small_mlp(backend, seed=0)
    fit_quietly(c, x, y, epochs=1, seed=1)          # same start, other shuffling
    assert not np.array_equal(a.get_weights(), c.get_weights())


def test_fit_seed_none_continues_the_models_stream(backend):
    """seed=None: two fits of one epoch are one fit of two epochs (the shuffling goes on where
    it stopped), while a fixed seed repeats the first epoch's order."""
    x, y = toy_data()
    one_plus_one = small_mlp(backend, seed=5)
    fit_quietly(one_plus_one, x, y, epochs=1, batch_size=8, seed=None)
    after_first = one_plus_one.get_weights()
    fit_quietly(one_plus_one, x, y, epochs=1, batch_size=8, seed=None)

    two = small_mlp(backend, seed=5)
    fit_quietly(two, x, y, epochs=2, batch_size=8, seed=None)
    np.testing.assert_array_equal(one_plus_one.get_weights(), two.get_weights())

    repeated = small_mlp(backend, seed=5)
    fit_quietly(repeated, x, y, epochs=1, batch_size=8, seed=7)
    fit_quietly(repeated, x, y, epochs=1, batch_size=8, seed=7)
    fixed = small_mlp(backend, seed=5)
    fit_quietly(fixed, x, y, epochs=2, batch_size=8, seed=7)
    assert not np.array_equal(repeated.get_weights(), fixed.get_weights())
    assert not np.array_equal(after_first, one_plus_one.get_weights())


# ----------------------------------------------------------------------------- fit and callbacks


def test_validation_split_holds_out_the_last_fraction(backend):
    x, y = toy_data(60)
    a = small_mlp(backend, seed=2)
    h_split = fit_quietly(a, x, y, epochs=3, batch_size=8, seed=0, validation_split=0.25)
    b = small_mlp(backend, seed=2)
    h_explicit = fit_quietly(b, x[:45], y[:45], epochs=3, batch_size=8, seed=0,
                             validation_data=(x[45:], y[45:]))
    assert metrics(h_split) == metrics(h_explicit)
    assert len(h_split.history["val_accuracy"]) == 3
    np.testing.assert_array_equal(a.get_weights(), b.get_weights())
    final = a.evaluate(x[45:], y[45:])
    assert final["loss"] == pytest.approx(h_split.history["val_loss"][-1], rel=1e-6)
    assert final["accuracy"] == h_split.history["val_accuracy"][-1]


@pytest.mark.parametrize("how", ["empty-x", "split-takes-all"])
def test_fit_without_training_samples_is_a_clear_value_error(backend, how):
    x, y = toy_data(20)
    model = small_mlp(backend)
    with np.errstate(all="ignore"), pytest.raises(Exception) as info:
        if how == "empty-x":
            fit_quietly(model, x[:0], y[:0], epochs=1)
        else:
            fit_quietly(model, x, y, epochs=1, validation_split=0.99)
    assert isinstance(info.value, ValueError)
    assert type(info.value).__module__ == "fastnn.errors", repr(info.value)   # ShapeError & co.


class EpochRecorder(fn.Callback):
    """Keeps ``model.<method>()`` at the end of every epoch, by epoch: the weights
    (``"get_weights"``) or the whole model state, weights and BatchNorm statistics
    (``"get_state"``)."""

    def __init__(self, method="get_weights"):
        self.method = method

    def on_train_begin(self, logs=None):
        self.seen = {}

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch] = getattr(self.model, self.method)()


def test_early_stopping_restores_the_best_weights(backend):
    """The validation labels are the training labels shifted by one, so the better the model
    fits the training set the worse its validation loss: the best epoch comes early."""
    x, y = toy_data(60)
    recorder, stop = EpochRecorder("get_weights"), fn.EarlyStopping(patience=2, restore_best=True)
    model = small_mlp(backend, seed=1)
    history = fit_quietly(model, x, y, epochs=30, batch_size=8, seed=0,
                          validation_data=(x, (y + 1) % 3), callbacks=[recorder, stop])
    val_loss = history.history["val_loss"]
    best = history.epoch[int(np.argmin(val_loss))]
    assert stop.best_epoch == best
    assert history.epoch[-1] == best + 2 < 30               # stopped after `patience` bad epochs
    assert stop.stopped_epoch == history.epoch[-1]
    np.testing.assert_array_equal(model.get_weights(), recorder.seen[best])
    assert not np.array_equal(model.get_weights(), recorder.seen[history.epoch[-1]])


def test_early_stopping_restores_batchnorm_statistics_too(backend):
    x, y = toy_data(60)
    recorder, stop = EpochRecorder("get_state"), fn.EarlyStopping(patience=2, restore_best=True)
    model = fn.Sequential([fn.Dense(4, 8), fn.BatchNorm(8), fn.ReLU(), fn.Dense(8, 3)],
                          backend=backend, seed=1)
    history = fit_quietly(model, x, y, epochs=30, batch_size=8, seed=0,
                          validation_data=(x, (y + 1) % 3), callbacks=[recorder, stop])
    best, last = recorder.seen[stop.best_epoch], recorder.seen[history.epoch[-1]]
    state = model.get_state()
    np.testing.assert_array_equal(state["params"], best["params"])
    assert set(state["buffers"]) == {(1, "running_mean"), (1, "running_var")}
    for key, value in state["buffers"].items():
        np.testing.assert_array_equal(value, best["buffers"][key])
        assert not np.array_equal(value, last["buffers"][key]), key


def test_get_state_and_set_state_round_trip(backend):
    model = fn.Sequential([fn.Dense(4, 8), fn.BatchNorm(8), fn.ReLU(), fn.Dense(8, 3)],
                          backend=backend, seed=1)
    before = model.get_state()
    x, y = toy_data(40)
    fit_quietly(model, x, y, epochs=2, batch_size=8, seed=0)
    trained = model.get_state()
    model.set_state(before)
    again = model.get_state()
    np.testing.assert_array_equal(again["params"], before["params"])
    for key in before["buffers"]:
        np.testing.assert_array_equal(again["buffers"][key], before["buffers"][key])
        assert not np.array_equal(trained["buffers"][key], before["buffers"][key])


def test_early_stopping_without_restore_keeps_the_last_weights(backend):
    x, y = toy_data(60)
    recorder = EpochRecorder("get_weights")
    model = small_mlp(backend, seed=1)
    history = fit_quietly(model, x, y, epochs=30, batch_size=8, seed=0,
                          validation_data=(x, (y + 1) % 3),
                          callbacks=[recorder, fn.EarlyStopping(patience=2)])
    np.testing.assert_array_equal(model.get_weights(), recorder.seen[history.epoch[-1]])


class BatchRecorder(fn.Callback):
    """Keeps the weights after each successful batch update."""

    def on_train_begin(self, logs=None):
        self.last = self.model.get_weights()

    def on_batch_end(self, batch, logs=None):
        self.last = self.model.get_weights()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_diverging_run_raises_and_keeps_finite_weights(backend, dtype):
    """A linear model on MSE with lr = 1e6 explodes geometrically; the squared error overflows
    long before the weights do, so fit must stop at that batch with finite weights."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)), rng.standard_normal((64, 1))
    model = fn.Sequential([fn.Dense(4, 1)], backend=backend, dtype=dtype, seed=0)
    recorder = BatchRecorder()
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError) as info:
            fit_quietly(model, x, y, loss=fn.MSELoss(), optimizer=fn.optim.SGD(model.parameters(), lr=1e6),
                        epochs=50, batch_size=16, seed=0, callbacks=[recorder])
    assert isinstance(info.value, DivergenceError)
    assert re.search(r"epoch \d+, batch \d+", str(info.value)), str(info.value)
    weights = model.get_weights()
    assert np.isfinite(weights).all()
    np.testing.assert_array_equal(weights, recorder.last)   # the bad batch did not update


# ----------------------------------------------------------------------------- bad input


def _dense_only(backend):
    return fn.Sequential([fn.Dense(64, 10)], backend=backend)


def _images(n=5):
    return np.random.default_rng(0).uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)


def _labels(n=5):
    return np.arange(n, dtype=np.int64) % 10


def _with_nan():
    x = _images().reshape(5, 64)
    x[2, 7] = np.nan
    return x


BAD_INPUTS = {
    # name: (call(model) that must raise, exception type, text the message must contain)
    "image-into-dense-predict": (lambda m: m.predict(_images()), ShapeError, "Flatten"),
    "image-into-dense-fit": (lambda m: fit_quietly(m, _images(), _labels()), ShapeError, "Flatten"),
    "wrong-features": (lambda m: m.predict(np.zeros((5, 63), np.float32)), ShapeError, "64"),
    "int-x-predict": (lambda m: m.predict(np.zeros((5, 64), np.int64)), DTypeError, "int64"),
    "int-x-fit": (lambda m: fit_quietly(m, np.zeros((5, 64), np.uint8), _labels()), DTypeError, "uint8"),
    "nan-x-predict": (lambda m: m.predict(_with_nan()), NonFiniteError, "NaN"),
    "nan-x-fit": (lambda m: fit_quietly(m, _with_nan(), _labels()), NonFiniteError, "NaN"),
    "inf-x-val": (lambda m: fit_quietly(m, _images().reshape(5, 64), _labels(),
                                        validation_data=(np.full((2, 64), np.inf, np.float32), _labels(2))),
                  NonFiniteError, "x_val"),
    "label-too-large": (lambda m: fit_quietly(m, _images().reshape(5, 64), _labels() + 6),
                        LabelError, "[0, 9]"),
    "label-negative": (lambda m: fit_quietly(m, _images().reshape(5, 64), _labels() - 1), LabelError, "-1"),
    "label-evaluate": (lambda m: m.evaluate(_images().reshape(5, 64), _labels() + 10), LabelError, "10"),
    "float-labels-cross-entropy": (lambda m: fit_quietly(m, _images().reshape(5, 64), _labels() * 1.0),
                                   DTypeError, "float64"),
    "float-labels-loss-call": (lambda m: fn.CrossEntropyLoss()(m.forward(_images().reshape(5, 64)),
                                                               np.zeros(5)), DTypeError, "integer"),
    "y-length-mismatch": (lambda m: fit_quietly(m, _images().reshape(5, 64), _labels(4)), ShapeError, "4"),
    "y-val-length-mismatch": (lambda m: fit_quietly(m, _images().reshape(5, 64), _labels(),
                                                    validation_data=(_images(3).reshape(3, 64), _labels(2))),
                              ShapeError, "x_val"),
    "mse-target-shape": (lambda m: fit_quietly(m, _images().reshape(5, 64), np.zeros((5, 9)),
                                               loss=fn.MSELoss()), ShapeError, "(5, 10)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_a_clear_value_error(case, backend):
    call, error, text = BAD_INPUTS[case]
    model = _dense_only(backend)
    with pytest.raises(error) as info:
        call(model)
    assert isinstance(info.value, ValueError)
    assert text in str(info.value), str(info.value)


def test_error_types_are_value_errors():
    for error in (ShapeError, DTypeError, NonFiniteError, LabelError, ModelFileError,
                  fn.errors.IDXFormatError):
        assert issubclass(error, ValueError)
    assert issubclass(DivergenceError, FloatingPointError)


# ----------------------------------------------------------------------------- digits


@pytest.mark.slow_on_simulator
def test_digits_hold_out_accuracy(backend):
    """An MLP on the bundled 8x8 digits, trained on the training split only, classifies at
    least 95% of the held-out split correctly."""
    (x_train, y_train), (x_test, y_test) = fn.datasets.load_digits_split()
    model = fn.Sequential([fn.Flatten(), fn.Dense(64, 100), fn.ReLU(), fn.Dense(100, 10)],
                          backend=backend, seed=0)
    history = model.fit(x_train, y_train, loss=fn.CrossEntropyLoss(),
                        optimizer=fn.optim.SGD(model.parameters(), lr=0.1), epochs=25,
                        batch_size=32, seed=0, verbose=0)
    result = model.evaluate(x_test, y_test)
    predicted = model.predict(x_test).argmax(axis=1)
    assert result["accuracy"] == pytest.approx(np.mean(predicted == y_test))
    assert result["accuracy"] >= 0.95, result
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert len(x_test) == 449 and len(x_train) + len(x_test) == 1797
