"""AdaDelta (fn.optim.AdaDelta): trajectories against torch.optim.Adadelta in float64, the fused
kernel of every backend against the reference's per-parameter path, argument checks, fit."""
import numpy as np
import pytest

import fastnn as fn
from fastnn import optim
from support import BACKENDS, host, tolerance

CONFIGS = [dict(), dict(lr=0.5, rho=0.5), dict(lr=2.0, rho=0.95, eps=1e-3, weight_decay=0.1)]


def _model(backend, dtype="float64", seed=0):
    return fn.Sequential([fn.Dense(5, 4), fn.Tanh(), fn.Dense(4, 3)], backend=backend,
                         dtype=dtype, seed=seed)


def _grads(steps, model, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape) for p in model.parameters()] for _ in range(steps)]


def _set_grads(model, grads):
    for p, g in zip(model.parameters(), grads):
        model.be.copy_into(p.grad, np.asarray(g, dtype=model.dtype))


@pytest.mark.parametrize("kwargs", CONFIGS, ids=str)
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "loop"])
def test_matches_torch_adadelta_step_by_step(torch, kwargs, fused):
    model = _model("numpy")
    tparams = [torch.tensor(host(p.data).copy(), requires_grad=True) for p in model.parameters()]
    opt = optim.AdaDelta(model.parameters(), fused=fused, **kwargs)
    topt = torch.optim.Adadelta(tparams, **kwargs)
    for step, grads in enumerate(_grads(12, model)):
        _set_grads(model, grads)
        for t, g in zip(tparams, grads):
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, t in zip(model.parameters(), tparams):
            np.testing.assert_allclose(host(p.data), t.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{p.name} after step {step + 1}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_kernel_matches_the_reference_loop(backend, dtype):
    kwargs = CONFIGS[2]
    fused, loop = _model(backend, dtype), _model("numpy", dtype)
    opt_f = optim.AdaDelta(fused.parameters(), fused=True, **kwargs)
    opt_r = optim.AdaDelta(loop.parameters(), fused=False, **kwargs)
    for grads in _grads(6, loop):
        _set_grads(fused, grads)
        _set_grads(loop, grads)
        opt_f.step()
        opt_r.step()
    np.testing.assert_allclose(fused.get_weights(), loop.get_weights(),
                               **tolerance("optimizer steps", dtype))
    for name in ("square_avg", "acc_delta"):
        np.testing.assert_allclose(host(opt_f.state[name]), host(opt_r.state[name]),
                                   **tolerance("optimizer steps", dtype))


def test_bad_hyper_parameters_are_named():
    params = _model("numpy").parameters()
    with pytest.raises(ValueError, match="rho must be in"):
        optim.AdaDelta(params, rho=1.0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        optim.AdaDelta(params, eps=0)


def test_fit_by_name_lowers_the_loss(backend):
    x = np.random.default_rng(0).standard_normal((64, 5))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    model = _model(backend, "float32")
    hist = model.fit(x, y, optimizer="adadelta", epochs=8, batch_size=16, verbose=0, seed=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
