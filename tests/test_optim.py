"""Optimizers and schedules (fastnn.optim) and their fused kernels.

* every optimizer configuration against torch.optim, step by step, in float64;
* L1 and RMSProp's Nesterov variant (no torch equivalent) against hand-written textbook loops;
* the fused path (the backend's kernel per flat run) against the per-parameter path (the
  reference kernel per parameter) from the same state, on every backend, and that each path
  calls the optimizer's one kernel;
* the helper kernels (global gradient norm, scaling, max-norm) on every backend;
* exact resume through model.save / load_optimizer_state; parameter groups; max_norm;
  clip_grad_norm; learning-rate schedules; a short Adam training on digits.
"""
import math

import numpy as np
import pytest

import fastnn as fn
from fastnn import optim
from fastnn.kernels import reference as ref
from fastnn.parameter import Parameter
from support import BACKENDS, HOST_BACKENDS, host_callable, tolerance
from support.op_cases import OPTIMIZER_CASES, optimizer_states, run_optimizer_steps

SHAPES = [(5, 4), (4,), (4, 3), (3,)]          # a two-layer Dense stack: W1, b1, W2, b2


def make_params(backend, shapes=SHAPES, dtype="float64", seed=0):
    """Parameters bound to one flat buffer on ``backend`` (as a model's), with random values."""
    be = fn.get_backend(backend)
    params, offset = [], 0
    for i, shape in enumerate(shapes):
        params.append(Parameter(f"{i}.p", shape))
    total = sum(p.size for p in params)
    flat = be.to_device(np.random.default_rng(seed).standard_normal(total).astype(dtype))
    grads = be.zeros((total,), np.dtype(dtype))
    for p in params:
        p.bind(flat, grads, offset)
        p.backend = be
        offset += p.size
    return params


def values(params):
    return [np.array(p.backend.to_host(p.data)) for p in params]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.backend.copy_into(p.grad, np.asarray(g, dtype=p.data.dtype))


def random_grads(steps, shapes=SHAPES, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def torch_params(torch, params):
    return [torch.tensor(v, requires_grad=True) for v in values(params)]


def step_both(opt, topt, params, tparams, grads, torch):
    """One step of the fastnn optimizer and of the torch one, on the same gradients."""
    set_grads(params, grads)
    for t, g in zip(tparams, grads):
        t.grad = torch.tensor(g)
    opt.step()
    topt.step()


def assert_same_as_torch(params, tparams, what=""):
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-9,
                                   err_msg=f"{p.name} {what}")


