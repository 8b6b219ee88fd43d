"""The cpu backend's own promises: the compiled epoch equals the layer-by-layer
loop, training allocates nothing per step, and threads are controllable."""
import tracemalloc

import numpy as np
import pytest

import fastnn as fn
from fastnn.epochs import CompiledEpoch, LoopEpoch, make_epoch

pytest.importorskip("numba")     # where numba imports, the cpu backend must work: no skip


def data(n=200, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    return x, rng.integers(0, classes, n) if classes != 4 else \
        (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)


def mlp(dtype="float64", acts=(fn.ReLU, fn.Tanh)):
    layers = [fn.Dense(12, 16), acts[0](), fn.Dense(16, 8), acts[1](), fn.Dense(8, 4)]
    return fn.Sequential(layers, backend="cpu", dtype=dtype, seed=3)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("loss", [fn.CrossEntropyLoss, fn.MSELoss])
@pytest.mark.parametrize("acts", [(fn.ReLU, fn.Tanh), (fn.Sigmoid, fn.ReLU)])
def test_compiled_epoch_equals_layer_by_layer_loop(optimizer, loss, acts):
    x, y = data()
    results = []
    for compiled in (True, False):
        model = mlp(acts=acts)
        h = model.fit(x, y, loss=loss(), optimizer=optimizer, lr=0.05, epochs=3, batch_size=16,
                      seed=1, verbose=0, compiled=compiled)
        results.append((model.get_weights(), h.history))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10, atol=1e-12)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(results[0][1][key], results[1][1][key], rtol=1e-10)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_epoch_equals_layer_by_layer_loop_on_split_gemms(threads, optimizer, dtype):
    """A network wide enough for its GEMMs to be split over the threads (and a last partial
    batch): the compiled epoch and the layer-by-layer loop agree at 1 and 2 threads."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(150, 64)).astype(dtype)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    before = fn.get_num_threads()
    fn.set_num_threads(threads)
    try:
        results = []
        for compiled in (True, False):
            model = fn.Sequential([fn.Dense(64, 256), fn.ReLU(), fn.Dense(256, 128), fn.Tanh(),
                                   fn.Dense(128, 4)], backend="cpu", dtype=dtype, seed=2)
            h = model.fit(x, y, optimizer=optimizer, lr=0.01, epochs=2, batch_size=64, seed=1,
                          verbose=0, compiled=compiled)
            results.append((model.get_weights(), h.history["loss"]))
    finally:
        fn.set_num_threads(before)
    tol = 1e-10 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=tol, atol=tol)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=tol)


def test_compiled_epoch_is_used_for_a_dense_stack():
    x, y = data()
    model = mlp()
    loss = fn.CrossEntropyLoss().bind(model.be)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    xs, ys, labels = fn.training.prepare_data(model, loss, x, y)
    runner = make_epoch(model, loss, opt, xs, ys, labels, 32, per_batch_callbacks=False)
    assert isinstance(runner, CompiledEpoch) and runner.fold_sgd
    looped = make_epoch(model, loss, opt, xs, ys, labels, 32, per_batch_callbacks=False,
                        compiled=False)
    assert isinstance(looped, LoopEpoch)
    with pytest.raises(ValueError, match="chains of Dense layers"):
        conv = fn.Sequential([fn.Conv2D(1, 2, 3), fn.Flatten(), fn.Dense(2, 4)], backend="cpu")
        conv.fit(np.zeros((4, 1, 3, 3)), np.zeros(4, np.int64), compiled=True, verbose=0)


def _allocated_during(run):
    """Peak bytes newly allocated (as tracemalloc sees NumPy and Python) while ``run()`` runs."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


@pytest.mark.parametrize("runner_cls", [CompiledEpoch, LoopEpoch])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_training_steps_allocate_nothing_after_the_first_batch(runner_cls, optimizer):
    """tracemalloc sees every NumPy array: during 5 steps nothing array-sized may appear.

    Every array of this model's step is at least 32 x 32 float32 = 4 KiB, and the threshold is
    below that; what remains is a few hundred bytes of Python objects per call that the cyclic
    garbage collector frees later. For the compiled epoch, Numba's own allocator is checked
    too: the only NRT allocations allowed are the wrappers Numba makes for the 13 array
    arguments of each compiled call (and the 3 of each separate optimizer call), so any temporary array inside the step would show.
    """
    from numba.core.runtime import _nrt_python as nrt, rtsys
    x, y = data(n=160, features=64, classes=32)
    model = fn.Sequential([fn.Dense(64, 64), fn.ReLU(), fn.Dense(64, 64), fn.Tanh(), fn.Dense(64, 32)],
                          backend="cpu", dtype="float32", seed=0)
    loss = fn.CrossEntropyLoss().bind(model.be)
    opt = fn.optim.get(optimizer, model.parameters(), lr=0.01)
    xs, ys, labels = fn.training.prepare_data(model, loss, x, y)
    if runner_cls is CompiledEpoch:
        runner = CompiledEpoch(model, loss, opt, xs, ys, labels, 32, per_batch_callbacks=False)
    else:
        runner = LoopEpoch(model, loss, opt, xs, ys, labels, 32)
    order = np.random.default_rng(0).permutation(len(xs))
    runner.run(1, order, lambda b, s: None)                      # first epoch: buffers are made
    nrt.memsys_enable_stats()
    before = rtsys.get_allocation_stats().alloc
    grown = _allocated_during(lambda: runner.run(2, order, lambda b, s: None))
    nrt_allocs = rtsys.get_allocation_stats().alloc - before
    assert grown < 4096, f"{grown} bytes allocated during 5 training steps"
    if runner_cls is CompiledEpoch:
        calls = 1 if runner.fold_sgd else runner.steps
        optimizer_arrays = 0 if runner.fold_sgd else 3 * runner.steps   # sgd_step(p, g, buf)
        assert nrt_allocs == 13 * calls + optimizer_arrays, f"Numba allocated {nrt_allocs} blocks"


def test_thread_setting_governs_blas():
    before = fn.get_num_threads()
    try:
        fn.set_num_threads(1)
        assert fn.get_num_threads() == 1
    finally:
        fn.set_num_threads(before)
    with pytest.raises(ValueError):
        fn.set_num_threads(0)


def test_cpu_backend_is_available_wherever_numba_imports():
    """A bug in kernels/cpu must fail loudly, not drop "cpu" from available_backends() (which
    would quietly skip every cpu-parametrised test)."""
    assert "cpu" in fn.available_backends()
    fn.get_backend("cpu")
