"""Conv2D, MaxPool2D, AvgPool2D and LeNet-5.

* layer gradients (input and parameters) against float64 central differences, on every backend;
* every conv / pooling kernel of every accelerated implementation against the NumPy reference,
  over many random shapes (channels, kernel, stride, padding incl. "same", odd sizes);
* forward values and autograd gradients against torch.nn.functional (when torch is installed);
* max-pool ties, shape errors, buffer reuse, initialisation, save/load and LeNet-5 shapes.
"""
import warnings

import numpy as np
import pytest

import fastnn as fn
from fastnn import convutil
from fastnn.errors import ShapeError
from fastnn.kernels import reference as ref
from fastnn.kernels.contract import Activation
from support import (BACKENDS, OTHER_BACKENDS, SIMULATED, assert_layer_matches_numpy,
                     check_layer_grad, forward_backward, host, kernel_implementations, tolerance)
from support.op_cases import run_conv, run_conv_act, run_pool

L = fn.layers

# ----------------------------------------------------------------------------- layer gradients

# name -> (factory of the layer(s), input shape (N, C, H, W))
GRAD_CASES = {
    "conv-3x3": (lambda: L.Conv2D(2, 3, 3), (2, 2, 5, 6)),
    "conv-1x1": (lambda: L.Conv2D(3, 2, 1), (2, 3, 3, 2)),
    "conv-stride2-pad1": (lambda: L.Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 7, 6)),
    "conv-rect-kernel-pairs": (lambda: L.Conv2D(1, 2, (2, 3), stride=(1, 2), padding=(1, 0)), (2, 1, 5, 7)),
    "conv-same-odd": (lambda: L.Conv2D(2, 2, 3, padding="same"), (1, 2, 5, 4)),
    "conv-same-even": (lambda: L.Conv2D(2, 2, (4, 2), padding="same"), (2, 2, 5, 5)),
    "conv-kernel-equals-image": (lambda: L.Conv2D(2, 3, (3, 4)), (2, 2, 3, 4)),
    "conv-stride-skips-pixels": (lambda: L.Conv2D(1, 2, 2, stride=3), (2, 1, 7, 8)),
    "maxpool-2": (lambda: L.MaxPool2D(2), (2, 3, 4, 6)),
    "maxpool-3-stride1-overlap": (lambda: L.MaxPool2D(3, stride=1), (2, 2, 5, 5)),
    "maxpool-odd-size-pad1": (lambda: L.MaxPool2D(3, stride=2, padding=1), (2, 2, 5, 7)),
    "maxpool-rect": (lambda: L.MaxPool2D((2, 3), stride=(1, 2)), (1, 2, 5, 7)),
    "avgpool-2": (lambda: L.AvgPool2D(2), (2, 3, 4, 6)),
    "avgpool-3-stride1-pad1": (lambda: L.AvgPool2D(3, stride=1, padding=1), (2, 2, 5, 4)),
    "avgpool-rect": (lambda: L.AvgPool2D((3, 2), stride=(2, 1)), (1, 2, 7, 5)),
    "conv+relu+maxpool+flatten+dense": (
        lambda: [L.Conv2D(1, 2, 3, padding=1), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(8, 3)],
        (2, 1, 4, 4)),
    "conv+sigmoid(fused)+conv-stride2": (
        lambda: [L.Conv2D(2, 3, 3, padding=1), L.Sigmoid(), L.Conv2D(3, 2, 2, stride=2)],
        (2, 2, 5, 5)),
    "conv+tanh+avgpool+conv": (
        lambda: [L.Conv2D(2, 3, 3, padding="same"), L.Tanh(), L.AvgPool2D(2), L.Conv2D(3, 2, 2)],
        (2, 2, 6, 6)),
}


