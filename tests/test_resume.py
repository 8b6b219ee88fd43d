"""Exact resume (issue 19 item 3): fit(initial_epoch=k) from a ModelCheckpoint file continues
the random stream (shuffle, dropout), the schedules and the History, bit for bit; the same for
a CLI run killed with SIGKILL after epoch 1 of 3 and resumed with --resume."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fn
from fastnn.model import read_npz
from support import HOST_BACKENDS


def data(n=160, features=784, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features), dtype=np.float32), rng.integers(0, 10, n)


def dropout_mlp(backend):
    """The issue's case: a 784-64 MLP with Dropout, trained with Adam."""
    return fn.Sequential([fn.Dense(784, 64), fn.ReLU(), fn.Dropout(0.3), fn.Dense(64, 10)],
                         backend=backend, seed=0)


def train(model, epochs, seed, callbacks=(), initial_epoch=0, schedule=True, **kw):
    """fit with Adam (and a per-epoch StepDecay schedule); the optimizer is built afresh on
    ``model`` and, when the model was loaded from a checkpoint, given its saved state."""
    opt = fn.optim.Adam(model.parameters(), lr=2e-3)
    if initial_epoch:
        model.load_optimizer_state(kw.pop("checkpoint"), opt)
    cbs = [fn.LearningRateScheduler(fn.optim.StepDecay(opt, step_size=1, gamma=0.5))] \
        if schedule else []
    cbs += [cb(opt) for cb in callbacks]
    history = model.fit(*data(), optimizer=opt, epochs=epochs, batch_size=32, seed=seed,
                        verbose=0, callbacks=cbs, initial_epoch=initial_epoch, **kw)
    return history, opt


def without_time(history):
    return {k: v for k, v in history.history.items() if k != "time"}


@pytest.mark.parametrize("seed", [0, None], ids=["seed", "model-stream"])
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_resumed_fit_equals_uninterrupted_bit_for_bit(backend, seed, tmp_path):
    whole_model = dropout_mlp(backend)
    whole, whole_opt = train(whole_model, 3, seed)

    path = str(tmp_path / "ckpt.npz")
    first = dropout_mlp(backend)
    train(first, 1, seed, callbacks=[lambda opt: fn.ModelCheckpoint(path, optimizer=opt)])
    resumed_model = fn.Sequential.load(path, backend=backend)
    assert resumed_model.training_state.epoch == 1
    history, opt = train(resumed_model, 3, seed, initial_epoch=1, checkpoint=path)

    np.testing.assert_array_equal(resumed_model.get_weights(), whole_model.get_weights())
    assert history.epoch == [1, 2, 3]                    # continues, numbered from k + 1
    assert without_time(history) == without_time(whole)
    assert opt.lr == whole_opt.lr == 2e-3 * 0.125         # the schedule continued


def test_resuming_without_the_training_state_replays_epoch_one(tmp_path):
    """The issue's report, as a check that the comparison above can fail: the same files
    without the training state (the generator restarts from the seed) give other weights."""
    whole = dropout_mlp("numpy")
    train(whole, 2, 0, schedule=False)
    path = str(tmp_path / "ckpt.npz")
    train(dropout_mlp("numpy"), 1, 0, callbacks=[lambda opt: fn.ModelCheckpoint(path, optimizer=opt)],
          schedule=False)
    model = fn.Sequential.load(path)
    model.training_state = None
    train(model, 2, 0, initial_epoch=1, checkpoint=path, schedule=False)
    assert np.abs(model.get_weights() - whole.get_weights()).max() > 1e-4


