"""The "cuda" backend (kernels/cuda): every kernel against the NumPy reference on tiny shapes in
float32 and float64, a tiny MLP trained on cuda against the "numpy" backend, the number of
kernel launches per training step, PTX compilation of every launched kernel for a real GPU
(the simulator does not type-check kernels), and the error without a GPU.

Without a GPU these run in Numba's CUDA simulator (see conftest.py); on a GPU they run there.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fn
from conftest import BACKENDS, SIMULATED, host_callable
from fastnn.kernels import reference as ref
from fastnn.kernels.contract import Activation

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

needs_cuda = pytest.mark.skipif("cuda" not in BACKENDS, reason="backend 'cuda' is not available "
                                "(no GPU, and NUMBA_ENABLE_CUDASIM is off)")
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


def cuda():
    return host_callable(fn.get_backend("cuda"))


# ----------------------------------------------------------------------------- op cases
# Each case runs a sequence of kernels of ``k`` (the reference, or cuda through host arrays) on
# inputs drawn from ``rng`` and returns every output; outputs start as NaN, so nothing may be
# left unwritten.


def _a(rng, shape, dt, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dt)


def _nan(shape, dt):
    return np.full(shape, np.nan, dt)


def _gemm_sizes():
    """(N, in, out) spanning several tiles of the GEMM in every dimension, partial edges too."""
    from fastnn.kernels.cuda import gemm
    return 2 * gemm.BM + 3, 2 * gemm.BK + 1, gemm.BN + 5


def case_dense(k, rng, dt, sizes=(5, 7, 6)):
    n, fin, fout = sizes
    x, w, b, dy = _a(rng, (n, fin), dt), _a(rng, (fin, fout), dt), _a(rng, fout, dt), _a(rng, (n, fout), dt)
    out, dx, dw, db = _nan((n, fout), dt), _nan((n, fin), dt), _nan((fin, fout), dt), _nan(fout, dt)
    k.dense_forward(x, w, b, out)
    k.dense_backward(x, w, dy, dx, dw, db)
    dw_acc, db_acc = np.ones((fin, fout), dt), np.ones(fout, dt)
    k.dense_backward(x, w, dy, None, dw_acc, db_acc, accumulate=True)
    return dict(out=out, dx=dx, dw=dw, db=db, dw_acc=dw_acc, db_acc=db_acc)


def case_dense_multi_tile(k, rng, dt):
    return case_dense(k, rng, dt, _gemm_sizes())


def case_dense_act(act):
    def run(k, rng, dt):
        n, fin, fout = 6, 5, 7
        x, w, b, dy = _a(rng, (n, fin), dt), _a(rng, (fin, fout), dt), _a(rng, fout, dt), _a(rng, (n, fout), dt)
        out, dz, dx = _nan((n, fout), dt), _nan((n, fout), dt), _nan((n, fin), dt)
        dw, db = _nan((fin, fout), dt), _nan(fout, dt)
        k.dense_act_forward(x, w, b, out, act)
        k.dense_act_backward(x, w, out, dy, dz, dx, dw, db, act)
        dw_acc, db_acc = np.full((fin, fout), 2, dt), np.full(fout, 2, dt)
        k.dense_act_backward(x, w, out, dy, _nan((n, fout), dt), None, dw_acc, db_acc, act,
                             accumulate=True)
        return dict(out=out, dz=dz, dx=dx, dw=dw, db=db, dw_acc=dw_acc, db_acc=db_acc)
    return run


def case_activation(kernel, shape=(4, 6), **kwargs):
    def run(k, rng, dt):
        x = _a(rng, shape, dt, 2.0)
        x.flat[0] = 0                                             # the kink of ReLU & co.
        y, dx, dy = _nan(shape, dt), _nan(shape, dt), _a(rng, shape, dt)
        getattr(k, kernel + "_forward")(x, y, **kwargs)
        getattr(k, kernel + "_backward")(x, y, dy, dx, **kwargs)
        return dict(y=y, dx=dx)
    return run


def case_prelu(shape, n_slopes):
    def run(k, rng, dt):
        x, dy = _a(rng, shape, dt), _a(rng, shape, dt)
        a = rng.uniform(0.1, 0.5, n_slopes).astype(dt)
        y, dx, da = _nan(shape, dt), _nan(shape, dt), _nan(n_slopes, dt)
        k.prelu_forward(x, a, y)
        k.prelu_backward(x, a, dy, dx, da)
        da_acc = np.ones(n_slopes, dt)
        k.prelu_backward(x, a, dy, _nan(shape, dt), da_acc, accumulate=True)
        return dict(y=y, dx=dx, da=da, da_acc=da_acc)
    return run


def case_maxout(k, rng, dt, pieces=3):
    x = np.round(_a(rng, (4, 5 * pieces), dt, 2.0))              # ties: the first one wins
    out, argmax, dx = _nan((4, 5), dt), np.full((4, 5), -1, np.intp), _nan(x.shape, dt)
    k.maxout_forward(x, out, argmax, pieces)
    k.maxout_backward(argmax, _a(rng, (4, 5), dt), dx, pieces)
    return dict(out=out, argmax=argmax, dx=dx)


def _labels(rng, n, k):
    return rng.integers(0, k, n).astype(np.int64)


def case_loss(kernel, make_target, scale=1.0):
    def run(k, rng, dt):
        out = _a(rng, (6, 4), dt, scale)
        target = make_target(rng, dt)
        grad = _nan(out.shape, dt)
        value = getattr(k, kernel)(out, target, grad)
        assert isinstance(value, float)
        return dict(value=np.array(value), grad=grad)
    return run


def case_count_correct(k, rng, dt):
    out = np.round(_a(rng, (9, 4), dt))                           # ties: the first arg-max
    labels = _labels(rng, 9, 4)
    count = k.count_correct(out, labels)
    assert isinstance(count, int)
    return dict(count=np.array(count))


SGD_CONFIGS = [{}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.3},
               {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01, "l1": 0.02},
               {"weight_decay": 0.1, "l1": 0.05}]


def case_sgd(hyper):
    def run(k, rng, dt):
        p = _a(rng, 13, dt)
        p[0] = 0                                                   # sign(0) = 0 for L1
        buf = np.full(13, 123, dt) if hyper.get("momentum") else None
        for step in range(3):
            k.sgd_step(p, _a(rng, 13, dt), buf, 0.1, first_step=step == 0, **hyper)
        return dict(p=p) if buf is None else dict(p=p, buf=buf)
    return run


def case_optimizer(kernel, hyper, states, optional=()):
    """Three steps of ``kernel(p, g, *states, lr, **hyper)``; ``optional`` states may be None."""
    def run(k, rng, dt):
        p = _a(rng, 13, dt)
        bufs = {name: None if name in optional else np.abs(_a(rng, 13, dt)) for name in states}
        if bufs.get("grad_avg") is not None:
            bufs["grad_avg"][:] = 0                                # centered: E[g]^2 <= E[g^2]
        for step in range(1, 4):
            extra = {"step": step} if kernel in ("adam_step", "adagrad_step") else {}
            getattr(k, kernel)(p, _a(rng, 13, dt), *bufs.values(), 0.05, **hyper, **extra)
        return dict(p=p, **{n: b for n, b in bufs.items() if b is not None})
    return run


OPTIMIZER_CASES = {
    "adagrad": case_optimizer("adagrad_step", {}, ["sum"]),
    "adagrad-decay,wd": case_optimizer("adagrad_step", {"lr_decay": 0.1, "weight_decay": 0.01}, ["sum"]),
    "rmsprop": case_optimizer("rmsprop_step", {}, ["square_avg", "buf", "grad_avg"], ("buf", "grad_avg")),
    "rmsprop-centered,momentum": case_optimizer(
        "rmsprop_step", {"momentum": 0.9, "centered": True, "weight_decay": 0.01},
        ["square_avg", "buf", "grad_avg"]),
    "rmsprop-nesterov": case_optimizer("rmsprop_step", {"momentum": 0.5, "nesterov": True, "alpha": 0.9},
                                       ["square_avg", "buf", "grad_avg"], ("grad_avg",)),
    "adam": case_optimizer("adam_step", {}, ["m", "v", "vmax"], ("vmax",)),
    "adam-amsgrad,wd": case_optimizer("adam_step", {"amsgrad": True, "weight_decay": 0.1},
                                      ["m", "v", "vmax"]),
    "adamw": case_optimizer("adam_step", {"decoupled": True, "weight_decay": 0.1}, ["m", "v", "vmax"],
                            ("vmax",)),
}


def case_norms(k, rng, dt):
    g = _a(rng, (5, 7), dt)
    total = k.sum_of_squares(g)
    assert isinstance(total, float)
    k.scale_inplace(g, 0.3)
    dense, conv = _a(rng, (6, 4), dt), _a(rng, (3, 2, 2, 2), dt)
    dense[:, 1] *= 0.01                                            # a short unit: left unchanged
    k.renorm_units(dense, 1.5, -1)
    k.renorm_units(conv, 1.5, 0)
    return dict(total=np.array(total), scaled=g, dense=dense, conv=conv)


def case_dropout(k, rng, dt):
    x, dy = _a(rng, (4, 6), dt), _a(rng, (4, 6), dt)
    mask = ((rng.random((4, 6)) > 0.3) / 0.7).astype(dt)
    out, dx = _nan(x.shape, dt), _nan(x.shape, dt)
    k.dropout_forward(x, mask, out)
    k.dropout_backward(mask, dy, dx)
    return dict(out=out, dx=dx)


def case_batchnorm(shape):
    def run(k, rng, dt):
        c = shape[1]
        x, dy = _a(rng, shape, dt, 2.0) + 1, _a(rng, shape, dt)
        gamma, beta = rng.uniform(0.5, 2, c).astype(dt), _a(rng, c, dt)
        out, mean, invstd = _nan(shape, dt), _nan(c, dt), _nan(c, dt)
        rm, rv = _a(rng, c, dt), rng.uniform(0.5, 2, c).astype(dt)
        k.batchnorm_forward_train(x, gamma, beta, out, mean, invstd, rm, rv, momentum=0.2)
        dx, dgamma, dbeta = _nan(shape, dt), _nan(c, dt), _nan(c, dt)
        k.batchnorm_backward(x, gamma, mean, invstd, dy, dx, dgamma, dbeta)
        dg_acc, db_acc = np.ones(c, dt), np.ones(c, dt)
        k.batchnorm_backward(x, gamma, mean, invstd, dy, None, dg_acc, db_acc, accumulate=True)
        evaluated = _nan(shape, dt)
        k.batchnorm_forward_eval(x, gamma, beta, evaluated, rm, rv)
        return dict(out=out, mean=mean, invstd=invstd, running_mean=rm, running_var=rv, dx=dx,
                    dgamma=dgamma, dbeta=dbeta, dgamma_acc=dg_acc, dbeta_acc=db_acc, eval=evaluated)
    return run


def case_weighted_loss(kernel, make_input):
    def run(k, rng, dt):
        z, labels = make_input(rng, dt), _labels(rng, 7, 4)
        weight, grad = rng.uniform(0.2, 3, 4).astype(dt), _nan((7, 4), dt)
        value = getattr(k, kernel)(z, labels, grad, weight=weight)
        assert isinstance(value, float)
        return dict(value=np.array(value), grad=grad)
    return run


def case_take_rows(shape, host_index):
    def run(k, rng, dt):
        a = _a(rng, shape, dt)
        idx = np.array([3, 0, 3, 1], np.int64)
        out = _nan((4,) + shape[1:], dt)
        if host_index or k is ref:
            k.take_rows(a, idx, out)
        else:                                                      # device index array
            be = fn.get_backend("cuda")
            d_out = be.to_device(out)
            be.take_rows(be.to_device(a), be.to_device(idx), d_out)
            out = be.to_host(d_out)
        return dict(out=out)
    return run


def case_conv(k, rng, dt):
    n, c, h, w, f, kh, kw, stride, pads = 2, 2, 6, 5, 3, 3, 2, (2, 1), (1, 0, 1, 1)
    oh, ow = (h + 1 - kh) // 2 + 1, (w + 2 - kw) // 1 + 1
    x, wt, b, dy = _a(rng, (n, c, h, w), dt), _a(rng, (f, c, kh, kw), dt), _a(rng, f, dt), _a(rng, (n, f, oh, ow), dt)
    out, cols = _nan((n, f, oh, ow), dt), _nan((n, c * kh * kw, oh * ow), dt)
    k.conv2d_forward(x, wt, b, out, stride, pads, cols)
    dx, dw, db, dcols = _nan(x.shape, dt), _nan(wt.shape, dt), _nan(f, dt), _nan(cols.shape, dt)
    k.conv2d_backward(x, wt, dy, dx, dw, db, stride, pads, cols, dcols)
    dw_acc, db_acc = np.ones(wt.shape, dt), np.ones(f, dt)
    k.conv2d_backward(x, wt, dy, None, dw_acc, db_acc, stride, pads, cols, None, accumulate=True)
    return dict(out=out, cols=cols, dx=dx, dw=dw, db=db, dw_acc=dw_acc, db_acc=db_acc)


def case_pool(k, rng, dt):
    x = np.round(_a(rng, (2, 2, 5, 6), dt, 2.0))                 # ties
    kernel, stride, pads = (3, 2), (2, 2), (1, 1, 1, 1)
    oh, ow = (5 + 2 - 3) // 2 + 1, (6 + 2 - 2) // 2 + 1
    dy = _a(rng, (2, 2, oh, ow), dt)
    out, argmax, dx = _nan(dy.shape, dt), np.full(dy.shape, -1, np.intp), _nan(x.shape, dt)
    k.maxpool2d_forward(x, out, argmax, kernel, stride, pads)
    k.maxpool2d_backward(argmax, dy, dx)
    avg, adx = _nan(dy.shape, dt), _nan(x.shape, dt)
    k.avgpool2d_forward(x, avg, kernel, stride, pads)
    k.avgpool2d_backward(dy, adx, kernel, stride, pads)
    return dict(max=out, argmax=argmax, max_dx=dx, avg=avg, avg_dx=adx)


CASES = {
    "dense": case_dense,
    "dense-multi-tile": case_dense_multi_tile,
    **{f"dense_act-{a.name.lower()}": case_dense_act(a) for a in Activation},
    **{a: case_activation(a) for a in ("identity", "sigmoid", "tanh", "relu", "softmax", "log_softmax")},
    "sigmoid-4d": case_activation("sigmoid", (2, 3, 2, 2)),
    "leaky_relu-0.2": case_activation("leaky_relu", negative_slope=0.2),
    "prelu-shared": case_prelu((4, 6), 1),
    "prelu-per-feature": case_prelu((4, 6), 6),
    "prelu-per-channel-4d": case_prelu((2, 3, 2, 2), 3),
    "maxout-3": case_maxout,
    "mse": case_loss("mse_loss", lambda rng, dt: _a(rng, (6, 4), dt)),
    "cross_entropy": case_loss("cross_entropy_loss", lambda rng, dt: _labels(rng, 6, 4), 3.0),
    "cross_entropy-huge-logits": case_loss("cross_entropy_loss", lambda rng, dt: _labels(rng, 6, 4), 500.0),
    "nll": case_loss("nll_loss", lambda rng, dt: _labels(rng, 6, 4)),
    "bce_with_logits": case_loss("bce_with_logits_loss", lambda rng, dt: rng.uniform(0, 1, (6, 4)).astype(dt), 3.0),
    "count_correct": case_count_correct,
    **{"sgd-" + (",".join(f"{k}={v}" for k, v in h.items()) or "plain"): case_sgd(h) for h in SGD_CONFIGS},
    **OPTIMIZER_CASES,
    "norms": case_norms,
    "dropout": case_dropout,
    "batchnorm-dense": case_batchnorm((9, 5)),
    "batchnorm-images": case_batchnorm((2, 3, 2, 3)),
    "weighted_cross_entropy": case_weighted_loss("cross_entropy_loss",
                                                 lambda rng, dt: _a(rng, (7, 4), dt, 3.0)),
    "weighted_nll": case_weighted_loss("nll_loss", lambda rng, dt: -np.abs(_a(rng, (7, 4), dt))),
    "take_rows-2d-host-index": case_take_rows((5, 3), True),
    "take_rows-4d-device-index": case_take_rows((5, 2, 2, 3), False),
    "take_rows-1d-device-index": case_take_rows((5,), False),
    "conv2d": case_conv,
    "pool2d": case_pool,
}


def run_case(name, k, dt):
    return CASES[name](k, np.random.default_rng(7), np.dtype(dt))


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_matches_reference(case, dtype):
    expected, got = run_case(case, ref, dtype), run_case(case, cuda(), dtype)
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        np.testing.assert_allclose(got[key], expected[key], err_msg=f"{case}: {key}", **TOL[dtype])


@needs_cuda
def test_every_reference_op_has_a_cuda_kernel():
    """No reference op is served by the slow host fallback: each has a kernel in kernels/cuda."""
    be = fn.get_backend("cuda")
    assert be.HOST_FALLBACKS == [], (
        f"kernels/cuda has no kernel for {be.HOST_FALLBACKS}: add one (they run on host copies now)")


# ----------------------------------------------------------------------------- memory


@needs_cuda
def test_memory_functions():
    be = fn.get_backend("cuda")
    a = np.arange(12.0).reshape(3, 4)
    d = be.to_device(a)
    assert not isinstance(d, np.ndarray) and be.to_device(d) is d
    np.testing.assert_array_equal(be.to_host(d), a)
    assert be.to_host(a) is a
    z = be.zeros((2, 3), np.float32)
    assert z.dtype == np.float32 and z.shape == (2, 3) and not be.to_host(z).any()
    e = be.empty((4,), np.int64)
    assert e.dtype == np.int64 and e.shape == (4,)
    be.copy_into(z, np.array([1.0, 2.0, 3.0]))                    # broadcast and cast from the host
    np.testing.assert_array_equal(be.to_host(z), [[1, 2, 3], [1, 2, 3]])
    be.copy_into(z, be.to_device(np.full((2, 3), 5.0)))          # device, other dtype
    np.testing.assert_array_equal(be.to_host(z), 5)
    be.copy_into(d[1], be.to_device(np.full(4, -1.0)))            # device view, same dtype
    np.testing.assert_array_equal(be.to_host(d)[1], -1)
    with pytest.raises(TypeError, match="to_device"):
        be.relu_forward(a, be.empty(a.shape, a.dtype))           # a host array never gets in


@needs_cuda
def test_launch_specialises_a_kernel_once_per_argument_types(monkeypatch):
    """On a GPU, launch() hands Numba a kernel specialised for the argument types, made on the
    first launch with those types (a stand-in kernel here: the simulator needs no specialising)."""
    from fastnn.kernels.cuda import common

    class Kernel:
        def __init__(self):
            self.specialised, self.launched = [], []

        def specialize(self, *args):
            self.specialised.append(args)
            return self

        def __getitem__(self, config):
            return lambda *args: self.launched.append((config, args))

    monkeypatch.setattr(common, "SIM", False)
    monkeypatch.setattr(common, "_specialised", {})
    be, kernel = fn.get_backend("cuda"), Kernel()
    a32, a64 = common.flat(be.zeros((3, 2), np.float32)), be.zeros((4,), np.float64)
    common.launch(kernel, 1, 4, a32, 2, 0.5, np.float32(1), True, (1, 2))
    common.launch(kernel, 2, 8, a32, 3, 0.25, np.float32(2), False, (3, 4))     # same types
    assert len(kernel.specialised) == 1
    common.launch(kernel, 1, 4, a64, 2, 0.5, np.float32(1), True, (1, 2))       # float64 array
    common.launch(kernel, 1, 4, a32, 2, 0.5, np.float64(1), True, (1, 2))       # float64 scalar
    common.launch(kernel, 1, 4, a32, 2, 0.5, np.float32(1), 1, (1, 2, 3))       # int, longer tuple
    assert len(kernel.specialised) == 4 and len(kernel.launched) == 5
    assert kernel.launched[1] == ((2, 8), (a32, 3, 0.25, np.float32(2), False, (3, 4)))


# ----------------------------------------------------------------------------- training


def _tiny_problem(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((26, 6)).astype(dtype)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.3)
    return x, y


def _tiny_mlp(backend, dtype):
    return fn.Sequential([fn.Dense(6, 8), fn.Tanh(), fn.Dense(8, 5), fn.ReLU(), fn.Dense(5, 3)],
                         backend=backend, dtype=dtype, seed=1)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_mlp_trains_like_numpy(dtype):
    """A few SGD steps (Nesterov momentum, weight decay, shuffling, a last partial batch) on cuda
    give the weights and the history of the "numpy" backend."""
    x, y = _tiny_problem(dtype)
    results = []
    for backend in ("numpy", "cuda"):
        model = _tiny_mlp(backend, dtype)
        opt = fn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        history = model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=2, batch_size=8,
                            seed=0, validation_data=(x[:5], y[:5]), verbose=0)
        results.append((model.get_weights(), history.history, model.predict(x[:4])))
    tol = {"float32": 1e-5, "float64": 1e-10}[dtype]
    (w_np, h_np, p_np), (w_cu, h_cu, p_cu) = results
    np.testing.assert_allclose(w_cu, w_np, rtol=tol, atol=tol)
    np.testing.assert_allclose(p_cu, p_np, rtol=tol, atol=tol)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_cu[key], h_np[key], rtol=tol, atol=tol, err_msg=key)


def _count_launches_and_copies(monkeypatch):
    """Counters of kernel launches and of device-to-host copies, patched into numba.cuda."""
    counts = {"launches": 0, "copies to host": 0}
    if SIMULATED:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as DeviceArray
        from numba.cuda.simulator.kernel import FakeCUDAKernel

        launch = FakeCUDAKernel.__call__

        def counted_launch(self, *args):
            counts["launches"] += not self._device
            return launch(self, *args)
        monkeypatch.setattr(FakeCUDAKernel, "__call__", counted_launch)
    else:
        from numba.cuda.cudadrv.devicearray import DeviceNDArray as DeviceArray
        from numba.cuda.dispatcher import _LaunchConfiguration

        launch = _LaunchConfiguration.__call__

        def counted_launch(self, *args):
            counts["launches"] += 1
            return launch(self, *args)
        monkeypatch.setattr(_LaunchConfiguration, "__call__", counted_launch)
    to_host = DeviceArray.copy_to_host

    def counted_copy(self, *args, **kwargs):
        counts["copies to host"] += 1
        return to_host(self, *args, **kwargs)
    monkeypatch.setattr(DeviceArray, "copy_to_host", counted_copy)
    return counts


@needs_cuda
@pytest.mark.parametrize("flatten", [False, True])
def test_launches_per_training_step(monkeypatch, flatten):
    """The MLP of kernels/cuda/__init__.py's docstring (Dense+ReLU, Dense+ReLU, Dense,
    cross-entropy, SGD with momentum): 17 launches and 2 scalar copies back per step, as
    documented; one more GEMM when a Flatten comes first and Sequential asks the first Dense for
    its input gradient (for the Flatten)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((24, 2, 4)).astype(np.float32), rng.integers(0, 3, 24)
    layers = [fn.Dense(8, 6), fn.ReLU(), fn.Dense(6, 5), fn.ReLU(), fn.Dense(5, 3)]
    model = fn.Sequential([fn.Flatten()] * flatten + layers, backend="cuda", seed=0)
    opt = fn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    counts = _count_launches_and_copies(monkeypatch)
    model.fit(x if flatten else x.reshape(24, 8), y, loss=fn.CrossEntropyLoss(), optimizer=opt,
              epochs=1, batch_size=8, verbose=0)
    steps, first_dx = 3, any(key[0] == "dx" for key in layers[0]._buffers)
    assert counts == {"launches": (17 + first_dx) * steps, "copies to host": 2 * steps}