@pytest.mark.slow_on_simulator
@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_layer_gradient(case, backend):
    factory, x_shape = GRAD_CASES[case]
    check_layer_grad(factory, x_shape, backend)


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
@pytest.mark.parametrize("other", OTHER_BACKENDS)
def test_layer_matches_numpy(case, other):
    """One forward and backward per backend (cheap even in the CUDA simulator): output, input
    gradient and parameter gradients equal the "numpy" backend's (float64, same seed)."""
    factory, x_shape = GRAD_CASES[case]
    assert_layer_matches_numpy(factory, x_shape, other, seed=5, data_seed=7)


# ----------------------------------------------------------------------------- kernels vs reference


IMPLS = kernel_implementations(cpu_modules=("conv",))
"""Every non-reference backend (whatever it exports today) and the cpu conv module itself."""


SIMULATOR_WORK = 60_000
"""Multiply-adds of a conv case, at most, for "cuda" under the simulator (LeNet-5's layers,
350 000 and more, took 15-25 s a test there)."""


def _work(case):
    """Multiply-adds of a conv case (n, c, h, w, f, kh, kw, stride, pads); 0 for a pool case."""
    if len(case) != 9:
        return 0
    n, c, h, w, f, kh, kw, stride, pads = case
    oh, ow = convutil.output_hw(h, w, (kh, kw), stride, pads)
    return n * f * oh * ow * c * kh * kw


def impl_case_params(cases, prefix, every=5):
    """(impl, case) parameters: every case for host implementations; for "cuda" in the CUDA
    simulator, where each kernel call takes a fraction of a second (all on a GPU), every
    ``every``-th of the cases of at most :data:`SIMULATOR_WORK` multiply-adds."""
    params = []
    for name, impl in IMPLS:
        small = [i for i, case in enumerate(cases) if _work(case) <= SIMULATOR_WORK]
        for i, case in enumerate(cases):
            if name == "cuda" and SIMULATED and (i not in small or small.index(i) % every):
                continue
            params.append(pytest.param(impl, case, id=f"{name}-{prefix}{i}"))
    return params


def _random_conv_cases(count, seed=0):
    """Random conv geometries with at least one output pixel; every 4th uses padding="same"."""
    rng, cases = np.random.default_rng(seed), []
    while len(cases) < count:
        n, c, f = (int(v) for v in rng.integers(1, 4, size=3))
        h, w = (int(v) for v in rng.integers(1, 10, size=2))
        kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
        if len(cases) % 4 == 3:
            stride, padding = (1, 1), "same"
        else:
            stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
            padding = tuple(int(v) for v in rng.integers(0, 3, size=4))     # top, bottom, left, right
        pads = convutil.resolve_padding(padding, (kh, kw), stride)
        oh, ow = convutil.output_hw(h, w, (kh, kw), stride, pads)
        if oh >= 1 and ow >= 1:
            cases.append((n, c, h, w, f, kh, kw, stride, pads))
    return cases


CONV_CASES = _random_conv_cases(40)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl, case", impl_case_params(CONV_CASES, "conv"))
def test_conv_kernels_match_reference(impl, case, dtype):
    _assert_conv_matches_reference(impl, case, dtype, seed=1, kind="op")


def _assert_conv_matches_reference(impl, case, dtype, seed, kind):
    """Every output of :func:`support.op_cases.run_conv` on random data equals the reference's
    (within row ``kind`` of the tolerances)."""
    n, c, h, w, f, kh, kw, stride, pads = case
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c, h, w)).astype(dtype), rng.standard_normal((f, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    oh, ow = convutil.output_hw(h, w, (kh, kw), stride, pads)
    dy = rng.standard_normal((n, f, oh, ow)).astype(dtype)
    expected, got = run_conv(ref, x, wt, b, dy, stride, pads), run_conv(impl, x, wt, b, dy, stride, pads)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], **tolerance(kind, dtype), err_msg=f"{key} {case}")