# (fastnn class, torch name or None, keyword arguments)
CONFIGS = [
    ("SGD", "SGD", dict(lr=0.1)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9, dampening=0.2)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", "SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    ("SGD", "SGD", dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1)),
    ("SGD", None, dict(lr=0.05, l1=0.01)),
    ("SGD", None, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, l1=0.01)),
    ("AdaGrad", "Adagrad", dict(lr=0.1)),
    ("AdaGrad", "Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("AdaGrad", "Adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-6)),
    ("AdaGrad", "Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
    ("RMSProp", "RMSprop", dict(lr=0.01)),
    ("RMSProp", "RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("RMSProp", "RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSProp", "RMSprop", dict(lr=0.01, centered=True)),
    ("RMSProp", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    ("RMSProp", None, dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("RMSProp", None, dict(lr=0.01, momentum=0.9, nesterov=True, centered=True, weight_decay=0.1)),
    ("Adam", "Adam", dict()),
    ("Adam", "Adam", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6)),
    ("Adam", "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", "Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", "AdamW", dict()),
    ("AdamW", "AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, betas=(0.5, 0.6))),
]
TORCH_CONFIGS = [c for c in CONFIGS if c[1] is not None]


def config_id(c):
    return c[0] + "(" + ",".join(f"{k}={v}" for k, v in c[-1].items()) + ")"


@pytest.mark.torch
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=config_id)
def test_matches_torch_step_by_step(config, fused, torch):
    name, torch_name, kwargs = config
    params = make_params("numpy")
    tparams = torch_params(torch, params)
    opt = getattr(optim, name)(params, fused=fused, **kwargs)
    topt = getattr(torch.optim, torch_name)(tparams, **kwargs)
    for step, grads in enumerate(random_grads(10)):
        step_both(opt, topt, params, tparams, grads, torch)
        assert_same_as_torch(params, tparams, f"after step {step + 1}")


@pytest.mark.parametrize("momentum, nesterov", [(0, False), (0.9, False), (0.9, True)])
def test_sgd_l1_matches_the_hand_written_loop(momentum, nesterov):
    params = make_params("numpy")
    opt = optim.SGD(params, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=0.01, l1=0.02)
    w = [v.copy() for v in values(params)]
    buf = [np.zeros_like(v) for v in w]
    for step, grads in enumerate(random_grads(10), 1):
        set_grads(params, grads)
        opt.step()
        for i, g in enumerate(grads):
            d = g + 0.01 * w[i] + 0.02 * np.sign(w[i])
            if momentum:
                buf[i] = d if step == 1 else momentum * buf[i] + d
                d = d + momentum * buf[i] if nesterov else buf[i]
            w[i] = w[i] - 0.05 * d
        for p, v in zip(params, w):
            np.testing.assert_allclose(p.data, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize("eps, centered", [(0.0, False), (1e-8, False), (1e-8, True)])
def test_rmsprop_nesterov_is_the_textbook_algorithm_8_6(eps, centered, fused):
    """Goodfellow et al., Algorithm 8.6, on a quadratic f(θ) = ½ θᵀAθ − bᵀθ: the optimizer
    holds the interim point θ + αv and takes the gradient there."""
    rng = np.random.default_rng(3)
    n, lr, rho, alpha = 6, 0.01, 0.9, 0.8
    q = rng.standard_normal((n, n))
    a, b = q @ q.T + np.eye(n), rng.standard_normal(n)
    grad = lambda x: a @ x - b                                     # noqa: E731
    theta = rng.standard_normal(n)
    v, r, gbar = np.zeros(n), np.zeros(n), np.zeros(n)
    (p,) = make_params("numpy", [(n,)])
    p.data[...] = theta
    opt = optim.RMSProp([p], lr=lr, alpha=rho, eps=eps, momentum=alpha, nesterov=True,
                        centered=centered, fused=fused)
    for step in range(20):
        interim = theta + alpha * v                                # θ̃ ← θ + αv
        g = grad(interim)                                          # gradient at θ̃
        r = rho * r + (1 - rho) * g * g                            # r ← ρr + (1 − ρ) g ⊙ g
        if centered:
            gbar = rho * gbar + (1 - rho) * g
            v = alpha * v - lr * g / (np.sqrt(r - gbar * gbar) + eps)
        else:
            v = alpha * v - lr * g / (np.sqrt(r) + eps)            # v ← αv − ε g / √r
        theta = theta + v                                          # θ ← θ + v
        p.grad[...] = grad(p.data)
        opt.step()
        np.testing.assert_allclose(p.data, theta + alpha * v, rtol=1e-12, atol=1e-12,
                                   err_msg=f"step {step + 1}")


# ----------------------------------------------------------------------------- fused vs loop


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_fused_matches_reference_loop(config, dtype, backend):
    """The fused path on ``backend`` against the per-parameter path (the reference kernel on
    each parameter's host arrays) from the same state, step by step: the backend's kernels,
    the runs and the per-parameter state views."""
    name, _, kwargs = config
    fused = make_params(backend, dtype=dtype)
    loop = make_params("numpy", dtype=dtype)
    opt_f = getattr(optim, name)(fused, fused=True, **kwargs)
    opt_r = getattr(optim, name)(loop, fused=False, **kwargs)
    tol = tolerance("op", dtype)
    for step, grads in enumerate(random_grads(6)):
        set_grads(fused, grads)
        set_grads(loop, grads)
        opt_f.step()
        opt_r.step()
        for a, b in zip(values(fused), values(loop)):
            np.testing.assert_allclose(a, b, **tol, err_msg=f"{backend} step {step + 1}")
    for k in opt_f.state:
        np.testing.assert_allclose(opt_f.be.to_host(opt_f.state[k]), opt_r.state[k], **tol)


@pytest.mark.parametrize("config", CONFIGS[1::3], ids=config_id)
def test_fused_and_loop_can_be_swapped_mid_training(config):
    name, _, kwargs = config
    a, b = make_params("numpy"), make_params("numpy")
    opt_a = getattr(optim, name)(a, **kwargs)
    opt_b = getattr(optim, name)(b, fused=False, **kwargs)
    for step, grads in enumerate(random_grads(8)):
        opt_a.fused = step % 2 == 0
        set_grads(a, grads)
        set_grads(b, grads)
        opt_a.step()
        opt_b.step()
    for x, y in zip(values(a), values(b)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_parameters_outside_flat_buffers_use_the_loop():
    p = Parameter("w", (3,))
    p.data, p.grad = np.ones(3), np.full(3, 0.5)
    opt = optim.Adam([p], lr=0.1)
    assert not opt.fused
    opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.1)                  # Adam's first step is lr * sign(g)
    with pytest.raises(ValueError, match="flat buffers"):
        optim.Adam([p], fused=True)


def test_the_per_parameter_path_needs_host_arrays():
    if "cuda" not in BACKENDS:
        pytest.skip("no cuda backend")
    with pytest.raises(ValueError, match="host arrays"):
        optim.Adam(make_params("cuda"), fused=False)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize("config", CONFIGS[::4], ids=config_id)          # every optimizer class
def test_both_paths_call_the_one_kernel_of_the_rule(config, fused, monkeypatch):
    """One source per rule: the fused path calls the backend's kernel once per flat run, the
    per-parameter path the reference backend's kernel once per parameter, on its views."""
    from fastnn.kernels import contract
    name, _, kwargs = config
    params = make_params("numpy")
    opt = getattr(optim, name)([{"params": params[:2]}, {"params": params[2:]}], fused=fused,
                               **kwargs)
    assert opt.kernel in contract.OPS
    be, shapes = fn.get_backend("numpy"), []
    kernel = getattr(be, opt.kernel)

    def spy(p, g, *args, **kw):
        shapes.append(p.shape)
        assert g.shape == p.shape and all(a is None or a.shape == p.shape for a in args)
        return kernel(p, g, *args, **kw)

    monkeypatch.setattr(be, opt.kernel, spy)
    set_grads(params, random_grads(1)[0])
    opt.step()
    assert shapes == ([(24,), (15,)] if fused else [p.shape for p in params])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_cpu_kernels_match_reference(case, dtype):
    """The Numba kernels called directly, against the reference: 7 steps of every case of the
    op-case table's update rules from zero state, on 301 elements."""
    pytest.importorskip("numba")
    from fastnn.kernels.cpu import optimizers as cpu
    results = []
    for module in (ref, cpu):
        rng = np.random.default_rng(6)
        p = rng.standard_normal(301).astype(dtype)
        grads = [rng.standard_normal(301).astype(dtype) for _ in range(7)]
        out = run_optimizer_steps(module, case, p, grads, optimizer_states(case, 301, dtype))
        assert p.dtype == np.dtype(dtype)
        results.append(out)
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], err_msg=key,
                                   **tolerance("optimizer steps", dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_helper_kernels_on_every_backend(backend, dtype):
    k = host_callable(fn.get_backend(backend))
    rng = np.random.default_rng(4)
    x = rng.standard_normal(37).astype(dtype)
    assert k.sum_of_squares(x) == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-5)
    y = x.copy()
    k.scale_inplace(y, 0.25)
    np.testing.assert_allclose(y, x * 0.25, rtol=1e-6)
    for shape, axis in [((7, 5), -1), ((4, 3, 2, 2), 0), ((6, 3), 0)]:
        w = (3 * rng.standard_normal(shape)).astype(dtype)
        w[..., 0] *= 1e-3 if axis == 0 else 1                      # some units already short
        got = w.copy()
        k.renorm_units(got, 1.5, axis)
        axes = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
        norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=axes, keepdims=True))
        expected = np.where(norms > 1.5, w * (1.5 / norms), w)
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == "float32" else 1e-12)


