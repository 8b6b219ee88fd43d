"""The per-shape GEMM choice of the cpu backend (kernels/cpu/gemm_choice.py): both candidates
(the SIMD kernel, BLAS split over the threads) give NumPy's products on odd shapes and train a
Dense model to the NumPy backend's weights, in the compiled epoch and layer by layer; the
decisions are kept per machine in a JSON cache that round-trips, a corrupt cache is ignored,
and a decision does not change once made. No timing is asserted: the measurement is replaced
by a stub wherever the outcome matters."""
import json

import numpy as np
import pytest

import fastnn as fn
from fastnn.epochs import CompiledEpoch, make_epoch

pytest.importorskip("numba")     # where numba imports, the cpu backend must work: no skip


@pytest.fixture
def choice(monkeypatch, tmp_path):
    """gemm_choice with its cache in tmp_path and FASTNN_GEMM unset ('auto'); the module's
    state is restored from the real environment afterwards."""
    from fastnn.kernels.cpu import gemm_choice
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("FASTNN_GEMM", raising=False)
    gemm_choice.refresh()
    yield gemm_choice
    monkeypatch.undo()
    gemm_choice.refresh()


def _force(choice, monkeypatch, mode):
    monkeypatch.setenv("FASTNN_GEMM", mode)
    choice.refresh()


def _stub_measure(choice, monkeypatch, simd_s, blas_s, calls=None):
    def measure(product, m, n, k, dtype, parts):
        if calls is not None:
            calls.append((product, m, n, k))
        return simd_s, blas_s, "stub"
    monkeypatch.setattr(choice, "_measure", measure)


def _no_measure(choice, monkeypatch):
    def measure(*args):
        raise AssertionError("measured although the answer was known")
    monkeypatch.setattr(choice, "_measure", measure)


# (M, N, K) of x @ W: tails around the SIMD blocks, one big enough to be split over 2 threads
SHAPES = [(1, 7, 3), (9, 33, 17), (37, 53, 29), (67, 131, 97)]


@pytest.mark.parametrize("mode", ["simd", "blas"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SHAPES])
def test_both_candidates_give_numpys_products(choice, monkeypatch, shape, dtype, threads, mode):
    """x @ W + b (with and without a fused ReLU), x.T @ dz (written and accumulated), dz @ W.T,
    through the cpu backend's dense ops with the candidate forced."""
    _force(choice, monkeypatch, mode)
    be = fn.get_backend("cpu")
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    x, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    b, dy = rng.standard_normal(n).astype(dtype), rng.standard_normal((m, n)).astype(dtype)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    tol = 1e-12 * k if dtype == "float64" else 3e-6 * max(k, m) ** 0.5
    before = fn.get_num_threads()
    fn.set_num_threads(threads)
    fn.threads.use_pool("numba")
    try:
        out = np.full((m, n), np.nan, dtype)
        be.dense_forward(x, w, b, out)
        np.testing.assert_allclose(out, x64 @ w64 + b, rtol=tol, atol=tol)
        be.dense_act_forward(x, w, b, out, fn.kernels.contract.Activation.RELU)
        np.testing.assert_allclose(out, np.maximum(x64 @ w64 + b, 0), rtol=tol, atol=tol)
        dx, dw, db = np.full((m, k), np.nan, dtype), np.full((k, n), np.nan, dtype), \
            np.full(n, np.nan, dtype)
        be.dense_backward(x, w, dy, dx, dw, db)
        np.testing.assert_allclose(dw, x64.T @ dy64, rtol=tol, atol=tol)
        np.testing.assert_allclose(db, dy64.sum(0), rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, dy64 @ w64.T, rtol=tol, atol=tol)
        be.dense_backward(x, w, dy, None, dw, db, accumulate=True)
        np.testing.assert_allclose(dw, 2 * x64.T @ dy64, rtol=tol, atol=2 * tol)
    finally:
        fn.set_num_threads(before)
    made = choice.decisions()
    assert len(made) == 2 and all(d == (mode, "forced") for d in made.values())   # x@W, x.T@dz