# The cpu backend's im2col path (strides other than 1): weight gradients with more than 256
# entries go through BLAS (smaller ones, like most random cases above, through dot products):
# in place with one thread part, as per-thread transposed partial sums with several.
# (n, c, h, w, f, kh, kw, stride, pads)
BLAS_WGRAD_CASES = [(1, 6, 9, 9, 16, 5, 5, (2, 1), (0, 0, 0, 0)),      # one part: in place
                    (2, 6, 9, 9, 16, 5, 5, (1, 2), (0, 0, 0, 0)),      # two parts, tight scratch
                    (5, 3, 8, 7, 12, 3, 3, (1, 2), (1, 0, 2, 1)),     # odd sizes, stride, padding
                    (4, 6, 14, 14, 16, 5, 5, (2, 2), (0, 0, 0, 0))]    # LeNet's second layer, strided

# The cpu backend's direct stride-1 kernels (fastnn.kernels.cpu.conv_direct): filter and channel
# counts around their blocks of 8, one channel, 1x1 and wide kernels, padding up to k - 1 on one
# side, outputs smaller than one vector, batches smaller than and not divisible by the threads.
DIRECT_CASES = [(3, 1, 28, 28, 6, 5, 5, (1, 1), (2, 2, 2, 2)),        # LeNet's first layer
                (3, 6, 14, 14, 16, 5, 5, (1, 1), (0, 0, 0, 0)),       # LeNet's second layer
                (1, 9, 6, 7, 17, 3, 3, (1, 1), (1, 1, 1, 1)),         # C and F past 8 and 16
                (5, 2, 5, 9, 8, 1, 1, (1, 1), (0, 0, 0, 0)),          # 1x1 kernel
                (2, 3, 4, 11, 3, 2, 6, (1, 1), (1, 0, 5, 0)),         # k - 1 on one side only
                (4, 2, 3, 3, 5, 3, 3, (1, 1), (0, 0, 0, 0)),          # a single output pixel
                (2, 4, 9, 5, 7, 4, 2, (1, 1), (0, 3, 1, 0))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl", [i for n, i in IMPLS if n != "cuda"],
                         ids=[n for n, _ in IMPLS if n != "cuda"])
@pytest.mark.parametrize("case", BLAS_WGRAD_CASES, ids=[f"blas-wgrad{i}" for i in range(4)])
def test_conv_blas_weight_gradient_matches_reference(impl, case, dtype):
    n, c, h, w, f, kh, kw, stride, pads = case
    assert f * c * kh * kw > 256 and stride != (1, 1)    # the BLAS path, not dots, not direct
    _assert_conv_matches_reference(impl, case, dtype, seed=4, kind="long sums")


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """Runs the test with fastnn's thread count set to 1, then 2 (restored afterwards)."""
    before = fn.get_num_threads()
    fn.set_num_threads(request.param)
    yield request.param
    fn.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl, case", impl_case_params(DIRECT_CASES, "direct", every=2))
def test_conv_direct_cases_match_reference(impl, case, dtype, threads):
    from fastnn.kernels.cpu import conv_direct
    n, c, h, w, f, kh, kw, stride, pads = case
    assert conv_direct.supported(stride, pads, kh, kw)
    _assert_conv_matches_reference(impl, case, dtype, seed=5, kind="long sums")


@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("impl", [i for n, i in IMPLS if n != "cuda"],
                         ids=[n for n, _ in IMPLS if n != "cuda"])
@pytest.mark.parametrize("case", [DIRECT_CASES[1], DIRECT_CASES[4], CONV_CASES[0]],
                         ids=["direct-lenet2", "direct-one-sided", "im2col"])
