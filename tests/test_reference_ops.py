"""Every op of kernels/reference.py, called directly, against float64 central differences and
(when installed) against PyTorch: forward values and gradients via torch autograd; then every
other backend's kernels against the reference, case by case, in float64 and float32.

The ops and their cases are described once, in ``support.op_cases`` (the ``Op`` and ``LossOp``
tables, and the table ``OP_CASES`` of every kernel op's cases); the tests here are parametrised
over those tables.
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn.kernels import reference as ref
from support import OTHER_BACKENDS, host_callable, numerical_grad
from support.op_cases import (LOSS_SHAPES, LOSSES, OP_CASES, OPS, OPS_BY_NAME, SGD_CONFIGS,
                              away_from_zero, assert_case_matches_reference, dense_accumulate,
                              dense_act_op, dense_backward, make_dense, run_loss, run_op,
                              run_sgd_steps, sgd_id)
from support.tolerances import GRADIENT

ATOL, RTOL = GRADIENT["atol"], GRADIENT["rtol"]

OP_PARAMS = [pytest.param(op, shape, id=f"{op.name}-{'x'.join(map(str, shape))}")
             for op in OPS for shape in op.shapes]


def test_op_table_covers_every_activation():
    assert {op.name for op in OPS} >= {f"dense_act_{a.name.lower()}" for a in ref.ACTIVATIONS}


@pytest.mark.parametrize("op, shape", OP_PARAMS)
def test_op_gradient_matches_central_differences(op, shape):
    rng = np.random.default_rng(0)
    inputs = op.make(rng, shape)
    out = op.forward(ref, inputs)
    dy = rng.standard_normal(out.shape)
    analytic = op.backward(ref, inputs, out, dy)
    for name in op.diff:
        numeric = numerical_grad(lambda: float(np.sum(op.forward(ref, inputs) * dy)), inputs[name])
        np.testing.assert_allclose(analytic[name], numeric, atol=ATOL, rtol=RTOL,
                                   err_msg=f"{op.name}: gradient w.r.t. {name}")


@pytest.mark.torch
@pytest.mark.parametrize("op, shape", OP_PARAMS)
def test_op_matches_torch(op, shape, torch):
    rng = np.random.default_rng(1)
    inputs = op.make(rng, shape)
    out = op.forward(ref, inputs)
    dy = rng.standard_normal(out.shape)
    grads = op.backward(ref, inputs, out, dy)
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in op.diff)
               for k, v in inputs.items() if k in op.diff}
    t_out = op.torch(torch, tensors)
    np.testing.assert_allclose(out, t_out.detach().numpy(), atol=1e-12, rtol=1e-12,
                               err_msg=f"{op.name}: forward")
    t_out.backward(torch.tensor(dy))
    for name in op.diff:
        np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), atol=1e-12, rtol=1e-10,
                                   err_msg=f"{op.name}: gradient w.r.t. {name}")


# ----------------------------------------------------------------------------- details of ops


def test_dense_backward_accumulates_and_skips_dx():
    rng = np.random.default_rng(2)
    i = make_dense(rng, (4, 3, 2))
    dy = rng.standard_normal((4, 2))
    once = dense_backward(ref, i, None, dy)
    added = dense_accumulate(ref, i, None, dy)                  # from ones; dx=None: first layer
    np.testing.assert_allclose(added["dw accumulated"], 1 + once["w"], rtol=1e-14)
    np.testing.assert_allclose(added["db accumulated"], 1 + once["b"], rtol=1e-14)


@pytest.mark.parametrize("act", sorted(ref.ACTIVATIONS), ids=lambda a: a.name.lower())
def test_dense_act_backward_accumulates(act):
    op = dense_act_op(act)
    rng = np.random.default_rng(3)
    i = make_dense(rng, (4, 3, 2))
    out = op.forward(ref, i)
    dy = rng.standard_normal(out.shape)
    once = op.backward(ref, i, out, dy)
    added = op.accumulate(ref, i, out, dy)                      # from 2, without dx
    np.testing.assert_allclose(added["dw accumulated"], 2 + once["w"], rtol=1e-14)
    np.testing.assert_allclose(added["db accumulated"], 2 + once["b"], rtol=1e-14)


@pytest.mark.parametrize("shape, n_slopes", [((4, 6), 1), ((4, 6), 6), ((2, 3, 4, 5), 3)])
def test_prelu_backward_accumulates(shape, n_slopes):
    rng = np.random.default_rng(4)
    x, a, dy = away_from_zero(rng, shape), np.full(n_slopes, 0.25), rng.standard_normal(shape)
    dx, da = np.empty(shape), np.empty(n_slopes)
    ref.prelu_backward(x, a, dy, dx, da)
    da2 = np.full(n_slopes, 1.0)
    ref.prelu_backward(x, a, dy, dx, da2, accumulate=True)
    np.testing.assert_allclose(da2, 1 + da, rtol=1e-14)


def test_prelu_per_channel_slopes_act_on_axis_1():
    x = -np.ones((1, 2, 2, 2))
    out = np.empty_like(x)
    ref.prelu_forward(x, np.array([0.1, 0.3]), out)
    np.testing.assert_array_equal(out[0, 0], -0.1 * np.ones((2, 2)))
    np.testing.assert_array_equal(out[0, 1], -0.3 * np.ones((2, 2)))


def test_maxout_takes_the_maximum_of_consecutive_groups():
    x = np.array([[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]])
    out, argmax = np.empty((1, 2)), np.empty((1, 2), dtype=np.intp)
    ref.maxout_forward(x, out, argmax, 3)
    np.testing.assert_array_equal(out, [[5.0, -1.0]])
    np.testing.assert_array_equal(argmax, [[1, 0]])
    dx = np.empty_like(x)
    ref.maxout_backward(argmax, np.array([[10.0, 20.0]]), dx, 3)
    np.testing.assert_array_equal(dx, [[0, 10, 0, 20, 0, 0]])


@pytest.mark.parametrize("kernel", ["sigmoid", "tanh", "softmax", "log_softmax"])
def test_activations_are_finite_for_huge_inputs(kernel):
    x = np.array([[1000.0, -1000.0, 0.0], [-800.0, 700.0, 1e300]])
    out = np.empty_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        getattr(ref, kernel + "_forward")(x, out)
    assert np.isfinite(out).all()
    if kernel == "sigmoid":
        np.testing.assert_array_equal(out[0], [1.0, 0.0, 0.5])
    if kernel == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_relu_subgradient_at_zero_is_zero():
    x = np.array([[0.0, -1.0, 2.0]])
    y = np.empty_like(x)
    ref.relu_forward(x, y)
    dx = np.empty_like(x)
    ref.relu_backward(x, y, np.ones_like(x), dx)
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 1.0]])


def test_count_correct():
    out = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert ref.count_correct(out, np.array([1, 1, 1])) == 2


def test_take_rows_and_copy_into():
    a = np.arange(12.0).reshape(4, 3)
    out = np.empty((2, 3))
    ref.take_rows(a, np.array([3, 1]), out)
    np.testing.assert_array_equal(out, a[[3, 1]])
    dst = ref.zeros((2, 3), np.float32)
    ref.copy_into(dst, out)
    np.testing.assert_array_equal(dst, out)
    assert ref.empty((2, 2), np.float64).shape == (2, 2)
    assert ref.to_host(ref.to_device(a)) is a


# ----------------------------------------------------------------------------- losses


LOSS_CASES = [pytest.param(op, shape, id=f"{op.name}-{'x'.join(map(str, shape))}")
              for op in LOSSES for shape in LOSS_SHAPES]


@pytest.mark.parametrize("op, shape", LOSS_CASES)
def test_loss_value_and_gradient(op, shape):
    rng = np.random.default_rng(5)
    out, target = op.make(rng, shape)
    value, grad = run_loss(ref, op.name, out, target)
    np.testing.assert_allclose(value, op.formula(out, target), rtol=1e-12, atol=1e-14)
    numeric = numerical_grad(lambda: run_loss(ref, op.name, out, target)[0], out)
    np.testing.assert_allclose(grad, numeric, atol=ATOL, rtol=RTOL)


@pytest.mark.torch
@pytest.mark.parametrize("op, shape", LOSS_CASES)
def test_loss_matches_torch(op, shape, torch):
    rng = np.random.default_rng(6)
    out, target = op.make(rng, shape)
    value, grad = run_loss(ref, op.name, out, target)
    t_out = torch.tensor(out, requires_grad=True)
    t_value = op.torch(torch, t_out, torch.from_numpy(target))
    t_value.backward()
    np.testing.assert_allclose(value, t_value.item(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, t_out.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_mse_gradient_is_residual_over_n():
    a, y = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[0.0, 2.0], [1.0, 1.0]])
    value, grad = run_loss(ref, "mse_loss", a, y)
    assert value == pytest.approx(0.5 * (1 + 0 + 4 + 16) / 2)
    np.testing.assert_allclose(grad, (a - y) / 2)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 0.0], [-1000.0, 0.0, 1000.0]])
    labels = np.array([0, 1, 0])
    grad = np.empty_like(logits)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        value = ref.cross_entropy_loss(logits, labels, grad)
    # -log p: row 0 -> 0, row 1 -> log 2, row 2 -> 2000
    assert value == pytest.approx((0 + np.log(2) + 2000) / 3, rel=1e-12)
    expected = np.array([[0, 0, 0], [0.5, -0.5, 0], [-1, 0, 1]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-15)


@pytest.mark.torch
def test_cross_entropy_huge_logits_match_torch(torch):
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 999.0, 0.0], [-1000.0, 0.0, 1000.0]])
    labels = np.array([0, 1, 0])
    value, grad = run_loss(ref, "cross_entropy_loss", logits, labels)
    t = torch.tensor(logits, requires_grad=True)
    tv = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels))
    tv.backward()
    assert value == pytest.approx(tv.item(), rel=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), atol=1e-15)


def test_bce_with_logits_is_stable_for_huge_logits():
    z = np.array([[1000.0, -1000.0, 1000.0, -1000.0]])
    y = np.array([[1.0, 0.0, 0.0, 1.0]])
    grad = np.empty_like(z)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        value = ref.bce_with_logits_loss(z, y, grad)
    assert value == pytest.approx(2000.0, rel=1e-12)
    np.testing.assert_allclose(grad, [[0.0, 0.0, 1.0, -1.0]])


# ----------------------------------------------------------------------------- sgd_step


def sgd_by_hand(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, l1=0.0):
    """PyTorch's SGD written out (plus the L1 term), one step per gradient in ``grads``."""
    p = p.copy()
    v = None
    for step, g in enumerate(grads):
        d = g + weight_decay * p + l1 * np.sign(p)
        if momentum:
            v = d.copy() if step == 0 else momentum * v + (1 - dampening) * d
            d = d + momentum * v if nesterov else v
        p = p - lr * d
    return p


