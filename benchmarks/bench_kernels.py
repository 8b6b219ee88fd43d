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


# --------------------------------------------------------------------------- group "activation"
# The fused activation passes of the cpu backend on a (128, 1024) float32 block: bias + act
# (the forward pass after the GEMM) and act_backward (dz = dy * act'(y)), for relu, sigmoid and
# tanh, so that sigmoid/relu and tanh/relu can be read off one run; and the MLP's first Dense
# layer (784 -> 400 at batch 32, the shapes above: GEMM, bias + act; backward: act', the two
# GEMMs, the bias sum) with each activation, the ratio a user sees.
#
#     python -m pytest benchmarks/bench_kernels.py -k activation --benchmark-only -q

ACT_ROWS, ACT_COLS = 128, 1024
ACT_NAMES = ("relu", "sigmoid", "tanh")


def _activation_case(kind, act):
    from fastnn.kernels.contract import Activation
    from fastnn.kernels.cpu import activations as cpu_act

    be = fn.get_backend("cpu")
    act = Activation.of(act)
    code = int(act)
    r = np.random.default_rng(1)
    y = r.standard_normal((ACT_ROWS, ACT_COLS)).astype(np.float32)
    b = r.standard_normal(ACT_COLS).astype(np.float32)
    dy = r.standard_normal((ACT_ROWS, ACT_COLS)).astype(np.float32)
    if kind == "bias_act":               # in place: act(y + b) again each round, values stay O(1)
        return cpu_act.bias_act, (y, b, code)
    if kind == "act_backward":
        cpu_act.bias_act(y, b, code)     # y an output of the activation
        return cpu_act.act_backward, (y, dy, np.empty_like(dy), code)
    x = r.standard_normal((B, F_IN)).astype(np.float32)
    w = (r.standard_normal((F_IN, F_OUT)) / np.sqrt(F_IN)).astype(np.float32)
    b, y, dy = b[:F_OUT], y[:B, :F_OUT].copy(), dy[:B, :F_OUT].copy()
    if kind == "dense_act_forward":
        return be.dense_act_forward, (x, w, b, y, act)
    be.dense_act_forward(x, w, b, y, act)
    return be.dense_act_backward, (x, w, y, dy, np.empty_like(dy), np.empty_like(x),
                                   np.empty_like(w), np.empty_like(b), act)


@pytest.mark.parametrize("act", ACT_NAMES)
@pytest.mark.parametrize("kind", ["bias_act", "act_backward", "dense_act_forward",
                                  "dense_act_backward"])
def test_activation(benchmark, kind, act):
    if "cpu" not in BACKENDS:
        pytest.skip("the cpu backend is not available")
    benchmark.group = "activation"
    fn_, args = _activation_case(kind, act)
    fn_(*args)                                            # compile / warm up
    benchmark(fn_, *args)
