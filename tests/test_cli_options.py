"""The train options the course texts' runs need (issue 18), and BCEWithLogitsLoss on integer
labels: one-hot internally, argmax accuracy logged, as MSELoss."""
import json
import re

import numpy as np
import pytest

import fastnn as fn
from fastnn import cli
from fastnn.experiments.runner import mlp, standardize_per_image


# ---------------------------------------------------------------- BCE with integer labels

def _logits_and_labels(dtype, n=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)).astype(dtype), rng.integers(0, k, size=n)


def test_bce_integer_labels_equal_one_hot_targets(backend):
    out, y = _logits_and_labels(np.float64)
    be = fn.get_backend(backend)
    a, b = fn.BCEWithLogitsLoss(), fn.BCEWithLogitsLoss()
    value = a(be.to_device(out), y)
    assert value == pytest.approx(b(be.to_device(out), np.eye(4)[y]), rel=1e-12)
    np.testing.assert_allclose(be.to_host(a.backward()), be.to_host(b.backward()), rtol=1e-12)
    # the definition: mean over samples of the summed binary cross-entropy of sigmoid(out)
    p = 1 / (1 + np.exp(-out))
    t = np.eye(4)[y]
    expected = -np.mean(np.sum(t * np.log(p) + (1 - t) * np.log(1 - p), axis=1))
    assert value == pytest.approx(expected, rel=1e-10)