def test_initial_epoch_errors_name_the_problem(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    train(dropout_mlp("numpy"), 2, 0, callbacks=[lambda opt: fn.ModelCheckpoint(path, optimizer=opt)])
    model = fn.Sequential.load(path)
    with pytest.raises(ValueError, match="from epoch 2; pass initial_epoch=2"):
        train(model, 3, 0, initial_epoch=1, checkpoint=path)
    with pytest.raises(ValueError, match="seed=0"):
        train(model, 3, 5, initial_epoch=2, checkpoint=path)
    with pytest.raises(ValueError, match="1 LearningRateScheduler"):
        train(model, 3, 0, initial_epoch=2, checkpoint=path, schedule=False)
    with pytest.raises(ValueError, match="initial_epoch must be in"):
        model.fit(*data(), epochs=1, initial_epoch=2, verbose=0)


def test_initial_epoch_without_a_saved_state_only_numbers_the_epochs():
    history = dropout_mlp("numpy").fit(*data(), epochs=4, initial_epoch=2, verbose=0)
    assert history.epoch == [3, 4]


def test_training_state_is_json_in_the_file_and_survives_pickling(tmp_path):
    import pickle
    path = str(tmp_path / "ckpt.npz")
    model = dropout_mlp("numpy")
    train(model, 1, 7, callbacks=[lambda opt: fn.ModelCheckpoint(path, optimizer=opt)])
    saved = json.loads(str(read_npz(path)["training"]))
    assert saved["epoch"] == 1 and saved["seed"] == 7
    assert saved["schedules"] == [{"k": 1, "initial_lr": 2e-3}]
    assert saved["rng"] == model.training_state.rng.bit_generator.state
    assert saved["history"]["epoch"] == [1]
    copy = pickle.loads(pickle.dumps(model))
    assert copy.training_state.to_dict() == model.training_state.to_dict()


# -- the command line ------------------------------------------------------------------------

KILL_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
from fastnn import callbacks, cli
save = callbacks.ModelCheckpoint.on_epoch_end
def on_epoch_end(self, epoch, logs=None):
    save(self, epoch, logs)
    if epoch == 1:                       # right after the epoch-1 checkpoint is on disk
        os.kill(os.getpid(), signal.SIGKILL)
callbacks.ModelCheckpoint.on_epoch_end = on_epoch_end
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture
def simd_gemms(monkeypatch):
    """The cpu backend's GEMMs fixed to the SIMD kernel in this process and the subprocess (by
    default each measures its choice, which may differ between two processes)."""
    from fastnn.kernels.cpu import gemm_choice
    monkeypatch.setenv("FASTNN_GEMM", "simd")
    gemm_choice.refresh()
    yield
    monkeypatch.undo()
    gemm_choice.refresh()


def fastnn_train(args, capsys):
    """``fastnn train ARGS`` in this process; its stdout."""
    from fastnn import cli
    assert cli.main(["train", *args]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_cli_run_killed_after_epoch_one_resumes_bit_for_bit(backend, tmp_path, simd_gemms,
                                                            capsys):
    common = ["--dataset", "digits", "--epochs", "3", "--batch-size", "64", "--optimizer",
              "adam", "--lr", "0.01", "--backend", backend, "--seed", "3", "--quiet"]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT, "train", *common,
                             "--out", str(tmp_path / "run")], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, MPLBACKEND="Agg"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "Epoch 1:" in killed.stdout and "Epoch 2:" not in killed.stdout
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    assert not (tmp_path / "run" / "model.npz").exists()

    fastnn_train(common + ["--out", str(tmp_path / "whole")], capsys)
    resumed = fastnn_train(common + ["--out", str(tmp_path / "run"), "--resume", str(checkpoint)],
                           capsys)
    assert "resuming" in resumed and "Epoch 1:" not in resumed
    assert "Epoch 2:" in resumed and "Epoch 3:" in resumed

    final = {name: read_npz(tmp_path / name / "model.npz")["params"] for name in ("whole", "run")}
    np.testing.assert_array_equal(final["run"], final["whole"])
    history = {name: json.loads((tmp_path / name / "history.json").read_text())
               for name in ("whole", "run")}
    assert history["run"]["epoch"] == [1, 2, 3]
    assert history["run"]["loss"] == history["whole"]["loss"]


def test_cli_resume_of_a_file_without_training_state_is_an_error(tmp_path, capsys):
    from fastnn import cli
    path = tmp_path / "plain.npz"
    fn.models.mlp([64, 10, 10], backend="numpy").save(path)
    assert cli.main(["train", "--resume", str(path), "--epochs", "1", "--backend", "numpy",
                     "--out", str(tmp_path / "out")]) == 2
    assert "holds no training state" in capsys.readouterr().err


def test_seed_none_resumes_a_seeded_run_without_touching_the_model_stream(tmp_path):
    path = str(tmp_path / "ckpt.npz")
    train(dropout_mlp("numpy"), 1, 4, callbacks=[lambda opt: fn.ModelCheckpoint(path, optimizer=opt)])
    weights = []
    for seed in (4, None):
        model = fn.Sequential.load(path)
        own = model.rng.bit_generator.state
        train(model, 2, seed, initial_epoch=1, checkpoint=path)
        weights.append(model.get_weights())
        assert model.rng.bit_generator.state == own
    np.testing.assert_array_equal(weights[0], weights[1])
