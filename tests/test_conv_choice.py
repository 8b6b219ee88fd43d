"""The per-shape choice of the cpu backend's stride-1 convolution kernel
(kernels/cpu/conv_choice.py): both candidates (the direct kernels, im2col + BLAS) give the
NumPy backend's outputs and gradients, forced or chosen; a decision is stored in the machine's
cache and read back without measuring; a bad FASTNN_CONV is named. No timing is asserted: the
measurement is replaced by a stub wherever the outcome matters."""
import json

import numpy as np
import pytest

import fastnn as fn

pytest.importorskip("numba")     # where numba imports, the cpu backend must work: no skip


@pytest.fixture
def choice(monkeypatch, tmp_path):
    """conv_choice (and gemm_choice, whose cache file it shares) with the cache in tmp_path
    and FASTNN_CONV unset; the real environment is restored afterwards."""
    from fastnn.kernels.cpu import conv_choice, gemm_choice
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("FASTNN_CONV", raising=False)
    gemm_choice.refresh()
    conv_choice.refresh()
    yield conv_choice
    monkeypatch.undo()
    gemm_choice.refresh()
    conv_choice.refresh()


def _stub(choice, monkeypatch, direct_s, im2col_s, calls):
    def measure(key):
        calls.append(key)
        return direct_s, im2col_s, "stub"
    monkeypatch.setattr(choice, "_measure", measure)


def _train_step(backend, dtype, seed=0):
    """One forward + backward of a 3 -> 5 channel 3x3 'same' convolution with ReLU: output and
    every gradient, as NumPy arrays."""
    model = fn.Sequential([fn.Conv2D(3, 5, 3, padding="same"), fn.ReLU(), fn.Conv2D(5, 4, 3)],
                          backend=backend, dtype=dtype, seed=seed)
    x = np.random.default_rng(1).standard_normal((3, 3, 7, 6)).astype(dtype)
    out = model.forward(x, training=True)
    dy = np.random.default_rng(2).standard_normal(model.be.to_host(out).shape).astype(dtype)
    model.zero_grad()
    model.backward(model.be.to_device(dy))
    return [model.be.to_host(out)] + [model.be.to_host(p.grad) for p in model.parameters()]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["direct", "im2col"])
def test_both_candidates_give_the_reference(choice, monkeypatch, mode, dtype):
    monkeypatch.setenv("FASTNN_CONV", mode)
    choice.refresh()
    got = _train_step("cpu", dtype)
    want = _train_step("numpy", dtype)
    tol = 1e-4 if dtype == "float32" else 1e-11
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    assert all(how == "forced" for _, how in choice.decisions().values())
    assert {use for use, _ in choice.decisions().values()} == {mode}


@pytest.mark.parametrize("faster", ["direct", "im2col"])
def test_measured_choice_is_stored_and_read_back(choice, monkeypatch, faster):
    calls = []
    direct_s, im2col_s = (1.0, 2.0) if faster == "direct" else (2.0, 1.0)
    _stub(choice, monkeypatch, direct_s, im2col_s, calls)
    args = ((4, 3, 8, 8), 6, 3, 3, (1, 1), (1, 1, 1, 1), 4, 2)
    assert choice.use_direct(*args) == (faster == "direct")
    assert choice.use_direct(*args) == (faster == "direct")      # held in memory
    assert len(calls) == 1
    from fastnn.kernels.cpu import gemm_choice
    with open(gemm_choice.cache_path()) as f:
        mine = json.load(f)["machines"][gemm_choice.machine_key()]
    assert [e["use"] for name, e in mine.items() if name.startswith("conv")] == [faster]
    choice.refresh()                                               # a new process: from the file
    assert choice.use_direct(*args) == (faster == "direct")
    assert len(calls) == 1
    (how,) = [h for _, h in choice.decisions().values()]
    assert how == "cache"


def test_a_near_tie_keeps_the_direct_kernel(choice, monkeypatch):
    calls = []
    _stub(choice, monkeypatch, 1.05, 1.0, calls)                   # within MARGIN
    assert choice.use_direct((2, 3, 8, 8), 4, 3, 3, (1, 1), (0, 0, 0, 0), 8, 1)


def test_unsupported_geometry_is_im2col_without_measuring(choice, monkeypatch):
    calls = []
    _stub(choice, monkeypatch, 0.0, 1.0, calls)
    assert not choice.use_direct((2, 3, 9, 9), 4, 3, 3, (2, 2), (0, 0, 0, 0), 4, 1)
    assert calls == []


def test_measurement_runs_both_candidates(choice):
    """The real measurement, on a tiny shape: two positive times and what was timed."""
    direct_s, im2col_s, timed = choice._measure(((2, 2, 6, 6), 3, 3, 3, (1, 1, 1, 1), 4, 1))
    assert direct_s > 0 and im2col_s > 0 and "images" in timed


def test_bad_mode_is_named(choice, monkeypatch):
    monkeypatch.setenv("FASTNN_CONV", "fastest")
    choice.refresh()
    with pytest.raises(ValueError, match="FASTNN_CONV='fastest'"):
        choice.use_direct((2, 3, 8, 8), 4, 3, 3, (1, 1), (1, 1, 1, 1), 4, 1)
