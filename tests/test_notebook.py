"""Notebook-friendly progress and summary (issue 19 item 4): the tqdm.auto progress bar and
Keras's verbose meanings, model.summary(input_shape), and the example notebook executed with
nbclient (Fashion-MNIST MLP and LeNet-5 on a few hundred images, curves inline)."""
import copy
import io
import re
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn
from fastnn.progress import ProgressBar
from fastnn.summary import layer_rows, summary_text
from support import needs_fashion_mnist

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "fashion_mnist.ipynb"


def toy(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


def small_model():
    return fn.Sequential([fn.Dense(5, 4), fn.ReLU(), fn.Dense(4, 3)], backend="numpy")


# -- progress and verbose ------------------------------------------------------------------------

def test_verbose_meanings(capsys):
    x, y = toy()
    small_model().fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert capsys.readouterr() == ("", "")
    for verbose in (1, 2):                  # stderr is not a terminal here: no bar for 1
        small_model().fit(x, y, epochs=2, batch_size=8, verbose=verbose)
        out, err = capsys.readouterr()
        assert re.findall(r"^Epoch (\d):", out, re.M) == ["1", "2"] and err == ""
    with pytest.raises(ValueError, match="verbose must be 0"):
        small_model().fit(x, y, verbose=3)


def test_progress_bar_when_asked_and_nothing_off_a_terminal(capsys):
    x, y = toy()
    asked = io.StringIO()
    small_model().fit(x, y, epochs=2, batch_size=8, verbose=2,
                      callbacks=[ProgressBar(enabled=True, stream=asked, mininterval=0)])
    text = asked.getvalue()
    assert "Epoch 1" in text and "Epoch 2" in text and "5/5" in text and "loss=" in text
    quiet = io.StringIO()                    # enabled=None: not a terminal, so nothing
    small_model().fit(x, y, epochs=1, batch_size=8, verbose=0,
                      callbacks=[ProgressBar(stream=quiet)])
    assert quiet.getvalue() == ""


def test_fit_tells_callbacks_its_params():
    x, y = toy()
    seen = []

    class Spy(fn.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.params)
    small_model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[Spy()])
    assert seen == [{"epochs": 3, "steps": 3, "verbose": 0}]


# -- summary --------------------------------------------------------------------------------------

def test_summary_shapes_and_counts_as_keras(capsys):
    model = fn.models.lenet5(backend="numpy")
    model.summary((1, 28, 28))
    text = capsys.readouterr().out
    assert "(None, 6, 28, 28)" in text and "(None, 16, 5, 5)" in text and "(None, 400)" in text
    total = 156 + 2416 + 48120 + 10164 + 850              # LeNet-5's 61,706 (Keras's count)
    assert model.num_parameters() == total
    assert f"Total params: {total:,}" in text and "Non-trainable params: 0" in text
    rows = layer_rows(model, (1, 28, 28))
    assert [r[1] for r in rows][-1] == (10,) and sum(r[2] for r in rows) == total


def test_summary_counts_batchnorm_statistics_as_non_trainable():
    model = fn.Sequential([fn.Dense(784, 64), fn.BatchNorm(64), fn.Dense(64, 10)],
                          backend="numpy")
    text = summary_text(model)                            # input from the leading Dense
    assert "(None, 64)" in text and "50,240" in text and "256" in text
    assert "Trainable params: 51,018" in text and "Non-trainable params: 128" in text
    assert "Total params: 51,146" in text


def test_summary_without_a_known_shape_and_with_a_wrong_one():
    model = fn.models.lenet5(backend="numpy")
    assert "?" in summary_text(model) and "pass input_shape" in summary_text(model)
    with pytest.raises(fn.errors.ShapeError):
        summary_text(model, (3, 28, 28))


# -- the notebook ---------------------------------------------------------------------------------

@needs_fashion_mnist
def test_example_notebook_runs():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    executed = copy.deepcopy(nb)
    nbclient.NotebookClient(executed, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert text.count("Total params:") == 2 and text.count("Epoch 2:") == 2
    assert any("image/png" in o.get("data", {}) for o in outputs)        # curves inline
    onnx_diff = re.search(r"onnxruntime vs predict, max \|difference\|: (\S+)", text)
    assert onnx_diff and float(onnx_diff.group(1)) < 1e-5
    assert "from_torch(to_torch()) weights equal: True" in text
    stored = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in stored), "commit the notebook executed"
