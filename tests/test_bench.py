"""The epoch benchmark (``fastnn bench`` / benchmarks/epoch.py) runs every contender in turns
and reports sensible figures; a smoke test on a few hundred images (no timing is asserted:
speed is checked by running the benchmark, not by tests)."""
import numpy as np
import pytest

import fastnn as fn
from fastnn.cli import load_benchmark
from support import FASHION_MNIST_DIR as DATA, needs_fashion_mnist, torch_installed

bench = load_benchmark("epoch")

pytestmark = needs_fashion_mnist


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
def test_bench_runs_every_contender(model):
    with_torch = torch_installed()
    before = fn.get_num_threads()
    try:
        results = bench.run(model, batch_sizes=(32,), data_dir=DATA, samples=96, repeat=2,
                            backends=["numpy", "cpu"], torch=with_torch, n_threads=1, settle=0)
    finally:
        fn.set_num_threads(before)
    (r,) = results
    expected = {"fastnn-numpy", "fastnn-cpu"}
    if with_torch:
        expected |= {"pytorch", "pytorch+metrics"}
    if model == "mlp":
        expected |= {"gemm-only", "gemm-only (openblas threads)", "gemm-only (split over numba threads)"}
        assert r["seconds"]["gemm-only"] == min(t for k, t in r["seconds"].items() if k.startswith("gemm-only ("))
    assert set(r["seconds"]) == expected
    assert all(np.isfinite(t) and t > 0 for t in r["seconds"].values())
    text = bench.report(results, peak=100.0)
    assert "fastnn-cpu / fastnn-numpy" in text


def test_gemm_baseline_counts_the_epochs_flops():
    # one step of 32 rows through 784-400-100-10: 3 forward, 2 input-gradient, 3 weight GEMMs
    shapes = bench.epoch_gemm_shapes(32, 32)
    assert len(shapes) == 8
    assert bench.epoch_flops(32, 32) == 2 * 32 * (784 * 400 + 400 * 100 + 100 * 10) * 3 - 2 * 32 * 784 * 400


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
def test_layer_split_times_every_layer_of_an_epoch(model):
    """``fastnn bench --split``: one epoch layer by layer (the MLP too, which fit would run
    compiled), every layer's forward and backward timed, their sum within the epoch's total."""
    x, y = bench.load_images("fashion-mnist", DATA, 96)
    total, spent = bench.layer_split(model, "cpu" if "cpu" in fn.available_backends() else "numpy",
                                     x, y, 32)
    n_steps = len(bench.build(model, "numpy").steps)
    assert {phase for _, phase in spent} == {"forward", "backward"}
    assert len({layer for layer, _ in spent}) == n_steps
    assert 0 < sum(spent.values()) <= total
    lines = bench.split_lines(total, spent)
    assert len(lines) == len(spent) + 1 and "loss, optimizer" in lines[-1]