def test_conv_non_finite_values_land_where_the_reference_puts_them(impl, case, bad, where):
    """An Inf or NaN in x, w or dy gives Inf / NaN in exactly the outputs and gradients where
    the reference has them: the direct kernels compute positions past each row's output width
    and drop them, and must not multiply 0 by an Inf there (float64)."""
    n, c, h, w, f, kh, kw, stride, pads = case
    rng = np.random.default_rng(6)
    arrays = {"x": rng.standard_normal((n, c, h, w)), "w": rng.standard_normal((f, c, kh, kw))}
    oh, ow = convutil.output_hw(h, w, (kh, kw), stride, pads)
    arrays["dy"] = rng.standard_normal((n, f, oh, ow))
    bad_at = tuple(int(rng.integers(0, s)) for s in arrays[where].shape)
    arrays[where][bad_at] = bad
    b = rng.standard_normal(f)
    with np.errstate(invalid="ignore", over="ignore"):      # Inf * 0 is meant to give NaN
        expected = run_conv(ref, arrays["x"], arrays["w"], b, arrays["dy"], stride, pads)
        got = run_conv(impl, arrays["x"], arrays["w"], b, arrays["dy"], stride, pads)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12,
                                   err_msg=f"{key} {case} {bad} at {where}{bad_at}")


@pytest.mark.parametrize("act", [Activation.RELU, Activation.TANH, Activation.SIGMOID,
                                 Activation.IDENTITY], ids=lambda a: a.name.lower())
@pytest.mark.parametrize("impl, case", impl_case_params(CONV_CASES[::4] + DIRECT_CASES[::2],
                                                        "conv-act", every=2))
def test_conv_act_kernels_match_reference(impl, case, act):
    """conv2d_act_forward / conv2d_act_backward (the conv with its activation fused) equal the
    reference's conv followed by the activation, written and accumulated (float64)."""
    n, c, h, w, f, kh, kw, stride, pads = case
    rng = np.random.default_rng(3)
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, kh, kw))
    b = rng.standard_normal(f)
    oh, ow = convutil.output_hw(h, w, (kh, kw), stride, pads)
    dy = rng.standard_normal((n, f, oh, ow))
    results = [run_conv_act(k, x, wt, b, dy, stride, pads, act) for k in (ref, impl)]
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-12, atol=1e-12,
                                   err_msg=f"{key} {act} {case}")


def test_sequential_fuses_an_activation_into_the_conv_before_it():
    model = fn.Sequential([L.Conv2D(1, 2, 3), L.ReLU(), L.Conv2D(2, 2, 3), L.LeakyReLU()],
                          backend="numpy")
    assert [type(s.layer).__name__ for s in model.steps] == ["Conv2D", "Conv2D", "LeakyReLU"]
    assert model.steps[0].act == Activation.RELU
    assert model.steps[1].layer is model.layers[2] and model.steps[1].act is None