def run_sgd_step(p, grads, lr, **hyper):
    """The reference's sgd_step from ``p``, one step per gradient: the final parameters."""
    return run_sgd_steps(ref, p, grads, lr, **hyper)["p"]


@pytest.mark.parametrize("hyper", SGD_CONFIGS, ids=sgd_id)
def test_sgd_step_matches_the_formula(hyper):
    rng = np.random.default_rng(7)
    p = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(5)]
    np.testing.assert_allclose(run_sgd_step(p, grads, 0.1, **hyper), sgd_by_hand(p, grads, 0.1, **hyper),
                               rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("nesterov, expected", [(False, [0.95, 0.855]), (True, [0.905, 0.7695])])
def test_sgd_momentum_by_hand_numbers(nesterov, expected):
    """p = 1, g = 0.5 twice, lr 0.1, momentum 0.9: buf 0.5 then 0.95."""
    p, buf = np.array([1.0]), np.zeros(1)
    for step, want in enumerate(expected):
        ref.sgd_step(p, np.array([0.5]), buf, 0.1, momentum=0.9, nesterov=nesterov, first_step=step == 0)
        assert p[0] == pytest.approx(want, rel=1e-14)


@pytest.mark.torch
@pytest.mark.parametrize("hyper", [h for h in SGD_CONFIGS if "l1" not in h], ids=sgd_id)
def test_sgd_step_matches_torch(hyper, torch):
    rng = np.random.default_rng(8)
    p = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(5)]
    tp = torch.tensor(p, requires_grad=True)
    opt = torch.optim.SGD([tp], lr=0.1, **hyper)
    for g in grads:
        tp.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(run_sgd_step(p, grads, 0.1, **hyper), tp.detach().numpy(),
                               rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------- other backends


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(OP_CASES))
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_op_matches_reference(name, case, dtype):
    """Every case of the op-case table (every kernel op with its variants: written, accumulated,
    without dx, on kinks and ties, huge logits, class weights, several steps of each update
    rule) gives the reference's outputs on the same inputs, of the same dtypes, within the
    case's tolerance. Outputs start as NaN: nothing may be left unwritten."""
    assert_case_matches_reference(case, host_callable(fn.get_backend(name)), dtype)