# ----------------------------------------------------------------------------- save / resume


def toy_data(n=90, features=6, classes=3, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


RESUME_CONFIGS = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, max_norm=0.8, clip_grad_norm=1.0)),
    ("AdaGrad", dict(lr=0.05, lr_decay=0.01)),
    ("RMSProp", dict(lr=0.01, momentum=0.5, centered=True)),
    ("RMSProp", dict(lr=0.01, momentum=0.5, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.05)),
]


@pytest.mark.parametrize("name", HOST_BACKENDS)
@pytest.mark.parametrize("config", RESUME_CONFIGS, ids=config_id)
def test_training_resumes_exactly_after_save_and_load(config, name, tmp_path):
    opt_name, kwargs = config
    x, y = toy_data()
    layers = lambda: [fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 3)]  # noqa: E731
    fit = dict(epochs=1, batch_size=16, verbose=0)

    straight = fn.Sequential(layers(), backend=name, dtype="float64", seed=3)
    opt = getattr(optim, opt_name)(straight.parameters(), **kwargs)
    straight.fit(x, y, optimizer=opt, seed=0, **fit)
    straight.fit(x, y, optimizer=opt, seed=1, **fit)

    first = fn.Sequential(layers(), backend=name, dtype="float64", seed=3)
    opt1 = getattr(optim, opt_name)(first.parameters(), **kwargs)
    first.fit(x, y, optimizer=opt1, seed=0, **fit)
    first.save(tmp_path / "m.npz", optimizer=opt1)
    resumed = fn.Sequential.load(tmp_path / "m.npz", backend=name)
    opt2 = getattr(optim, opt_name)(resumed.parameters(), **kwargs)
    resumed.load_optimizer_state(tmp_path / "m.npz", opt2)
    assert opt2.step_count == opt1.step_count == 6
    resumed.fit(x, y, optimizer=opt2, seed=1, **fit)
    np.testing.assert_array_equal(resumed.get_weights(), straight.get_weights())