def _train(backend, dtype, compiled, optimizer):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 20)).astype(dtype)          # batch 48: a last partial batch
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    model = fn.Sequential([fn.Dense(20, 70), fn.ReLU(), fn.Dense(70, 40), fn.Tanh(),
                           fn.Dense(40, 4)], backend=backend, dtype=dtype, seed=2)
    model.fit(x, y, optimizer=optimizer, lr=0.05, epochs=2, batch_size=48, seed=1, verbose=0,
              compiled=compiled if backend == "cpu" else None)
    return model.get_weights()


@pytest.mark.parametrize("mode", ["simd", "blas"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "loop"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forced_candidates_train_to_the_numpy_weights(choice, monkeypatch, dtype, compiled,
                                                      optimizer, mode):
    _force(choice, monkeypatch, mode)
    expected = _train("numpy", dtype, None, optimizer)
    got = _train("cpu", dtype, compiled, optimizer)
    tol = 1e-9 if dtype == "float64" else 2e-4
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", ["simd", "blas"])
def test_the_compiled_epoch_records_the_plan(choice, monkeypatch, mode):
    """FASTNN_GEMM reaches the compiled epoch's layer table (COMPILED_LAYER.gemm)."""
    _force(choice, monkeypatch, mode)
    model = fn.Sequential([fn.Dense(20, 70), fn.ReLU(), fn.Dense(70, 4)], backend="cpu",
                          dtype="float32", seed=0)
    loss = fn.CrossEntropyLoss().bind(model.be)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    x = np.zeros((64, 20), np.float32)
    xs, ys, labels = fn.training.prepare_data(model, loss, x, np.zeros(64, np.int64))
    runner = make_epoch(model, loss, opt, xs, ys, labels, 32, per_batch_callbacks=False)
    assert isinstance(runner, CompiledEpoch)
    want = choice.PLAN_FORWARD_BLAS | choice.PLAN_WEIGHT_GRAD_BLAS if mode == "blas" else 0
    assert list(runner.layers["gemm"]) == [want, want]


def test_decisions_are_cached_per_machine_and_read_back(choice, monkeypatch, tmp_path):
    calls = []
    _stub_measure(choice, monkeypatch, 3.0, 1.0, calls)           # BLAS clearly faster
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is True
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is True
    assert len(calls) == 1                                          # asked twice, timed once
    data = json.loads((tmp_path / "fastnn" / "gemm-choice.json").read_text())
    mine = data["machines"][choice.machine_key()]
    assert mine["a@b float32 64x48x40 threads=2"]["use"] == "blas"

    # a new process on this machine: the cache answers, nothing is timed
    choice.refresh()
    _no_measure(choice, monkeypatch)
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is True
    assert choice.decisions()["a@b float32 64x48x40 threads=2"] == ("blas", "cache")
    # what the cache says is obeyed, and other keys (threads, dtype, product) are separate
    mine["a@b float32 64x48x40 threads=2"]["use"] = "simd"
    (tmp_path / "fastnn" / "gemm-choice.json").write_text(json.dumps(data))
    choice.refresh()
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is False
    _stub_measure(choice, monkeypatch, 1.0, 3.0, calls)             # SIMD clearly faster
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 1) is False
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 8, 2) is False
    assert choice.use_blas(choice.WEIGHT_GRAD, 64, 48, 40, 4, 2) is False
    assert len(calls) == 4
    data = json.loads((tmp_path / "fastnn" / "gemm-choice.json").read_text())
    assert len(data["machines"][choice.machine_key()]) == 4
    # a cache made on another machine (or with other software) is not used
    data["machines"] = {"another machine": data["machines"][choice.machine_key()]}
    (tmp_path / "fastnn" / "gemm-choice.json").write_text(json.dumps(data))
    choice.refresh()
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 1) is False
    assert len(calls) == 5


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"machines": 3}', b"\x00\xff",
                                     b'{"machines": {"x": 1}}'])
