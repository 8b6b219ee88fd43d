"""Callbacks: checkpoints (exact resume), learning-rate schedules, CSV logs, weight averaging."""
import csv

import numpy as np
import pytest

import fastnn as fn


def toy(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


def model_for(backend):
    return fn.Sequential([fn.Dense(6, 8), fn.Tanh(), fn.Dense(8, 3)], backend=backend,
                         dtype="float64", seed=4)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_checkpoint_resumed_mid_training_gives_the_same_weights(backend, tmp_path, optimizer):
    x, y = toy()
    a = model_for(backend)
    opt_a = fn.optim.get(optimizer, a.parameters(), lr=0.05)
    for epoch in range(4):
        a.fit(x, y, optimizer=opt_a, epochs=1, batch_size=16, seed=epoch, verbose=0)

    b = model_for(backend)
    opt_b = fn.optim.get(optimizer, b.parameters(), lr=0.05)
    ckpt = fn.ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", optimizer=opt_b)
    for epoch in range(2):
        b.fit(x, y, optimizer=opt_b, epochs=1, batch_size=16, seed=epoch, verbose=0, callbacks=[ckpt])
    c = fn.Sequential.load(tmp_path / "ckpt-1.npz", backend=backend)
    opt_c = fn.optim.get(optimizer, c.parameters(), lr=0.05)
    c.load_optimizer_state(tmp_path / "ckpt-1.npz", opt_c)
    for epoch in range(2, 4):
        c.fit(x, y, optimizer=opt_c, epochs=1, batch_size=16, seed=epoch, verbose=0)
    np.testing.assert_array_equal(c.get_weights(), a.get_weights())


def test_checkpoint_save_best_only_keeps_the_best_epoch(tmp_path):
    x, y = toy()
    model = model_for("numpy")
    path = tmp_path / "best.npz"
    saved = []

    class Spy(fn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved.append((logs["val_loss"], path.stat().st_mtime_ns if path.exists() else None))

    ckpt = fn.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    h = model.fit(x[:64], y[:64], lr=0.1, epochs=5, validation_data=(x[64:], y[64:]), verbose=0,
                  callbacks=[ckpt, Spy()])
    best = int(np.argmin(h.history["val_loss"]))
    restored = fn.Sequential.load(path)
    assert restored.evaluate(x[64:], y[64:])["loss"] == pytest.approx(h.history["val_loss"][best])


@pytest.mark.parametrize("per_batch", [False, True])
def test_learning_rate_scheduler_steps_the_schedule(backend, per_batch):
    x, y = toy(64)
    model = model_for(backend)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    steps = 8 if per_batch else 2
    schedule = fn.optim.LinearDecay(opt, final_lr=0.01, steps=steps, per_batch=per_batch)
    h = model.fit(x, y, optimizer=opt, epochs=3, batch_size=16, verbose=0,
                  callbacks=[fn.LearningRateScheduler(schedule)])
    # logged "lr" is the rate at the end of each epoch's batches (before the epoch-end step)
    expected = [0.055, 0.01, 0.01] if per_batch else [0.1, 0.055, 0.01]
    np.testing.assert_allclose(h.history["lr"], expected)


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    x, y = toy()
    path = tmp_path / "log.csv"
    model_for("numpy").fit(x, y, lr=0.1, epochs=3, verbose=0, validation_split=0.25,
                           callbacks=[fn.CSVLogger(path)])
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])


@pytest.mark.parametrize("decay", [None, 0.9])
def test_weight_averaging_installs_the_average_of_the_iterates(backend, decay):
    x, y = toy(64)
    model = model_for(backend)
    iterates = []

    class Recorder(fn.Callback):
        def on_batch_end(self, batch, logs=None):
            iterates.append(self.model.get_weights())

    model.fit(x, y, lr=0.1, epochs=2, batch_size=16, verbose=0,
              callbacks=[Recorder(), fn.WeightAveraging(decay=decay)])
    if decay is None:
        expected = np.mean(iterates, axis=0)
    else:
        expected = iterates[0]
        for w in iterates[1:]:
            expected = decay * expected + (1 - decay) * w
    np.testing.assert_allclose(model.get_weights(), expected, rtol=1e-12, atol=1e-12)
