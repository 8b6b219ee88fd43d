"""The cpu backend's threading (kernels/cpu/parallel.py, fastnn/threads.py): a GEMM split over
threads equals one BLAS call for every transpose, split direction and part count; each backend
gets the OpenBLAS thread count it wants, and only one thread pool works at a time."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")
import fastnn as fn  # noqa: E402
from fastnn.kernels import threads  # noqa: E402
from fastnn.kernels.cpu import parallel  # noqa: E402
from fastnn.kernels.cpu.blas import gemm  # noqa: E402

# (M, N, K): wide outputs split by columns, tall ones by rows, small ones not at all
SHAPES = [(32, 400, 784), (784, 400, 32), (32, 100, 400), (5, 7, 3), (33, 250, 100),
          (400, 33, 100), (16, 16, 1000)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("n_parts", [1, 2, 3])
def test_split_gemm_equals_one_call(dtype, ta, tb, m, n, k, n_parts):
    rng = np.random.default_rng(m * 7 + n + k)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    want, got = c0.copy(), c0.copy()
    gemm(ta, tb, -0.5, a, b, 1.0, want)
    parallel.pgemm(ta, tb, -0.5, a, b, 1.0, got, n_parts)
    tol = 1e-12 if dtype == np.float64 else 1e-5 * np.sqrt(k)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_split_bounds_cover_the_output_once():
    for size in (1, 15, 16, 17, 100, 400, 784):
        for n_parts in (1, 2, 3, 4):
            bounds = [parallel.aligned_bound(size, t, n_parts) for t in range(n_parts + 1)]
            assert bounds[0] == 0 and bounds[-1] == size
            assert all(lo <= hi for lo, hi in zip(bounds, bounds[1:]))
            assert all(b % 16 == 0 for b in bounds[1:-1] if b < size)


def test_chunks_partition_the_items():
    for items in (0, 1, 5, 32):
        for n_parts in (1, 2, 3):
            spans = [parallel.chunk(items, t, n_parts) for t in range(n_parts)]
            covered = [i for lo, hi in spans for i in range(lo, hi)]
            assert covered == list(range(items))


def _blas_threads():
    counts = set(threads._call_each(threads._GETTERS))
    assert len(counts) == 1, counts              # both OpenBLAS libraries always agree
    return counts.pop()


def test_one_pool_works_at_a_time():
    """The cpu backend, layer by layer and in its compiled dense-stack epoch, runs BLAS
    single-threaded (its parallel work is Numba's); the numpy backend gives OpenBLAS the count
    of set_num_threads."""
    before = fn.get_num_threads()
    try:
        fn.set_num_threads(2)
        rng = np.random.default_rng(0)
        x, y = rng.random((64, 6), dtype=np.float32), rng.integers(0, 3, 64)
        for backend, blas_threads in (("cpu", 1), ("numpy", 2), ("cpu", 1)):
            model = fn.Sequential([fn.Dense(6, 3)], backend=backend)
            model.forward(x)
            assert _blas_threads() == blas_threads, backend
            assert fn.get_num_threads() == 2
        seen = []

        class Spy(fn.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                seen.append(_blas_threads())

        model = fn.Sequential([fn.Dense(6, 3)], backend="cpu")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[Spy()])   # the compiled dense stack
        assert seen == [1]
        with pytest.raises(ValueError, match="pool"):
            threads.use_pool("openmp")
    finally:
        fn.set_num_threads(before)


def test_parts_follow_the_thread_setting():
    before = fn.get_num_threads()
    try:
        fn.set_num_threads(1)
        assert parallel.parts() == 1 and parallel.parts(10) == 1
        fn.set_num_threads(2)
        assert parallel.parts(1) == 1 and parallel.parts(10) == min(2, threads.numba_threads())
    finally:
        fn.set_num_threads(before)


def test_openblas_default_survives_a_switch_to_numba(tmp_path):
    """Without set_num_threads, OpenBLAS's own default comes back after the cpu backend ran
    layer by layer (a fresh process: the default is read before the first switch)."""
    script = tmp_path / "default.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import fastnn as fn
        from fastnn.kernels import threads
        def blas():
            return sorted(set(threads._call_each(threads._GETTERS)))
        start = blas()
        x = np.random.rand(8, 6).astype(np.float32)
        fn.Sequential([fn.Dense(6, 3)], backend="cpu").forward(x)
        assert blas() == [1], blas()
        fn.Sequential([fn.Dense(6, 3)], backend="numpy").forward(x)
        assert blas() == start, (blas(), start)
        assert fn.get_num_threads() == start[0]
        print("ok", start)
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNN_NUM_THREADS",)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