def _random_pool_cases(count, seed=2):
    rng, cases = np.random.default_rng(seed), []
    while len(cases) < count:
        n, c = (int(v) for v in rng.integers(1, 4, size=2))
        h, w = (int(v) for v in rng.integers(1, 10, size=2))
        kernel = tuple(int(v) for v in rng.integers(1, 5, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
        ph, pw = (int(rng.integers(0, k // 2 + 1)) for k in kernel)
        pads = (ph, ph, pw, pw)
        oh, ow = convutil.output_hw(h, w, kernel, stride, pads)
        if oh >= 1 and ow >= 1:
            cases.append((n, c, h, w, kernel, stride, pads))
    return cases


POOL_CASES = _random_pool_cases(30)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("impl, case", impl_case_params(POOL_CASES, "pool"))
def test_pool_kernels_match_reference(impl, case, dtype):
    n, c, h, w, kernel, stride, pads = case
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, size=(n, c, h, w)).astype(dtype)        # small integers: many ties
    oh, ow = convutil.output_hw(h, w, kernel, stride, pads)
    dy = rng.standard_normal((n, c, oh, ow)).astype(dtype)
    expected, got = run_pool(ref, x, dy, kernel, stride, pads), run_pool(impl, x, dy, kernel, stride, pads)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], **tolerance("pooling", dtype),
                                   err_msg=f"{key} {case}")


# ----------------------------------------------------------------------------- against PyTorch

TORCH_CONV = [
    # (x shape, out channels, kernel, stride, padding)
    ((2, 3, 8, 7), 4, 3, 1, 0),
    ((2, 2, 9, 8), 3, (3, 2), (2, 1), (1, 2)),
    ((1, 3, 7, 7), 2, 4, 1, "same"),
    ((2, 1, 6, 5), 2, (2, 3), 1, "same"),
    ((3, 2, 11, 10), 5, 5, 3, 2),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", range(len(TORCH_CONV)))
def test_conv_matches_torch(case, backend, torch):
    x_shape, f, kernel, stride, padding = TORCH_CONV[case]
    F = torch.nn.functional
    model = fn.Sequential([L.Conv2D(x_shape[1], f, kernel, stride, padding)], backend=backend,
                          dtype="float64", seed=case)
    rng = np.random.default_rng(case)
    x = rng.standard_normal(x_shape)
    w, b = (host(p.data) for p in model.parameters())
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    with warnings.catch_warnings():       # torch warns that "same" with an even kernel pads a copy
        warnings.simplefilter("ignore", UserWarning)
        yt = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    out, gx, (gw, gb) = forward_backward(model, x, dy)
    np.testing.assert_allclose(out, yt.detach().numpy(), atol=1e-12, rtol=1e-10)
    for got, t in ((gx, xt), (gw, wt), (gb, bt)):
        np.testing.assert_allclose(got, t.grad.numpy(), atol=1e-12, rtol=1e-10)


TORCH_POOL = [
    # (x shape, kernel, stride, padding)
    ((2, 3, 8, 6), 2, None, 0),
    ((2, 2, 7, 9), 3, 2, 1),
    ((1, 2, 9, 7), (3, 2), (1, 2), (1, 0)),
    ((2, 1, 5, 5), 3, 1, 0),
]


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", range(len(TORCH_POOL)))
def test_pool_matches_torch(case, kind, backend, torch):
    x_shape, kernel, stride, padding = TORCH_POOL[case]
    layer = (L.MaxPool2D if kind == "max" else L.AvgPool2D)(kernel, stride, padding=padding)
    model = fn.Sequential([layer], backend=backend, dtype="float64")
    rng = np.random.default_rng(case)
    x = rng.standard_normal(x_shape)
    if case == 3:
        x = np.round(x)                                       # ties: the gradient goes to one input
    xt = torch.tensor(x, requires_grad=True)
    pool = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    yt = pool(xt, kernel, stride, padding)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    out, gx, _ = forward_backward(model, x, dy)
    np.testing.assert_allclose(out, yt.detach().numpy(), atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), atol=1e-12, rtol=1e-12)
    if kind == "max":
        _, idx = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, return_indices=True)
        np.testing.assert_array_equal(host(layer.argmax).astype(np.int64), idx.numpy())


# ----------------------------------------------------------------------------- max-pool ties


def test_maxpool_ties_go_to_one_winner(backend):
    """A constant image: every window has kh*kw equal maxima; the first (top-left) one wins and
    gets the whole gradient, as in PyTorch."""
    layer = L.MaxPool2D(2)
    model = fn.Sequential([layer], backend=backend, dtype="float64")
    x = np.ones((1, 1, 4, 4))
    model.forward(x, training=True)
    np.testing.assert_array_equal(host(layer.argmax)[0, 0], [[0, 2], [8, 10]])
    gx = host(model.backward(model.be.to_device(np.full((1, 1, 2, 2), 3.0))))
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 3.0
    np.testing.assert_array_equal(gx[0, 0], expected)


def _nan_pool_input():
    x = np.random.default_rng(5).standard_normal((2, 2, 6, 7))
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = x[1, 1, 4, 5] = np.nan          # two NaNs share a window
    x[0, 1, 2:4, 2:4] = -np.inf                                    # a window of -inf only
    return x


@pytest.mark.parametrize("impl", [ref] + [i for _, i in IMPLS], ids=["numpy"] + [n for n, _ in IMPLS])
def test_maxpool_nan_and_inf_follow_pytorch(impl):
    """A NaN wins its window (the last one in window order when there are several) and a window
    of -inf points at its first position; checked at kernel level (the model rejects NaN input)."""
    x = _nan_pool_input()
    for kernel, stride, pads in (((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1))):
        oh, ow = convutil.output_hw(6, 7, kernel, stride, pads)
        out, argmax = np.empty((2, 2, oh, ow)), np.empty((2, 2, oh, ow), np.intp)
        impl.maxpool2d_forward(x, out, argmax, kernel, stride, pads)
        exp_out, exp_arg = np.empty_like(out), np.empty_like(argmax)
        ref.maxpool2d_forward(x, exp_out, exp_arg, kernel, stride, pads)
        np.testing.assert_array_equal(out, exp_out)
        np.testing.assert_array_equal(argmax, exp_arg)
        assert np.isnan(out).sum() >= 2


@pytest.mark.parametrize("impl", [i for _, i in IMPLS], ids=[n for n, _ in IMPLS])
@pytest.mark.parametrize("pads", [(0, 1, 0, 1), (0, 0, 0, 1), (0, 1, 0, 0), (1, 0, 1, 0)])
def test_maxpool_2x2_with_one_sided_padding(impl, pads):
    """Kernel-level 4-tuple padding on one side only: windows that reach into the padding must
    not take the fast all-inside path (it read past the plane)."""
    x = np.random.default_rng(6).standard_normal((2, 3, 5, 5))
    oh, ow = convutil.output_hw(5, 5, (2, 2), (2, 2), pads)
    got = np.full((2, 3, oh, ow), np.nan), np.full((2, 3, oh, ow), -1, np.intp)
    want = np.full((2, 3, oh, ow), np.nan), np.full((2, 3, oh, ow), -1, np.intp)
    impl.maxpool2d_forward(x, *got, (2, 2), (2, 2), pads)
    ref.maxpool2d_forward(x, *want, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.torch
def test_reference_maxpool_nan_matches_torch(torch):
    x = _nan_pool_input()
    for kernel, stride, pad in ((2, 2, 0), (3, 2, 1)):
        yt, it = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride, pad, return_indices=True)
        pads = (pad,) * 4
        out, argmax = np.empty(tuple(yt.shape)), np.empty(tuple(yt.shape), np.intp)
        ref.maxpool2d_forward(x, out, argmax, (kernel, kernel), (stride, stride), pads)
        np.testing.assert_array_equal(out, yt.numpy())
        np.testing.assert_array_equal(argmax, it.numpy())


def test_maxpool_overlapping_windows_add_up(backend):
    """One global maximum shared by every 3x3 window of stride 1 collects every gradient."""
    model = fn.Sequential([L.MaxPool2D(3, stride=1)], backend=backend, dtype="float64")
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 2] = 5.0
    model.forward(x, training=True)
    gx = host(model.backward(model.be.to_device(np.ones((1, 1, 2, 2)))))
    assert gx[0, 0, 1, 2] == 4.0 and gx.sum() == 4.0


