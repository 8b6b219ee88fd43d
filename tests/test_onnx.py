"""ONNX export (issue 19 item 1): every layer kind with an ONNX form passes
onnx.checker.check_model and onnxruntime's outputs equal model.predict to 1e-5 in float32,
for two batch sizes through one file (the batch axis is dynamic)."""
import numpy as np
import pytest

import fastnn as fn
from fastnn.layers import Layer

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def images(n=5, c=2, hw=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, c, hw, hw)).astype(np.float32)


def rows(n=5, f=12, seed=0):
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32)


# (id, layers, one sample's shape)
CASES = [
    ("dense-activations", lambda: [fn.Dense(12, 9), fn.Sigmoid(), fn.Dense(9, 9), fn.Tanh(),
                                   fn.Dense(9, 9), fn.ReLU(), fn.Dense(9, 6),
                                   fn.LeakyReLU(0.3), fn.Dense(6, 4)], (12,)),
    ("prelu-maxout-dropout", lambda: [fn.Dense(12, 12), fn.PReLU(12, init=0.1), fn.Maxout(3),
                                      fn.PReLU(), fn.Dropout(0.5), fn.Dense(4, 3)], (12,)),
    ("softmax", lambda: [fn.Dense(12, 5), fn.Softmax()], (12,)),
    ("log-softmax", lambda: [fn.Dense(12, 5), fn.LogSoftmax()], (12,)),
    ("batchnorm-1d", lambda: [fn.Dense(12, 6), fn.BatchNorm(6), fn.ReLU(),
                              fn.BatchNorm(6, affine=False), fn.Dense(6, 3)], (12,)),
    ("conv-pools", lambda: [fn.Conv2D(2, 3, 3, padding=1), fn.ReLU(), fn.MaxPool2D(2),
                            fn.Conv2D(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
                            fn.AvgPool2D(2, stride=1, padding=1), fn.Flatten(),
                            fn.Dense(4 * 3 * 4, 5)], (2, 8, 8)),
    ("conv-same-maxpool-padding", lambda: [fn.Conv2D(2, 3, 4, padding="same"),
                                           fn.MaxPool2D(3, stride=2, padding=1), fn.Tanh(),
                                           fn.Flatten(), fn.Dense(3 * 4 * 4, 3)], (2, 8, 8)),
    ("batchnorm-2d-prelu", lambda: [fn.Conv2D(2, 3, 3), fn.BatchNorm(3), fn.PReLU(3),
                                    fn.Flatten(), fn.Dense(3 * 6 * 6, 2)], (2, 8, 8)),
    ("lstm-sequences-then-final", lambda: [fn.LSTM(4, 5, return_sequences=True),
                                           fn.LSTM(5, 3), fn.Dense(3, 2)], (6, 4)),
    ("gru-bidirectional", lambda: [fn.GRU(4, 3, return_sequences=True, bidirectional=True),
                                   fn.GRU(6, 2, bidirectional=True), fn.Dense(4, 2)], (6, 4)),
    ("rnn-tanh-relu", lambda: [fn.RNN(4, 5, return_sequences=True, bidirectional=True),
                               fn.RNN(10, 3, nonlinearity="relu"), fn.Dense(3, 2)], (6, 4)),
    ("lstm-bidirectional-sequences", lambda: [fn.LSTM(4, 3, return_sequences=True,
                                                      bidirectional=True), fn.Flatten(),
                                              fn.Dense(6 * 6, 2)], (6, 4)),
]


def trained(layers, shape, backend="numpy", dtype="float32"):
    """A model whose weights, slopes and BatchNorm statistics are not their initial values."""
    model = fn.Sequential(layers, backend=backend, dtype=dtype, seed=1)
    rng = np.random.default_rng(2)
    model.set_weights(model.get_weights() + rng.normal(0, 0.2, model.num_parameters()))
    x = rng.normal(size=(16,) + shape)
    for _ in range(3):                  # moves the running statistics away from (0, 1)
        model.forward(x * 2 + 0.5, training=True)
    return model


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_onnxruntime_predicts_as_the_model(case, tmp_path):
    _, layers, shape = case
    model = trained(layers(), shape)
    path = tmp_path / "m.onnx"
    model.export_onnx(path, input_shape=shape)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    x = np.random.default_rng(3).normal(size=(7,) + shape).astype(np.float32)
    for n in (7, 2):                                       # one file, two batch sizes
        np.testing.assert_allclose(run_onnx(path, x[:n]), model.predict(x[:n]), rtol=0, atol=1e-5)


def test_every_layer_with_an_onnx_form_is_tested():
    from fastnn.interop.onnx import CONVERTERS
    tested = {type(layer).__name__ for _, layers, _ in CASES for layer in layers()}
    assert set(CONVERTERS) <= tested


def test_export_on_every_backend_and_the_fitted_shape(backend, tmp_path):
    x = images(6)
    model = fn.Sequential([fn.Conv2D(2, 2, 3), fn.ReLU(), fn.MaxPool2D(2), fn.Flatten(),
                           fn.Dense(2 * 3 * 3, 3)], backend=backend, seed=0)
    model.fit(x, np.arange(6) % 3, epochs=1, batch_size=3, verbose=0)
    model.export_onnx(tmp_path / "m.onnx")                 # input_shape: the fitted one
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", x), model.predict(x), atol=1e-5)


@pytest.mark.parametrize("opset", [13, 18])
def test_other_opsets(opset, tmp_path):
    model = trained([fn.Dense(12, 6), fn.Maxout(2), fn.Softmax()], (12,))
    model.export_onnx(tmp_path / "m.onnx", opset=opset)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.opset_import[0].version == opset
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", rows()), model.predict(rows()),
                               atol=1e-5)


def test_float64_model_exports_in_float64(tmp_path):
    model = trained([fn.Dense(12, 8), fn.Tanh(), fn.Dense(8, 3)], (12,), dtype="float64")
    model.export_onnx(tmp_path / "m.onnx")
    x = rows().astype(np.float64)
    out = run_onnx(tmp_path / "m.onnx", x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, model.predict(x), rtol=0, atol=1e-12)


class _Doubler(Layer):
    """A layer without an ONNX form (``_``-named: not registered for loading)."""

    def forward(self, be, x, training=False):
        return x * 2


def test_a_layer_without_an_onnx_form_is_named(tmp_path):
    model = fn.Sequential([fn.Dense(12, 4), _Doubler()], backend="numpy")
    with pytest.raises(ValueError, match=r"1: _Doubler\(\)"):
        model.export_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_an_unknown_input_shape_asks_for_it(tmp_path):
    model = fn.Sequential([fn.Conv2D(1, 2, 3), fn.Flatten()], backend="numpy")
    with pytest.raises(ValueError, match="pass input_shape"):
        model.export_onnx(tmp_path / "m.onnx")
    with pytest.raises(fn.errors.ShapeError):
        model.export_onnx(tmp_path / "m.onnx", input_shape=(3, 8, 8))


def test_a_recurrent_initial_state_is_not_exported(tmp_path):
    model = fn.Sequential([fn.GRU(4, 3)], backend="numpy")
    model.layers[0].initial_state = (np.zeros((1, 2, 3)),)
    with pytest.raises(ValueError, match="initial_state"):
        model.export_onnx(tmp_path / "m.onnx", input_shape=(5, 4))