def test_state_dict_round_trip_keeps_lr_and_refuses_a_mismatch():
    params = make_params("numpy")
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    for grads in random_grads(3):
        set_grads(params, grads)
        opt.step()
    opt.lr = 0.005
    state = opt.state_dict()
    assert sorted(state) == ["lr", "state.exp_avg", "state.exp_avg_sq", "state.max_exp_avg_sq",
                             "step_count"]
    other = optim.Adam(make_params("numpy"), lr=0.01, amsgrad=True)
    other.load_state_dict(state)
    assert (other.lr, other.step_count) == (0.005, 3)
    for k in state:
        if k.startswith("state."):
            np.testing.assert_array_equal(other.state[k[6:]], state[k])
    with pytest.raises(ValueError, match="missing"):
        optim.Adam(make_params("numpy"), amsgrad=True).load_state_dict(optim.SGD(params, lr=0.1).state_dict())
    with pytest.raises(ValueError, match="shape"):
        optim.Adam(make_params("numpy", [(3,)])).load_state_dict(state)


# ----------------------------------------------------------------------------- groups


@pytest.mark.torch
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize("name, torch_name, kwargs", [
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", "Adam", dict(lr=0.01)),
    ("RMSProp", "RMSprop", dict(lr=0.01, momentum=0.5)),
])
def test_parameter_groups_match_torch(name, torch_name, kwargs, fused, torch):
    params = make_params("numpy")
    tparams = torch_params(torch, params)
    groups = lambda ps: [{"params": ps[0::2], "weight_decay": 0.1},           # noqa: E731
                         {"params": ps[1::2], "weight_decay": 0, "lr": kwargs["lr"] / 2}]
    opt = getattr(optim, name)(groups(params), fused=fused, **kwargs)
    topt = getattr(torch.optim, torch_name)(groups(tparams), **kwargs)
    assert len(opt._runs[0]) == 2 and len(opt._runs[1]) == 2                 # one run per parameter
    for step, grads in enumerate(random_grads(8)):
        if step == 4:                        # a schedule halves the rate: every group follows
            opt.lr = kwargs["lr"] / 2
            for g in topt.param_groups:
                g["lr"] /= 2
        step_both(opt, topt, params, tparams, grads, torch)
        assert_same_as_torch(params, tparams, f"after step {step + 1}")


def test_groups_of_contiguous_parameters_run_one_kernel_call_each():
    params = make_params("numpy")
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:], "momentum": 0.9}], lr=0.1)
    assert [len(r) for r in opt._runs] == [1, 1]
    assert "momentum_buffer" in opt.state and opt.state["momentum_buffer"].size == sum(p.size for p in params)
    assert len(optim.SGD(params, lr=0.1)._runs[0]) == 1