# ----------------------------------------------------------------------------- layer API


def test_shapes_and_output_size():
    conv = L.Conv2D(3, 8, (5, 3), stride=(2, 1), padding=(2, 1))
    assert conv.output_shape((3, 28, 20)) == (8, 14, 20)
    assert L.Conv2D(3, 8, 4, padding="same").output_shape((3, 7, 6)) == (8, 7, 6)
    assert L.Conv2D(3, 8, 4, padding="same").pads == (1, 2, 1, 2)      # extra at bottom / right
    assert L.MaxPool2D(2).output_shape((6, 28, 27)) == (6, 14, 13)
    assert L.MaxPool2D(3, 2, padding=1).output_shape((6, 7, 7)) == (6, 4, 4)
    assert L.AvgPool2D(2, 1).output_shape((6, 5, 5)) == (6, 4, 4)
    assert dict(conv.parameter_shapes()) == {"weight": (8, 3, 5, 3), "bias": (8,)}


@pytest.mark.parametrize("layer, shape, message", [
    (L.Conv2D(3, 4, 3), (1, 8, 8), "expected 3 input channel"),
    (L.Conv2D(1, 4, 5), (1, 4, 8), "smaller than the 5x5 kernel"),
    (L.Conv2D(1, 4, 3), (784,), "expected images (N, C, H, W)"),
    (L.MaxPool2D(3), (2, 2, 5), "smaller than the 3x3 kernel"),
    (L.AvgPool2D(2), (4, 4), "expected images (N, C, H, W)"),
])
def test_check_input_errors(layer, shape, message):
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer.check_input(shape)