# ----------------------------------------------------------------------------- a real GPU's compiler

_RECORD = """
import os, pickle, sys
sys.path.insert(0, {tests!r})
import numpy as np
from numba import typeof
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
from numba.cuda.simulator.kernel import FakeCUDAKernel
import test_cuda

seen = {{}}
launch = FakeCUDAKernel.__call__

def record(self, *args):
    if not self._device:
        fn = self.fn
        closure = {{name: cell.cell_contents for name, cell in
                   zip(fn.__code__.co_freevars, fn.__closure__ or ())}}
        types = tuple(typeof(a._ary if isinstance(a, FakeCUDAArray) else a) for a in args)
        key = (fn.__module__, fn.__qualname__, tuple(sorted(closure.items(), key=str)), types)
        seen[key] = None
    return launch(self, *args)

FakeCUDAKernel.__call__ = record
for case in sorted(test_cuda.CASES):
    for dtype in test_cuda.DTYPES:
        test_cuda.run_case(case, test_cuda.cuda(), dtype)
test_cuda.test_memory_functions()
for dtype in test_cuda.DTYPES:
    x, y = test_cuda._tiny_problem(dtype)
    test_cuda._tiny_mlp("cuda", dtype).fit(x, y, epochs=1, batch_size=8, verbose=0, lr=0.1)
with open({out!r}, "wb") as f:
    pickle.dump(list(seen), f)
"""