def test_a_corrupt_cache_is_ignored_and_replaced(choice, monkeypatch, tmp_path, content):
    path = tmp_path / "fastnn" / "gemm-choice.json"
    path.parent.mkdir()
    path.write_bytes(content)
    _stub_measure(choice, monkeypatch, 3.0, 1.0)
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is True
    data = json.loads(path.read_text())
    assert data["machines"][choice.machine_key()]["a@b float32 64x48x40 threads=2"]["use"] == "blas"
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]   # no temporary left


def test_an_unwritable_cache_keeps_the_decision_in_memory(choice, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    (tmp_path / "file").write_text("a file where the cache folder would be")
    choice.refresh()
    _stub_measure(choice, monkeypatch, 3.0, 1.0)
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is True
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is True


def test_blas_needs_a_clear_margin(choice, monkeypatch):
    """Within MARGIN the SIMD kernel (the default) stays, so noise does not flip a choice."""
    _stub_measure(choice, monkeypatch, 1.05, 1.0)
    assert choice.use_blas(choice.FORWARD, 64, 48, 40, 4, 2) is False
    _stub_measure(choice, monkeypatch, 1.2, 1.0)
    assert choice.use_blas(choice.FORWARD, 64, 48, 41, 4, 2) is True


def test_rules_that_need_no_measurement(choice, monkeypatch):
    _no_measure(choice, monkeypatch)
    # tiny products keep the SIMD kernel; dz @ W.T has only BLAS
    assert choice.use_blas(choice.FORWARD, 16, 16, 16, 4, 2) is False
    assert choice.use_blas(choice.WEIGHT_GRAD, 4, 10, 3, 8, 1) is False
    assert choice.use_blas(choice.INPUT_GRAD, 256, 1024, 1024, 4, 2) is True
    assert choice.use_blas(choice.INPUT_GRAD, 2, 2, 2, 4, 2) is True
    _force(choice, monkeypatch, "blas")
    _no_measure(choice, monkeypatch)
    assert choice.use_blas(choice.FORWARD, 16, 16, 16, 4, 2) is True
    assert choice.layer_plan(256, 1024, 1024, np.float32, 2) == 3
    _force(choice, monkeypatch, "simd")
    assert choice.layer_plan(256, 1024, 1024, np.float32, 2) == 0
    assert choice.use_blas(choice.INPUT_GRAD, 256, 1024, 1024, 4, 2) is True
    _force(choice, monkeypatch, "fastest")
    with pytest.raises(ValueError, match="FASTNN_GEMM"):
        choice.use_blas(choice.FORWARD, 64, 64, 64, 4, 2)


def test_a_real_measurement_is_stable(choice):
    """Measured for real (small shapes, a few ms): asking again, and after the memory is
    cleared (a new process), gives the first answer; every decision is one of the two."""
    shapes = [(32, 100, 400), (100, 10, 32)]
    first = [choice.use_blas(choice.FORWARD if i == 0 else choice.WEIGHT_GRAD, *s, 4, 2)
             for i, s in enumerate(shapes)]
    again = [choice.use_blas(choice.FORWARD if i == 0 else choice.WEIGHT_GRAD, *s, 4, 2)
             for i, s in enumerate(shapes)]
    choice.refresh()
    fresh = [choice.use_blas(choice.FORWARD if i == 0 else choice.WEIGHT_GRAD, *s, 4, 2)
             for i, s in enumerate(shapes)]
    assert first == again == fresh
    assert all(how == "cache" for _, how in choice.decisions().values())


def test_shares_follow_the_splits():
    """The per-thread share timed for each candidate is what its busiest thread computes."""
    from fastnn.kernels.cpu.gemm_choice import _shares
    assert _shares(32, 400, 784, 16, 1) == ((32, 400), (32, 400))
    assert _shares(8, 8, 8, 16, 2) == ((8, 8), (8, 8))                 # not split: too small
    simd, blas = _shares(256, 1024, 1024, 16, 2)
    assert simd == (128, 1024) and blas == (128, 1024)
    simd, blas = _shares(16, 1024, 1024, 16, 2)                       # few rows: by columns
    assert simd == (16, 512) and blas == (16, 512)
    simd, blas = _shares(100, 100, 100, 8, 3)
    assert simd == (40, 100) and blas == (36, 100)           # 32 + 32 + 36 rows