def test_model_rejects_wrong_channels_at_the_boundary():
    model = fn.Sequential([L.Conv2D(3, 2, 3)], backend="numpy")
    with pytest.raises(ShapeError, match="expected 3 input channel"):
        model.forward(np.zeros((2, 1, 5, 5), np.float32))


@pytest.mark.parametrize("make", [
    lambda: L.Conv2D(1, 2, 3, stride=2, padding="same"),
    lambda: L.Conv2D(1, 2, 3, padding="wide"),
    lambda: L.Conv2D(1, 2, 3, padding=-1),
    lambda: L.Conv2D(1, 2, 0),
    lambda: L.Conv2D(1, 2, (1, 2, 3)),
    lambda: L.MaxPool2D(2, padding=2),
    lambda: L.AvgPool2D(3, stride=0),
])
def test_bad_arguments(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.slow_on_simulator
def test_buffers_are_reused(backend):
    """After the first batch of a shape, forward and backward allocate no new buffers."""
    model = fn.models.lenet5(backend=backend, seed=0)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    g = np.ones((4, 10), np.float32)
    model.forward(x, training=True)
    model.backward_batch(model.be.to_device(g), need_input_grad=False, accumulate=False)
    before = [(dict(layer._buffers), id(getattr(layer, "cols", None))) for layer in model.layers]
    model.forward(x, training=True)
    model.backward_batch(model.be.to_device(g), need_input_grad=False, accumulate=False)
    for layer, (bufs, cols_id) in zip(model.layers, before):
        assert layer._buffers.keys() == bufs.keys() and all(layer._buffers[k] is bufs[k] for k in bufs)
        assert id(getattr(layer, "cols", None)) == cols_id
    assert not any(key[0] == "dx" for key in model.layers[0]._buffers)     # no input gradient


@pytest.mark.parametrize("mode", ["direct", "im2col"])
def test_conv_layers_allocate_cols_only_where_the_backend_uses_them(backend, mode, monkeypatch):
    """A stride-1 convolution needs no im2col buffers where the cpu backend runs it on its
    direct kernels (FASTNN_CONV forces the per-shape choice of kernels/cpu/conv_choice.py); the
    reference and CUDA kernels, and the cpu's strided path, always use them."""
    if backend == "cpu":
        from fastnn.kernels.cpu import conv_choice
        monkeypatch.setenv("FASTNN_CONV", mode)
        conv_choice.refresh()
    try:
        model = fn.Sequential([L.Conv2D(1, 2, 3, padding=1), L.Conv2D(2, 2, 3, stride=2)],
                              backend=backend)
        x = np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32)
        model.forward(x, training=True)
        model.backward_batch(model.be.to_device(np.ones((2, 2, 2, 2), np.float32)), True, False)
    finally:
        if backend == "cpu":
            monkeypatch.undo()
            conv_choice.refresh()
    direct = backend == "cpu" and mode == "direct"
    assert (model.layers[0].cols is None) == direct
    assert (("dcols" in {k[1] for k in model.layers[0]._buffers}) != direct)
    assert model.layers[1].cols is not None


