"""The cpu backend's optimizer kernels on buffers long enough to be split over the threads,
against the NumPy reference: every option, unused state buffers passed as None, float32 kept in
float32, at 1 and 2 threads (the split and the single-thread loop must agree with the rule)."""
import numpy as np
import pytest

import fastnn as fn

pytest.importorskip("numba")
ref = fn.get_backend("numpy")

CASES = [   # (kernel, state buffers as (name, used), keyword arguments)
    ("sgd_step", [False], dict(lr=0.1)),
    ("sgd_step", [True], dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd_step", [True], dict(lr=0.1, momentum=0.9, nesterov=True, l1=1e-3)),
    ("adagrad_step", [True], dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, eps=1e-6)),
    ("rmsprop_step", [True, False, False], dict(lr=0.01, alpha=0.9)),
    ("rmsprop_step", [True, True, True], dict(lr=0.01, momentum=0.9, centered=True,
                                              nesterov=True, weight_decay=0.1)),
    ("adam_step", [True, True, False], dict(lr=0.01, beta1=0.8)),
    ("adam_step", [True, True, False], dict(lr=0.01, weight_decay=0.1)),
    ("adam_step", [True, True, True], dict(lr=0.01, weight_decay=0.1, amsgrad=True,
                                           decoupled=True)),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kernel, used, kwargs", CASES,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(CASES)])
def test_split_kernels_match_the_reference(kernel, used, kwargs, dtype, threads):
    from fastnn.kernels.cpu import optimizers as cpu
    n = 2 * cpu.MIN_PER_THREAD + 1001               # long enough for 2 threads, odd length
    before = fn.get_num_threads()
    fn.set_num_threads(threads)
    try:
        assert cpu._split(n) == threads
        results = []
        for be in (ref, fn.get_backend("cpu")):
            rng = np.random.default_rng(7)
            p = rng.standard_normal(n).astype(dtype)
            bufs = [np.zeros(n, dtype) if u else None for u in used]
            for step in range(1, 5):
                g = rng.standard_normal(n).astype(dtype)
                extra = {"first_step": step == 1} if kernel == "sgd_step" else \
                    {} if kernel == "rmsprop_step" else {"step": step}
                getattr(be, kernel)(p, g, *bufs, **kwargs, **extra)
            assert p.dtype == np.dtype(dtype)
            results.append([p] + [b for b in bufs if b is not None])
    finally:
        fn.set_num_threads(before)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, **tol)