@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_cross_entropy_is_stable_for_huge_logits(name):
    k = host_callable(fn.get_backend(name))
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 0.0], [-1000.0, 0.0, 1000.0]])
    labels = np.array([0, 1, 0])
    for dtype in ("float64", "float32"):
        value, grad = run_loss(k, "cross_entropy_loss", logits.astype(dtype), labels)
        assert value == pytest.approx((np.log(2) + 2000) / 3, rel=1e-6)
        np.testing.assert_allclose(grad, np.array([[0, 0, 0], [0.5, -0.5, 0], [-1, 0, 1]]) / 3,
                                   atol=1e-7)


def _maxout_run(kern, x, dy, pieces):
    return run_op(OPS_BY_NAME[f"maxout{pieces}"], kern, {"x": x}, dy)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_maxout_picks_the_reference_winner_on_ties_and_infinities(name, dtype):
    """Ties go to the first maximum, a group of -inf to its first element, as the reference."""
    x = np.array([[1.0, 1.0, 0.5, -np.inf, -np.inf, -np.inf, 2.0, 3.0, 3.0],
                  [0.0, -0.0, 0.0, -1.0, -1.0, -2.0, 7.0, np.inf, np.inf]], dtype)
    dy = np.arange(1.0, 7.0, dtype=dtype).reshape(2, 3)
    expected, got = _maxout_run(ref, x, dy, 3), _maxout_run(host_callable(fn.get_backend(name)), x, dy, 3)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OTHER_BACKENDS)
def test_backend_maxout_lets_a_nan_win_as_the_reference(name, dtype):
    """A NaN in a group wins (the first NaN), as NumPy's argmax in the reference: the output
    shows the NaN instead of hiding it."""
    x = np.array([[2.0, np.nan, 3.0, np.nan, 1.0, np.nan]], dtype)
    dy = np.array([[1.0, 2.0]], dtype)
    expected, got = _maxout_run(ref, x, dy, 3), _maxout_run(host_callable(fn.get_backend(name)), x, dy, 3)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