def test_cpu_training_steps_allocate_nothing_after_the_first_batch():
    """LeNet-5 on the cpu backend: tracemalloc (which sees every NumPy array) finds nothing
    array-sized allocated during 3 training steps once the first batch has made the buffers."""
    import tracemalloc
    if "cpu" not in BACKENDS:
        pytest.skip("cpu backend unavailable")
    assert fn.get_backend("cpu").conv2d_forward is not ref.conv2d_forward
    model = fn.models.lenet5(backend="cpu", seed=0)
    loss = fn.CrossEntropyLoss().bind(model.be)
    opt = fn.optim.SGD(model.parameters(), lr=0.01)
    x = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32)
    y = np.arange(32) % 10

    def step():
        out = model.forward_batch(x, training=True)
        loss.compute(out, y)
        model.backward_batch(loss.grad, need_input_grad=False, accumulate=False)
        opt.step()

    step()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for _ in range(3):
        step()
    grown = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes allocated during 3 LeNet-5 training steps"


def test_default_init_uses_conv_fans():
    """He normal (ReLU follows): std sqrt(2 / (in * kh * kw)); Xavier for Tanh: 2 / (fan_in + fan_out)."""
    model = fn.Sequential([L.Conv2D(16, 64, 3), L.ReLU(), L.Conv2D(64, 64, 3), L.Tanh()],
                          backend="numpy", dtype="float64", seed=0)
    w1, b1, w2, _ = (p.data for p in model.parameters())
    assert abs(w1.std() / np.sqrt(2 / 144) - 1) < 0.05
    assert abs(w2.std() / np.sqrt(2 / (64 * 9 + 64 * 9)) - 1) < 0.05
    assert not b1.any()


def test_save_and_load_round_trip(tmp_path):
    layers = [L.Conv2D(2, 3, (3, 2), stride=(1, 2), padding=(1, 0), init="he_uniform"),
              L.ReLU(), L.MaxPool2D(2, stride=1, padding=1), L.Conv2D(3, 2, 2, padding="same"),
              L.AvgPool2D((2, 1)), L.Flatten(), L.Dense(2 * 3 * 3, 3)]
    model = fn.Sequential(layers, backend="numpy", dtype="float64", seed=4)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 5))
    model.save(tmp_path / "m.npz")
    loaded = fn.Sequential.load(tmp_path / "m.npz", backend="numpy")
    assert [repr(a) for a in loaded.layers] == [repr(a) for a in model.layers]
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


# ----------------------------------------------------------------------------- LeNet-5


@pytest.mark.slow_on_simulator
def test_lenet5_shapes(backend):
    model = fn.models.lenet5(backend=backend, seed=0)
    sizes = [p.shape for p in model.parameters()]
    assert sizes == [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (400, 120), (120,), (120, 84),
                     (84,), (84, 10), (10,)]
    assert model.num_parameters() == 61706
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    out = model.forward(x, training=True)
    assert host(out).shape == (3, 10) and out.dtype == np.float32
    loss = fn.CrossEntropyLoss().bind(model.be)
    loss(out, np.array([0, 3, 9]))
    model.zero_grad()
    gx = model.backward(loss.backward())
    assert host(gx).shape == (3, 1, 28, 28)
    assert all(np.isfinite(host(p.grad)).all() and np.abs(host(p.grad)).sum() > 0
               for p in model.parameters())


def test_lenet5_other_sizes():
    model = fn.models.lenet5(in_channels=3, image_size=(32, 32), num_classes=5, backend="numpy")
    assert model.output_shape((3, 32, 32)) == (5,)
    assert model.parameters()[4].shape == (16 * 6 * 6, 120)
    with pytest.raises(ShapeError, match="too small"):
        fn.models.lenet5(image_size=(8, 8))


@pytest.mark.slow_on_simulator
def test_lenet5_learns_a_tiny_problem(backend):
    """A few SGD steps on 64 images of two easy classes lower the loss clearly."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = rng.random((64, 1, 28, 28), dtype=np.float32) * 0.1
    x[y == 1, :, 8:20, 8:20] += 0.8                                   # class 1: a bright square
    model = fn.models.lenet5(num_classes=2, backend=backend, seed=0)
    history = model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=fn.optim.SGD(model.parameters(), lr=0.1),
                        epochs=4, batch_size=16, seed=0, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
