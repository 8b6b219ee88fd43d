"""The benchmark matrix (``fastnn bench --matrix`` / benchmarks/matrix.py) runs its cases and
reports sensible figures: a smoke test on 64 images, one round (no timing is asserted)."""
import math

import numpy as np
import pytest

import fastnn as fn
from fastnn.cli import load_benchmark

matrix = load_benchmark("matrix")

from support import FASHION_MNIST_DIR as DATA, needs_fashion_mnist as needs_data  # noqa: E402
from support import torch_installed as _torch_installed  # noqa: E402


def _tiny_cases():
    mlp = matrix.Case("tiny MLP Adam b16", matrix.mlp_arch((784, 16, 10), dropout=0.2), "adam", 16)
    cnn = matrix.Case("tiny CNN predict", (("conv", 1, 4, 3, 1), ("relu",), ("maxpool", 2),
                                           ("flatten",), ("dense", 4 * 14 * 14, 10)),
                      batch_size=matrix.PREDICT_BATCH, mode="predict", compute_bound=True)
    return [mlp, cnn]


@needs_data
@pytest.mark.parametrize("with_torch", [False, pytest.param(True, marks=pytest.mark.torch)])
def test_matrix_runs_cases_and_summarises(with_torch):
    if with_torch and not _torch_installed():
        pytest.skip("torch not installed")
    cases = _tiny_cases()
    before = fn.get_num_threads()
    try:
        rows = matrix.run(cases, samples=64, repeat=1, n_threads=1, torch=with_torch,
                          data_dir=DATA, settle=0)
    finally:
        fn.set_num_threads(before)
    assert [r["case"] for r in rows] == [c.name for c in cases]
    for r in rows:
        assert np.isfinite(r["fastnn_s"]) and r["fastnn_s"] > 0
        assert r["samples"] == 64 and r["gflop"] > 0
        if with_torch:
            assert np.isfinite(r["torch_s"]) and r["torch_s"] > 0
            assert r["ratio"] == pytest.approx(r["fastnn_s"] / r["torch_s"])
            assert r["fastnn"]["parameters"] == r["torch"]["parameters"]   # the same model
        else:
            assert r["torch_s"] is None and r["ratio"] is None
    s = matrix.summary(rows)
    machine = matrix.machine_info(1)
    text = matrix.report(rows, machine, peaks={"float32": 100.0})
    md = matrix.report(rows, machine, peaks={"float32": 100.0}, markdown=True)
    for r in rows:
        assert r["case"] in text and f"| {r['case']} |" in md
    assert machine["cpu"] in text and "OPENBLAS_CORETYPE" in text
    if with_torch:
        ratios = [r["ratio"] for r in rows]
        assert s["geomean"] == pytest.approx(math.exp(np.mean(np.log(ratios))))
        worst = max(rows, key=lambda r: r["ratio"])
        assert s["worst"] == (worst["case"], worst["ratio"])
        (line,) = [ln for ln in text.splitlines() if ln.startswith("geometric mean")]
        assert f"{s['geomean']:.2f}" in line and f"worst case: {worst['case']}" in line
    else:
        assert s["geomean"] is None and "fastnn times only" in text


def test_summary_of_given_ratios():
    case = matrix.CASES[0]
    rows = [matrix.make_row(case, f, t, 1e9, 100) for f, t in ((1.0, 2.0), (3.0, 1.5), (2.0, 2.0))]
    rows[0]["case"], rows[1]["case"], rows[2]["case"] = "a", "b", "c"
    s = matrix.summary(rows)
    assert [r["ratio"] for r in rows] == [0.5, 2.0, 1.0]
    assert s["geomean"] == pytest.approx(1.0) and s["worst"] == ("b", 2.0) and s["best"] == ("a", 0.5)
    assert rows[0]["fastnn_gflops"] == pytest.approx(1.0)
    missing = matrix.make_row(case, 1.0, None, 1e9, 100)
    assert missing["ratio"] is None and matrix.summary([missing])["geomean"] is None


def test_every_case_builds_the_same_model_on_both_sides():
    """Each case's fastnn model and its PyTorch twin have the same parameter count, and the
    FLOP count of the MLP is the textbook one."""
    mlp = fn.models.mlp((784, 400, 100, 10), backend="numpy")
    per_sample = 2 * (784 * 400 + 400 * 100 + 100 * 10)
    assert matrix.flops_per_sample(mlp, (1, 28, 28), "predict") == per_sample
    assert matrix.flops_per_sample(mlp, (1, 28, 28), "train") == 3 * per_sample
    lenet = fn.models.lenet5(backend="numpy")
    conv = 2 * 1 * 25 * 6 * 28 * 28 + 2 * 6 * 25 * 16 * 10 * 10
    assert matrix.flops_per_sample(lenet, (1, 28, 28), "predict") == conv + 2 * (400 * 120 + 120 * 84 + 84 * 10)
    for case in matrix.CASES:
        model = matrix.build_fastnn(case)
        assert model.dtype == np.dtype(case.dtype)
        if _torch_installed():
            assert sum(p.size for p in model.parameters()) == matrix.torch_param_count(
                matrix.build_torch(case)), case.name
    names = [c.name for c in matrix.CASES]
    assert len(names) == len(set(names))
    assert matrix.select(matrix.CASES, ["lenet"]) == [c for c in matrix.CASES if "LeNet" in c.name]