def test_group_errors():
    params = make_params("numpy")
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([{"params": params}, {"params": params[:1]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown option"):
        optim.SGD([{"params": params, "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([{"params": []}])
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([{"params": params, "nesterov": True}], lr=0.1)
    with pytest.raises(TypeError, match="dict"):
        optim.SGD([{"params": params[:2]}, params[2]], lr=0.1)


# ----------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
def test_max_norm_clips_each_units_incoming_weights_after_the_step(fused):
    params = make_params("numpy")
    before = values(params)
    grads = [3 * g for g in random_grads(1)[0]]
    set_grads(params, grads)
    optim.SGD(params, lr=1.0, max_norm=1.2, fused=fused).step()
    for p, w, g in zip(params, before, grads):
        stepped = w - g
        if p.data.ndim == 1:
            np.testing.assert_allclose(p.data, stepped, rtol=1e-14)           # biases untouched
        else:
            norms = np.linalg.norm(stepped, axis=0)
            assert norms.max() > 1.2                                           # clipping happens
            np.testing.assert_allclose(p.data, stepped * np.minimum(1, 1.2 / norms), rtol=1e-12)
            assert np.linalg.norm(p.data, axis=0).max() <= 1.2 + 1e-12


@pytest.mark.parametrize("name", HOST_BACKENDS)
def test_max_norm_holds_through_fit(name):
    x, y = toy_data()
    model = fn.Sequential([fn.Dense(6, 16), fn.ReLU(), fn.Dense(16, 3)], backend=name,
                          dtype="float64", seed=0)
    opt = optim.SGD(model.parameters(), lr=2.0, max_norm=0.5)
    assert not opt.foldable_into_gemm(model)
    model.fit(x, y, optimizer=opt, epochs=2, batch_size=16, verbose=0, seed=0)
    for p in model.parameters():
        if p.data.ndim == 2:
            assert np.linalg.norm(p.data, axis=0).max() <= 0.5 + 1e-12


@pytest.mark.torch
@pytest.mark.parametrize("limit", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(limit, torch):
    params = make_params("numpy")
    tparams = torch_params(torch, params)
    opt = optim.SGD(params, lr=0.1, momentum=0.9, clip_grad_norm=limit)
    topt = torch.optim.SGD(tparams, lr=0.1, momentum=0.9)
    for grads in random_grads(5):
        set_grads(params, grads)
        for t, g in zip(tparams, grads):
            t.grad = torch.tensor(g)
        total = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        assert opt.grad_norm() == pytest.approx(total, rel=1e-12)
        opt.step()
        torch.nn.utils.clip_grad_norm_(tparams, limit)
        topt.step()
        for p, t in zip(params, tparams):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)     # clipped in place
        assert opt.grad_norm() == pytest.approx(min(total, limit), rel=1e-5)


def test_foldable_into_gemm_only_for_plain_sgd():
    model = fn.Sequential([fn.Dense(4, 3), fn.ReLU(), fn.Dense(3, 2)], backend="numpy")
    ps = model.parameters()
    assert optim.SGD(ps, lr=0.1).foldable_into_gemm(model)
    assert optim.SGD(ps, lr=0.1).foldable_into_gemm()
    for opt in [optim.SGD(ps, lr=0.1, momentum=0.9), optim.SGD(ps, lr=0.1, weight_decay=1e-4),
                optim.SGD(ps, lr=0.1, l1=1e-4), optim.SGD(ps, lr=0.1, max_norm=3.0),
                optim.SGD(ps, lr=0.1, clip_grad_norm=1.0),
                optim.SGD([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.1),
                optim.SGD([{"params": ps, "lr": 0.2}], lr=0.1),
                optim.SGD(ps[2:], lr=0.1)]:
        assert not opt.foldable_into_gemm(model), opt
    other = fn.Sequential([fn.Dense(4, 3), fn.ReLU(), fn.Dense(3, 2)], backend="numpy")
    assert not optim.SGD(ps, lr=0.1).foldable_into_gemm(other)
    assert not hasattr(optim.Adam(ps), "foldable_into_gemm")                # only SGD folds


def test_count_steps_counts_the_steps_a_compiled_epoch_made():
    opt = optim.Adam(make_params("numpy"), lr=0.01)
    opt.step()
    opt.count_steps(4)
    assert opt.step_count == 5 and opt.state_dict()["step_count"] == 5
    opt.count_steps(0)
    assert opt.step_count == 5
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="count_steps"):
            opt.count_steps(bad)


# ----------------------------------------------------------------------------- schedules


def test_linear_decay_values():
    opt = optim.SGD(make_params("numpy"), lr=0.1)
    s = optim.LinearDecay(opt, final_lr=0.01, steps=4)
    assert [s.value(k) for k in range(7)] == pytest.approx(
        [(1 - k / 4) * 0.1 + (k / 4) * 0.01 for k in range(5)] + [0.01, 0.01], rel=1e-15)
    assert s.value(0) == 0.1 and not s.per_batch
    got = [s.step() for _ in range(6)]
    assert got == [s.value(k) for k in range(1, 7)] and opt.lr == 0.01


def test_step_exponential_and_cosine_decay_values():
    opt = optim.Adam(make_params("numpy"), lr=0.2)
    assert [optim.StepDecay(opt, step_size=3, gamma=0.5).value(k) for k in range(7)] == \
        pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05])
    assert [optim.ExponentialDecay(opt, gamma=0.9).value(k) for k in range(3)] == \
        pytest.approx([0.2, 0.18, 0.162])
    cos = optim.CosineDecay(opt, steps=4, final_lr=0.02)
    assert [cos.value(k) for k in range(6)] == pytest.approx(
        [0.02 + 0.18 * (1 + math.cos(math.pi * min(k, 4) / 4)) / 2 for k in range(6)])
    assert cos.value(2) == pytest.approx(0.11) and cos.value(4) == cos.value(9) == pytest.approx(0.02)


@pytest.mark.torch
def test_schedules_match_torch_schedulers(torch):
    def run(make_ours, make_theirs, steps=8):
        opt = optim.SGD(make_params("numpy"), lr=0.1)
        ours = make_ours(opt)
        topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = make_theirs(topt)
        for _ in range(steps):
            ours.step()
            topt.step()
            theirs.step()
            assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)

    lr_sched = torch.optim.lr_scheduler
    run(lambda o: optim.StepDecay(o, 3, 0.5), lambda o: lr_sched.StepLR(o, 3, 0.5))
    run(lambda o: optim.ExponentialDecay(o, 0.8), lambda o: lr_sched.ExponentialLR(o, 0.8))
    run(lambda o: optim.CosineDecay(o, 5, 0.01), lambda o: lr_sched.CosineAnnealingLR(o, 5, 0.01), 5)
    run(lambda o: optim.LinearDecay(o, 0.02, 5),
        lambda o: lr_sched.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=5))


def test_schedule_state_dict_and_per_batch_flag():
    opt = optim.SGD(make_params("numpy"), lr=0.1)
    s = optim.StepDecay(opt, step_size=2, gamma=0.1, per_batch=True)
    assert s.per_batch
    for _ in range(5):
        s.step()
    state = s.state_dict()
    assert state == {"k": 5, "initial_lr": 0.1}
    opt2 = optim.SGD(make_params("numpy"), lr=0.1)
    s2 = optim.StepDecay(opt2, step_size=2, gamma=0.1)
    s2.load_state_dict(state)
    assert s2.k == 5 and opt2.lr == pytest.approx(1e-3) == opt.lr
    assert s2.step() == s.step()
    with pytest.raises(ValueError, match="steps"):
        optim.LinearDecay(opt, 0.01, steps=0)


# ----------------------------------------------------------------------------- misc


def test_get_builds_every_optimizer_by_name():
    params = make_params("numpy")
    for name, cls in [("sgd", optim.SGD), ("adagrad", optim.AdaGrad), ("rmsprop", optim.RMSProp),
                      ("adam", optim.Adam), ("adamw", optim.AdamW), ("ADAM", optim.Adam)]:
        opt = optim.get(name, params, lr=0.02)
        assert type(opt) is cls and opt.lr == 0.02
    assert optim.get("nesterov", params, lr=0.1).hyper["nesterov"]
    assert optim.get("momentum", params, lr=0.1).hyper["momentum"] == 0.9
    assert optim.get("adam", params).lr == 1e-3
    assert optim.get("adamw", params).hyper["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.get("lbfgs", params)


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD(p, lr=-1), lambda p: optim.Adam(p, betas=(1.0, 0.9)),
    lambda p: optim.RMSProp(p, alpha=1.5), lambda p: optim.RMSProp(p, nesterov=True),
    lambda p: optim.AdaGrad(p, eps=-1), lambda p: optim.SGD(p, lr=0.1, max_norm=0),
    lambda p: optim.Adam(p, clip_grad_norm=-1.0), lambda p: optim.Adam([]),
])
def test_invalid_hyper_parameters_are_refused(make):
    with pytest.raises(ValueError):
        make(make_params("numpy"))


def test_adam_trains_digits():
    (x, y), (xt, yt) = fn.datasets.load_digits_split()
    backend = "cpu" if "cpu" in BACKENDS else "numpy"
    model = fn.Sequential([fn.Flatten(), fn.Dense(64, 100), fn.ReLU(), fn.Dense(100, 10)],
                          backend=backend, seed=0)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=10, batch_size=32,
              verbose=0, seed=0)
    assert model.evaluate(xt, yt)["accuracy"] >= 0.93
