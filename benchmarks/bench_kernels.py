"""pytest-benchmark suite: each accelerated kernel against its NumPy reference, one group per op.

    python -m pytest benchmarks/bench_kernels.py --benchmark-group-by=group

Shapes are those of the 784-400-100-10 MLP at batch 32 (float32).
"""
import numpy as np
import pytest

import fastnn as fn

BACKENDS = [b for b in fn.available_backends() if b in ("numpy", "cpu")]
B, F_IN, F_OUT, K = 32, 784, 400, 10
rng = np.random.default_rng(0)


def arr(*shape):
    return rng.standard_normal(shape).astype(np.float32)


CASES = {
    "dense_act_forward": lambda be: (be.dense_act_forward, (arr(B, F_IN), arr(F_IN, F_OUT), arr(F_OUT),
                                                            arr(B, F_OUT), "relu")),
    "dense_act_backward": lambda be: (be.dense_act_backward, (arr(B, F_IN), arr(F_IN, F_OUT), arr(B, F_OUT),
                                                              arr(B, F_OUT), arr(B, F_OUT), None,
                                                              arr(F_IN, F_OUT), arr(F_OUT), "relu")),
    "cross_entropy_loss": lambda be: (be.cross_entropy_loss, (arr(B, K), rng.integers(0, K, B), arr(B, K))),
    "softmax_forward": lambda be: (be.softmax_forward, (arr(B, K), arr(B, K))),
    "sgd_step": lambda be: (be.sgd_step, (arr(355110), arr(355110), None, 0.1)),
    "sgd_momentum_step": lambda be: (lambda p, g, v: be.sgd_step(p, g, v, 0.1, momentum=0.9),
                                     (arr(355110), arr(355110) * 1e-3, arr(355110))),
    "take_rows": lambda be: (be.take_rows, (arr(50000, F_IN), rng.permutation(50000)[:B], arr(B, F_IN))),
    "count_correct": lambda be: (be.count_correct, (arr(B, K), rng.integers(0, K, B))),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(CASES))
def test_kernel(benchmark, op, backend):
    benchmark.group = op
    fn_, args = CASES[op](fn.get_backend(backend))
    fn_(*args)                                            # compile / warm up
    benchmark(fn_, *args)
