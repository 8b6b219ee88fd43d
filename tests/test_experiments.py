"""``fastnn experiment all --quick`` (issue 18): every report written with its table, plots and
machine line, the table's figures those of the recorded runs; the runner's pieces; the texts'
single-neuron learning slowdown."""
import json
import re

import numpy as np
import pytest

from fastnn import cli, experiments
from fastnn.experiments import costs, runner

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--train-size", "128", "--val-size", "128", "--backend", "cpu"]


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    assert cli.main(["experiment", "all", "--quick", "--out", str(out), *TINY]) == 0
    return out


def _table(report, first_header="data"):
    """Rows (dicts) of the first Markdown table whose first column is ``first_header``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers = [h.strip() for h in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(headers, [c.strip() for c in line.strip("|").split("|")])))
    return rows


@pytest.mark.parametrize("name", experiments.NAMES)
def test_every_report_has_table_plots_and_machine(quick_all, name):
    folder = quick_all / name
    report = (folder / "report.md").read_text()
    assert report.startswith(f"# {experiments.get(name).TITLE}")
    assert "- machine: " in report and "cores" in report and "OPENBLAS_CORETYPE=" in report
    assert "backend cpu" in report and "seeds 0" in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert len(images) >= (0 if name == "timing" else 1)
    for image in images:
        assert (folder / image).read_bytes()[:8] == PNG
    assert _table(report, "model" if name == "timing" else "data")


@pytest.mark.parametrize("name", ["costs", "init", "activations", "optimizers", "regularization",
                                  "lenet5"])
def test_table_figures_are_the_recorded_runs(quick_all, name):
    report = (quick_all / name / "report.md").read_text()
    runs = json.loads((quick_all / name / "runs.json").read_text())
    rows = _table(report)
    assert len(rows) == len(runs) == len(experiments.get(name).variants()
                                         if hasattr(experiments.get(name), "variants") else [1])
    for row, run in zip(rows, runs):
        assert row["variant"] == run["variant"] and row["data"] == "Fashion-MNIST"
        assert row["final val acc %"] == f"{100 * run['final']:.2f}"
        assert row["best val acc %"] == f"{100 * max(run['history']['val_accuracy']):.2f}"
        assert len(run["history"]["loss"]) == 1 and np.isfinite(run["history"]["loss"][0])
        assert 0 <= run["final"] <= 1
        if "bagging" not in run["variant"]:     # evaluate after fit = the last epoch's figure
            assert run["final"] == pytest.approx(run["history"]["val_accuracy"][-1])


def test_training_learns_something(quick_all):
    """One epoch on 128 images is far from the texts' figures, but a ReLU network with He
    init must beat chance (10%) clearly on Fashion-MNIST."""
    runs = json.loads((quick_all / "activations" / "runs.json").read_text())
    relu = next(r for r in runs if r["variant"] == "relu (he)")
    assert relu["final"] > 0.25


def test_timing_rows(quick_all):
    rows = _table((quick_all / "timing" / "report.md").read_text(), "model")
    backends = {r["backend"] for r in rows}
    assert {"numpy", "cpu"} <= backends
    for r in rows:
        seconds, rate = float(r["s / epoch"]), float(r["images / s"])
        assert seconds > 0 and rate == pytest.approx(128 / seconds, rel=2e-3, abs=1)


def test_seeds_give_a_spread(tmp_path):
    assert cli.main(["experiment", "lenet5", "--quick", "--seeds", "0,1", "--out", str(tmp_path),
                     *TINY]) == 0
    runs = json.loads((tmp_path / "lenet5" / "runs.json").read_text())
    assert [r["seed"] for r in runs] == [0, 1]
    assert runs[0]["history"]["loss"] != runs[1]["history"]["loss"]
    row = _table((tmp_path / "lenet5" / "report.md").read_text())[0]
    finals = 100 * np.array([r["final"] for r in runs])
    assert row["seeds"] == "2"
    assert row["final val acc %"] == (f"{finals.mean():.2f} ± {finals.std(ddof=1):.2f} "
                                      f"({finals.min():.2f}–{finals.max():.2f})")


def test_unknown_experiment_exits_2(tmp_path, capsys):
    assert cli.main(["experiment", "bogus", "--out", str(tmp_path)]) == 2
    assert "fastnn: error:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown experiment"):
        experiments.get("bogus")


def test_settings_defaults_and_checks(tmp_path):
    full = runner.Settings(out=str(tmp_path))
    assert (full.epochs, full.train_size, full.val_size) == (30, 50000, 10000)
    assert full.seeds == (0, 1, 2)
    quick = runner.Settings(out=str(tmp_path), quick=True, epochs=2)
    assert (quick.epochs, quick.train_size, quick.seeds) == (2, 256, (0,))
    with pytest.raises(ValueError, match="at least one seed"):
        runner.Settings(out=str(tmp_path), seeds=())


def test_spread_text():
    assert runner.spread([0.9]) == "90.00"
    assert runner.spread([0.9, 0.92]) == "91.00 ± 1.41 (90.00–92.00)"


def test_single_neuron_learning_slowdown():
    """The texts' example: started saturated (w = b = 2), the quadratic cost hardly moves in 30
    epochs (its gradient carries sigma'(z) ~ 0.018) while the cross-entropy cost falls
    many-fold; from w = 0.6, b = 0.9 both fall."""
    quad, out_q = costs.single_neuron("quadratic", 2.0, 2.0, 30)
    ce, out_c = costs.single_neuron("cross-entropy", 2.0, 2.0, 30)
    assert quad[0] == pytest.approx(0.5 * (1 / (1 + np.exp(-4))) ** 2)
    assert quad[-1] > 0.98 * quad[0]
    assert ce[-1] < 0.1 * ce[0]
    assert out_q > 0.97 and out_c < 0.25
    quad_fast, _ = costs.single_neuron("quadratic", 0.6, 0.9, 30)
    assert quad_fast[-1] < 0.6 * quad_fast[0]


def test_data_dir_adds_mnist_rows(tmp_path):
    """With --data-dir the experiment also runs on the IDX files found there (here a stand-in
    written from Fashion-MNIST images under MNIST's file names)."""
    from fastnn import datasets
    (x, y), (xt, yt) = datasets.load_fashion_mnist()
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    keep = np.r_[0:128, len(x) - 10000:len(x)]          # 128 training images + the validation pool
    for prefix, images, labels in (("train", x[keep], y[keep]), ("t10k", xt[:16], yt[:16])):
        datasets.write_idx(mnist / f"{prefix}-images-idx3-ubyte",
                           np.round(images[:, 0] * 255).astype(np.uint8))
        datasets.write_idx(mnist / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    assert cli.main(["experiment", "lenet5", "--quick", "--data-dir", str(mnist),
                     "--out", str(tmp_path / "out"), *TINY]) == 0
    folder = tmp_path / "out" / "lenet5"
    assert [r["data"] for r in _table((folder / "report.md").read_text())] == ["Fashion-MNIST",
                                                                               "MNIST"]
    assert (folder / "lenet5_mnist.png").read_bytes()[:8] == PNG