_COMPILE = """
import importlib, inspect, pickle
from numba import cuda
import numba.cuda.dispatcher


class Device:                     # device functions ask the current device for its compute
    compute_capability = (9, 0)   # capability; there is none here, so say sm_90 (an H100)


numba.cuda.dispatcher.get_current_device = Device
failures, done = [], 0
with open({path!r}, "rb") as f:
    entries = pickle.load(f)
for module, qualname, closure, types in entries:
    mod = importlib.import_module(module)
    if ".<locals>." in qualname:        # a kernel made by a factory: call it with its closure
        kernel = getattr(mod, qualname.split(".<locals>.")[0])(**dict(closure))
    else:
        kernel = getattr(mod, qualname)
    try:
        cuda.compile_ptx(kernel.py_func, types, cc=(9, 0))
        done += 1
    except Exception as exc:
        failures.append(f"{{module}}.{{qualname}}{{types}}: {{type(exc).__name__}}: {{exc}}")
print("compiled", done)
print("\\n".join(failures))
"""


def _nvvm_available():
    code = "from numba.cuda.cudadrv import nvvm; nvvm.NVVM()"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


@needs_cuda
@pytest.mark.skipif(not SIMULATED, reason="on a GPU every kernel is compiled by the tests themselves")
def test_every_launched_kernel_compiles_for_a_gpu(tmp_path):
    """The simulator runs kernels as Python, so it misses what only the CUDA compiler checks
    (types, unsupported functions). Record the kernels and argument types that the op cases and
    a small fit launch, then compile each to PTX for sm_90 with NVVM (no GPU needed)."""
    if not _nvvm_available():
        pytest.skip("NVVM (the CUDA toolkit's compiler library) is not installed")
    sigs = tmp_path / "kernels.pkl"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", _RECORD.format(tests=HERE, out=str(sigs))],
                          env=env, capture_output=True, text=True, cwd=HERE)
    assert done.returncode == 0, done.stderr[-3000:]
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    done = subprocess.run([sys.executable, "-c", _COMPILE.format(path=str(sigs))], env=env,
                          capture_output=True, text=True, cwd=HERE)
    assert done.returncode == 0, done.stderr[-3000:]
    count, *failures = done.stdout.strip().split("\n")
    assert not [f for f in failures if f], "\n".join(failures)
    assert int(count.split()[1]) >= 30


# ----------------------------------------------------------------------------- no GPU


def test_cuda_without_gpu_or_simulator_is_unavailable():
    """With neither a GPU nor the simulator, "cuda" is left out of available_backends() and
    asking for it raises BackendUnavailableError with the reason (never a crash)."""
    code = textwrap.dedent("""
        import sys
        from numba import cuda
        if cuda.is_available():
            print("GPU"); sys.exit(0)
        import fastnn as fn
        from fastnn.errors import BackendUnavailableError
        assert "cuda" not in fn.available_backends()
        try:
            fn.Sequential([fn.Dense(2, 1)], backend="cuda")
        except BackendUnavailableError as exc:
            print("unavailable:", exc)
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = ROOT
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    if done.stdout.startswith("GPU"):
        pytest.skip("this machine has a CUDA GPU")
    assert done.stdout.startswith("unavailable:"), done.stdout
    assert "NUMBA_ENABLE_CUDASIM" in done.stdout and "GPU" in done.stdout