def test_bce_integer_labels_gradient_central_differences():
    out, y = _logits_and_labels(np.float64)
    loss = fn.BCEWithLogitsLoss()
    loss(out, y)
    grad = loss.backward().copy()
    numeric = np.zeros_like(out)
    h = 1e-6
    for idx in np.ndindex(out.shape):
        plus, minus = out.copy(), out.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (fn.BCEWithLogitsLoss()(plus, y)
                        - fn.BCEWithLogitsLoss()(minus, y)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_bce_integer_labels_against_torch(torch):
    out, y = _logits_and_labels(np.float64)
    t = torch.tensor(out, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(
        t, torch.nn.functional.one_hot(torch.tensor(y), 4).double(), reduction="sum") / len(y)
    ref.backward()
    loss = fn.BCEWithLogitsLoss()
    assert loss(out, y) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), t.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("compiled", [False, None])
def test_fit_bce_integer_labels_logs_argmax_accuracy(compiled):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    kw = dict(loss=fn.BCEWithLogitsLoss(), lr=0.5, epochs=2, batch_size=16, seed=0, verbose=0,
              compiled=compiled, validation_data=(x, y))
    a = fn.models.mlp([12, 8, 3], backend="cpu", seed=0, flatten=False)
    b = fn.models.mlp([12, 8, 3], backend="cpu", seed=0, flatten=False)
    ha = a.fit(x, y, **kw)
    hb = b.fit(x, np.eye(3, dtype=np.float32)[y], **{**kw, "validation_data": (x, np.eye(3)[y])})
    np.testing.assert_array_equal(a.get_weights(), b.get_weights())
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    assert "accuracy" in ha.history and "accuracy" not in hb.history
    argmax = np.mean(np.asarray(a.predict(x)).argmax(axis=1) == y)
    assert ha.history["val_accuracy"][-1] == pytest.approx(argmax)
    assert a.evaluate(x, y)["accuracy"] == pytest.approx(argmax)


def test_bce_label_out_of_range_names_the_problem():
    out, _ = _logits_and_labels(np.float64)
    with pytest.raises(fn.errors.LabelError):
        fn.BCEWithLogitsLoss()(out, np.full(len(out), 4))


# ---------------------------------------------------------------- helpers of the options

def test_standardize_per_image():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, 1, 4, 4)).astype(np.float32) * np.arange(1, 6).reshape(5, 1, 1, 1)
    x[2] = 0.3                                           # a constant image
    s = standardize_per_image(x)
    assert s.dtype == np.float32 and s.shape == x.shape
    flat = s.reshape(5, -1)
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(flat[keep].mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(flat[keep].std(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(flat[2], 0)


def test_mlp_builder_layers():
    m = mlp((784, 6, 5, 3), "tanh", output="sigmoid", dropout=0.5, backend="numpy")
    assert [type(layer).__name__ for layer in m.layers] == [
        "Flatten", "Dense", "Tanh", "Dropout", "Dense", "Tanh", "Dropout", "Dense", "Sigmoid"]
    m = mlp((784, 6, 3), maxout=2, backend="numpy")
    assert [p.data.shape for p in m.parameters()] == [(784, 12), (12,), (6, 3), (3,)]
    with pytest.raises(ValueError, match="unknown output"):
        mlp((4, 2), output="tanh")


def _args(*argv):
    return cli.build_parser().parse_args(["train", *argv])


def _params():
    return fn.models.mlp([4, 3], backend="numpy").parameters()


@pytest.mark.parametrize("argv, group", [
    (["--optimizer", "sgd", "--momentum", "0.5", "--l2", "1e-3"],
     {"momentum": 0.5, "weight_decay": 1e-3}),
    (["--optimizer", "adam", "--betas", "0.8,0.99", "--eps", "1e-7"],
     {"betas": (0.8, 0.99), "eps": 1e-7}),
    (["--optimizer", "rmsprop", "--alpha", "0.9", "--lr", "0.003"], {"alpha": 0.9, "lr": 0.003}),
    (["--optimizer", "nesterov"], {"momentum": 0.9, "nesterov": True}),
])
def test_optimizer_options(argv, group):
    opt = cli.make_optimizer(_args(*argv), _params())
    for key, value in group.items():
        assert opt.param_groups[0][key] == value


@pytest.mark.parametrize("argv", [["--optimizer", "adagrad", "--momentum", "0.9"],
                                  ["--optimizer", "adam", "--betas", "0.9"]])
def test_optimizer_options_that_do_not_fit(argv):
    with pytest.raises(cli.UsageError):
        cli.make_optimizer(_args(*argv), _params())


def test_init_option_normal_std_and_names():
    assert cli.parse_init(None) is None
    assert cli.parse_init("he") is fn.init.he_normal
    w = cli.parse_init("normal:1")(np.random.default_rng(0), (200, 100), 200, 100)
    assert abs(w.std() - 1) < 0.02 and abs(w.mean()) < 0.02
    for bad in ("normal:x", "bogus"):
        with pytest.raises(cli.UsageError):
            cli.parse_init(bad)


@pytest.mark.parametrize("loss, last", [("mse", "Sigmoid"), ("nll", "LogSoftmax"),
                                        ("bce_with_logits", "Dense"), ("cross_entropy", "Dense")])
def test_loss_picks_the_output_layer(loss, last):
    model = cli.build_model(_args("--loss", loss), (1, 8, 8), 10)
    assert type(model.layers[-1]).__name__ == last
    assert type(cli.make_loss(_args("--loss", loss))).__name__ == {
        "mse": "MSELoss", "nll": "NLLLoss", "bce_with_logits": "BCEWithLogitsLoss",
        "cross_entropy": "CrossEntropyLoss"}[loss]


def test_thesis_line_format():
    assert cli.thesis_line(3, {"loss": 0.1234567, "val_accuracy": 0.96591}) == \
        "epoch:  3 | acc: 96.59% | loss: 0.12346"


# ---------------------------------------------------------------- whole runs on digits

THESIS = re.compile(r"^epoch: +(\d+) \| acc: (\d+\.\d\d)% \| loss: (\d+\.\d{5})$")


def test_train_thesis_log_seeds_and_options(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--epochs", "3", "--backend", "cpu", "--quiet",
            "--loss", "bce_with_logits", "--activation", "sigmoid", "--init", "xavier",
            "--lr", "0.5", "--lr-decay", "0.5", "--dropout", "0.1", "--standardize", "per-image",
            "--log-format", "thesis", "--seeds", "0,1", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    thesis = [THESIS.match(line) for line in lines if line.startswith("epoch:")]
    assert len(thesis) == 6 and all(thesis)
    assert not any(line.startswith("Epoch ") for line in lines)
    for seed, matches in ((0, thesis[:3]), (1, thesis[3:])):
        h = json.loads((tmp_path / f"seed-{seed}" / "history.json").read_text())
        assert [int(m.group(1)) for m in matches] == [1, 2, 3]
        acc = [float(m.group(2)) for m in matches]
        assert acc == [round(100 * a, 2) for a in h["val_accuracy"]]
        assert [float(m.group(3)) for m in matches] == [round(v, 5) for v in h["loss"]]
        assert h["lr"] == pytest.approx([0.5, 0.25, 0.125])        # --lr-decay 0.5 per epoch
        model = fn.Sequential.load(tmp_path / f"seed-{seed}" / "model.npz")
        assert "Dropout" in [type(layer).__name__ for layer in model.layers]
    h0, h1 = (json.loads((tmp_path / f"seed-{s}" / "history.json").read_text()) for s in (0, 1))
    assert h0["loss"] != h1["loss"]
    summary = [line for line in lines if line.startswith("Seeds 0,1: test accuracy")]
    assert len(summary) == 1 and "±" in summary[0]


def test_bad_option_values_exit_2(tmp_path, capsys):
    for argv in (["--seeds", "0,x"], ["--init", "bogus"], ["--model", "lenet5", "--dropout", "0.5"],
                 ["--optimizer", "adagrad", "--alpha", "0.9"]):
        assert cli.main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path),
                         *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastnn: error:") and len(err.strip().splitlines()) == 1
