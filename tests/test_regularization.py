"""Dropout, BatchNorm, class-weighted losses and the initialisers of issue 6: kernels of every
backend against the NumPy reference, gradients against float64 central differences, and
running statistics, weighted losses and gradients against PyTorch."""
import numpy as np
import pytest

import fastnn as fn
from fastnn.errors import ModelFileError, ShapeError
from fastnn.init import output_bias_from_marginals
from fastnn.kernels import reference as ref
from fastnn.kernels.counter_rng import counter_bits
from fastnn.layers import BatchNorm, Dropout
from fastnn.losses import CrossEntropyLoss, NLLLoss
from fastnn.epochs import LoopEpoch, make_epoch
from support import (BACKENDS, check_layer_grad, check_loss_grad, check_model_grad, host,
                     kernel_implementations, tolerance)
from support.op_cases import run_batchnorm, run_dropout, run_loss

# every backend's kernels callable on host arrays, plus the cpu backend's Numba modules
# themselves (so its kernels are checked whatever kernels/cpu/__init__ exports)
KERNEL_MODULES = kernel_implementations(BACKENDS, cpu_modules=("losses", "regularization"))
KERNEL_IDS = [name for name, _ in KERNEL_MODULES]


# ----------------------------------------------------------------------------- kernels vs reference


def _bn_run(k, x, gamma, beta, dy, dx_none=False, accumulate=False):
    c = x.shape[1]
    rm, rv = np.linspace(-1, 1, c).astype(x.dtype), np.linspace(0.5, 2, c).astype(x.dtype)
    return run_batchnorm(k, x, gamma, beta, dy, rm, rv, 0.3, 1e-3, dx=not dx_none, accumulate=accumulate)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 4, 5), (2, 1, 1, 1)])
@pytest.mark.parametrize("variant", ["plain", "accumulate", "no-dx"])
@pytest.mark.parametrize("name", KERNEL_IDS)
def test_batchnorm_kernels_match_reference(name, variant, shape, dtype):
    k = dict(KERNEL_MODULES)[name]
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal(shape) + 1).astype(dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    kw = dict(dx_none=variant == "no-dx", accumulate=variant == "accumulate")
    expected, got = _bn_run(ref, x, gamma, beta, dy, **kw), _bn_run(k, x, gamma, beta, dy, **kw)
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key].dtype == dtype
        np.testing.assert_allclose(got[key], expected[key], err_msg=key, **tolerance("batch statistics", dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", KERNEL_IDS)
def test_dropout_and_weighted_loss_kernels_match_reference(name, dtype):
    k = dict(KERNEL_MODULES)[name]
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((5, 3, 2, 2)).astype(dtype), rng.standard_normal((5, 3, 2, 2)).astype(dtype)
    mask = ((rng.random(x.shape) >= 0.4) / 0.6).astype(dtype)
    tol = tolerance("op", dtype)
    expected, got = run_dropout(ref, x, mask, dy), run_dropout(k, x, mask, dy)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], err_msg=key, **tol)
    logits, labels = 2 * rng.standard_normal((7, 4)).astype(dtype), rng.integers(0, 4, 7)
    weight = np.array([0.5, 2.0, 0.0, 1.5], dtype=dtype)
    for fname, out in (("cross_entropy_loss", logits),
                       ("nll_loss", logits - np.log(np.exp(logits).sum(1, keepdims=True)))):
        va, ga = run_loss(ref, fname, out, labels, weight)
        vb, gb = run_loss(k, fname, out, labels, weight)
        assert vb == pytest.approx(va, rel=tol["rtol"])
        np.testing.assert_allclose(gb, ga, **tol)


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", KERNEL_IDS)
def test_dropout_mask_kernels_match_reference_bit_for_bit(name, dtype):
    k = dict(KERNEL_MODULES)[name]
    sizes = [(1,), (7, 3)] if "cuda" in name else [(1,), (7, 3), (40, 1100)]  # > 2 cpu chunks
    for shape in sizes:
        for key, p in ((0, 0.5), (123456789012345, 0.1), ((1 << 63) - 1, 0.9)):
            expected, got = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
            ref.dropout_mask(key, p, expected)
            k.dropout_mask(key, p, got)
            np.testing.assert_array_equal(got, expected, err_msg=f"{shape} key {key} p {p}")
            assert set(np.unique(expected)) <= {0.0, dtype(1.0 / (1.0 - p))}


def test_dropout_mask_is_the_same_at_any_thread_count():
    if "cpu" not in BACKENDS:
        pytest.skip("cpu backend not available")
    from fastnn.kernels.cpu import regularization as cpu_reg
    masks = []
    for parts in (1, 2, 3, 7):
        mask = np.full(50_001, np.nan, np.float32)
        cpu_reg._fill_mask(99, 1 << 22, np.float32(4 / 3), mask, parts)
        masks.append(mask)
    for m in masks[1:]:
        np.testing.assert_array_equal(m, masks[0])


def test_dropout_mask_bits_look_independent():
    """The counter bits: keep fraction 1 - p, no correlation between neighbouring elements,
    between the same element under consecutive keys, or between rows of a batch."""
    n, p = 200_000, 0.3
    masks = np.empty((3, n))
    for key in range(3):
        ref.dropout_mask(key, p, masks[key])
    kept = masks > 0
    sigma = np.sqrt(p * (1 - p) / n)
    for row in kept:
        assert abs(1 - row.mean() - p) < 5 * sigma
    z = kept - kept.mean()
    for a, b, what in ((z[0, 1:], z[0, :-1], "neighbours"), (z[0], z[1], "keys 0 and 1"),
                       (z[1], z[2], "keys 1 and 2"), (z[0, 400:], z[0, :-400], "rows of 400")):
        corr = float(np.mean(a * b) / (np.std(a) * np.std(b)))
        assert abs(corr) < 5 / np.sqrt(n), what
    bits = counter_bits(7, np.arange(n, dtype=np.uint64))
    counts = np.bincount((bits >> np.uint64(20)).astype(np.int64), minlength=16)   # top 4 bits
    chi2 = float(((counts - n / 16) ** 2 / (n / 16)).sum())
    assert chi2 < 45          # 15 degrees of freedom: p < 1e-4 for a uniform generator


def test_dropout_expectation_fraction_and_inference(backend):
    p = 0.3
    model = fn.Sequential([Dropout(p)], backend=backend, dtype="float64", seed=0)
    x = np.random.default_rng(0).uniform(1, 2, (50, 40))
    total, zeros = np.zeros_like(x), 0
    runs = 60
    for _ in range(runs):
        out = host(model.forward(x, training=True))
        kept = out != 0
        zeros += np.count_nonzero(~kept)
        np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
        total += out
    assert zeros / (runs * x.size) == pytest.approx(p, abs=0.01)
    assert np.mean(total / runs - x) == pytest.approx(0, abs=0.01)        # unbiased on average
    np.testing.assert_allclose((total / runs).mean(axis=0), x.mean(axis=0), rtol=0.05)
    np.testing.assert_array_equal(host(model.forward(x, training=False)), x)   # identity
    np.testing.assert_array_equal(model.predict(x), x)


def test_dropout_gradient_is_mask_times_dy(backend):
    model = fn.Sequential([fn.Dense(6, 8), Dropout(0.5), fn.Dense(8, 3)], backend=backend,
                          dtype="float64", seed=1)
    drop = model.layers[1]
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((10, 6)), rng.standard_normal((10, 3))
    model.zero_grad()
    model.forward(x, training=True)
    mask = host(drop.mask)
    assert set(np.unique(mask)) <= {0.0, 2.0}
    # the mask fixed, the network is linear in x: the gradient of the mask is exact
    w1, w2 = host(model.layers[0].weight.data), host(model.layers[2].weight.data)
    gx = host(model.backward(dy))
    np.testing.assert_allclose(gx, ((dy @ w2.T) * mask) @ w1.T, rtol=1e-12, atol=1e-12)
    dx_drop = host(drop.backward(model.be, model.be.to_device(dy @ w2.T)))
    np.testing.assert_allclose(dx_drop, (dy @ w2.T) * mask, rtol=1e-12)


def test_dropout_masks_repeat_with_the_seed_and_use_the_models_stream(backend):
    def masks(seed):
        model = fn.Sequential([Dropout(0.5)], backend=backend, seed=seed)
        assert model.layers[0].rng is model.rng
        x = np.ones((4, 6), np.float32)
        return [host(model.forward(x, training=True)) for _ in range(3)]

    a, b, c = masks(0), masks(0), masks(1)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, w) for u, w in zip(a, c))
    assert not np.array_equal(a[0], a[1])


@pytest.mark.slow_on_simulator
def test_fit_with_dropout_and_batchnorm_repeats_with_the_seed(backend):
    (x, y), _ = fn.datasets.load_digits_split()
    x, y = x[:300], y[:300]

    def run():
        model = fn.Sequential([fn.Flatten(), fn.Dense(64, 32), BatchNorm(32), fn.ReLU(),
                               Dropout(0.2), fn.Dense(32, 10)], backend=backend, seed=3)
        h = model.fit(x, y, optimizer="adam", lr=0.01, epochs=3, batch_size=32, verbose=0)
        return model, h.history["loss"]

    (m1, l1), (m2, l2) = run(), run()
    assert l1 == l2 and l1[-1] < l1[0]
    np.testing.assert_array_equal(m1.get_weights(), m2.get_weights())
    np.testing.assert_array_equal(m1.layers[2].state_arrays()["running_var"],
                                  m2.layers[2].state_arrays()["running_var"])
    # fit(seed=...) uses its own stream for the masks, then gives the model's stream back
    h3 = m1.fit(x, y, optimizer="sgd", epochs=1, seed=5, verbose=0)
    assert m1.layers[4].rng is m1.rng and np.isfinite(h3.history["loss"][0])


def test_dropout_rejects_bad_probability():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="Dropout probability"):
            Dropout(p)


# ----------------------------------------------------------------------------- batch norm


BN_CASES = {
    "2d": (lambda: BatchNorm(4), (6, 4)),
    "2d-no-affine": (lambda: BatchNorm(4, affine=False), (5, 4)),
    "4d": (lambda: BatchNorm(3), (2, 3, 3, 2)),
    "4d-no-affine": (lambda: BatchNorm(2, affine=False), (3, 2, 2, 2)),
    "dense+bn+tanh": (lambda: [fn.Dense(5, 4), BatchNorm(4), fn.Tanh()], (6, 5)),
    "conv+bn+relu": (lambda: [fn.Conv2D(2, 3, 2), BatchNorm(3), fn.Tanh()], (2, 2, 3, 3)),
}


@pytest.mark.parametrize("case", sorted(BN_CASES))
def test_batchnorm_gradient_in_training_mode(case, backend):
    """Central differences through the batch statistics (every output depends on every sample)."""
    factory, shape = BN_CASES[case]
    rng = np.random.default_rng(4)
    x = 2 * rng.standard_normal(shape) + 0.5
    check_layer_grad(factory, shape, backend, x=x, atol=1e-6, rtol=1e-5)


def test_batchnorm_model_gradient_with_loss(backend):
    model = fn.Sequential([fn.Dense(4, 6), BatchNorm(6), fn.ReLU(), fn.Dense(6, 3)],
                          backend=backend, dtype="float64", seed=2)
    x = np.random.default_rng(0).standard_normal((8, 4))
    check_model_grad(model, x, np.array([0, 1, 2, 0, 1, 2, 2, 1]), CrossEntropyLoss(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 2)])
def test_batchnorm_matches_torch(shape, backend, torch):
    """Training-mode outputs, gradients and running statistics after several steps, and the
    inference output, against torch.nn.BatchNorm1d / BatchNorm2d."""
    c = shape[1]
    tbn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        c, eps=1e-4, momentum=0.2).double()
    model = fn.Sequential([BatchNorm(c, eps=1e-4, momentum=0.2)], backend=backend,
                          dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    model.set_weights(np.concatenate([gamma, beta]))
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(gamma))
        tbn.bias.copy_(torch.tensor(beta))
    for step in range(4):
        x = 2 * rng.standard_normal(shape) + step
        dy = rng.standard_normal(shape)
        tx = torch.tensor(x, requires_grad=True)
        ty = tbn(tx)
        ty.backward(torch.tensor(dy))
        model.zero_grad()
        out = host(model.forward(x, training=True))
        gx = host(model.backward(dy))
        np.testing.assert_allclose(out, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(host(model.layers[0].weight.grad), tbn.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(host(model.layers[0].bias.grad), tbn.bias.grad.numpy(), rtol=1e-10)
        tbn.weight.grad = tbn.bias.grad = None
        state = model.layers[0].state_arrays()
        np.testing.assert_allclose(state["running_mean"], tbn.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(state["running_var"], tbn.running_var.numpy(), rtol=1e-12)
    tbn.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(model.predict(x), tbn(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


def test_batchnorm_inference_uses_the_running_statistics(backend):
    bn = BatchNorm(3, eps=1e-3)
    model = fn.Sequential([bn], backend=backend, dtype="float64", seed=0)
    assert [p.name for p in model.parameters()] == ["0.BatchNorm.weight", "0.BatchNorm.bias"]
    assert np.array_equal(model.get_weights(), [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(bn.state_arrays()["running_mean"], np.zeros(3))
    np.testing.assert_array_equal(bn.state_arrays()["running_var"], np.ones(3))
    mean, var = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 1.0])
    bn.load_state_arrays({"running_mean": mean, "running_var": var})
    model.set_weights([2.0, 1.0, -1.0, 0.5, 0.0, 3.0])
    x = np.random.default_rng(0).standard_normal((5, 3, 2, 2))
    expected = (np.array([2.0, 1.0, -1.0])[:, None, None] * (x - mean[:, None, None])
                / np.sqrt(var[:, None, None] + 1e-3) + np.array([0.5, 0.0, 3.0])[:, None, None])
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.state_arrays()["running_mean"], mean)     # not updated
    out = host(model.forward(x, training=True))                                # batch statistics
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), [0.5, 0.0, 3.0], atol=1e-12)


def test_batchnorm_state_is_saved_and_loaded(tmp_path, backend):
    model = fn.Sequential([fn.Dense(4, 5), BatchNorm(5), fn.ReLU(), fn.Dense(5, 2)],
                          backend=backend, seed=1)
    x = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    for _ in range(3):
        model.forward(3 * x + 1, training=True)
    assert model.num_parameters() == 4 * 5 + 5 + 10 + 5 * 2 + 2   # running stats not trainable
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        assert {"buffers.1.running_mean", "buffers.1.running_var"} <= set(f.files)
    loaded = fn.Sequential.load(tmp_path / "m.npz", backend=backend)
    for name in ("running_mean", "running_var"):
        np.testing.assert_array_equal(loaded.layers[1].state_arrays()[name],
                                      model.layers[1].state_arrays()[name])
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert repr(loaded.layers[1]) == "BatchNorm(num_features=5, eps=1e-05, momentum=0.1, affine=True)"

    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:       # a file without the state
        arrays = {k: f[k] for k in f.files if not k.startswith("buffers.")}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="bad.npz.*running_mean"):
        fn.Sequential.load(tmp_path / "bad.npz", backend=backend)


def test_batchnorm_shape_errors(backend):
    with pytest.raises(ShapeError, match=r"BatchNorm\(num_features=4.*\(N, 4\) or \(N, 4, H, W\)"):
        fn.Sequential([BatchNorm(4)], backend=backend).forward(np.zeros((2, 3), np.float32))
    model = fn.Sequential([BatchNorm(4)], backend=backend)
    with pytest.raises(ShapeError, match="more than one value per feature"):
        model.forward(np.ones((1, 4), np.float32), training=True)
    assert host(model.forward(np.ones((1, 4), np.float32))).shape == (1, 4)   # inference is fine
    with pytest.raises(ValueError):
        BatchNorm(0)


# ----------------------------------------------------------------------------- class weights


@pytest.mark.parametrize("kind", ["cross_entropy", "nll"])
def test_weighted_losses_match_torch(kind, backend, torch):
    rng = np.random.default_rng(0)
    logits, labels = 3 * rng.standard_normal((9, 4)), rng.integers(0, 4, 9)
    weight = np.array([0.2, 3.0, 1.0, 0.5])
    tw = torch.tensor(weight)
    if kind == "cross_entropy":
        out, loss = logits, CrossEntropyLoss(weight=weight)
        fn_t = torch.nn.functional.cross_entropy
    else:
        out = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        loss, fn_t = NLLLoss(weight=weight), torch.nn.functional.nll_loss
    be = fn.get_backend(backend)
    loss.bind(be)
    value = loss(be.to_device(out), labels)
    t_out = torch.tensor(out, requires_grad=True)
    t_loss = fn_t(t_out, torch.tensor(labels), weight=tw)
    t_loss.backward()
    assert value == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(host(loss.backward()), t_out.grad.numpy(), rtol=1e-10, atol=1e-14)
    check_loss_grad(CrossEntropyLoss(weight=weight) if kind == "cross_entropy" else NLLLoss(weight=weight),
                    (9, 4), labels, backend=backend, out=out)
    assert "weight=[0.2, 3.0, 1.0, 0.5]" in repr(loss)


def test_unit_class_weights_equal_the_plain_loss(backend):
    be = fn.get_backend(backend)
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    plain, weighted = CrossEntropyLoss().bind(be), CrossEntropyLoss(weight=np.ones(3)).bind(be)
    assert weighted(be.to_device(logits), labels) == pytest.approx(plain(be.to_device(logits), labels), rel=1e-12)
    np.testing.assert_allclose(host(weighted.backward()), host(plain.backward()), rtol=1e-12)


def test_fit_class_weight_dict_equals_weighted_loss(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((90, 5))
    y = (x[:, 0] > 0.8).astype(np.int64) + (x[:, 1] > 1.0)

    def run(**kw):
        model = fn.Sequential([fn.Dense(5, 8), fn.ReLU(), fn.Dense(8, 3)], backend=backend,
                              dtype="float64", seed=0)
        h = model.fit(x, y, optimizer="sgd", lr=0.1, epochs=2, batch_size=16, seed=0, verbose=0,
                      validation_data=(x, y), **kw)
        return model, h.history

    weights = {1: 3.0, 2: 5.0}
    m1, h1 = run(class_weight=weights)
    m2, h2 = run(loss=CrossEntropyLoss(weight=[1.0, 3.0, 5.0]))
    m3, h3 = run(class_weight=np.array([1.0, 3.0, 5.0]))
    m0, h0 = run()
    np.testing.assert_allclose(m1.get_weights(), m2.get_weights(), rtol=1e-12)
    np.testing.assert_array_equal(m1.get_weights(), m3.get_weights())
    assert h1["loss"] == pytest.approx(h2["loss"], rel=1e-12)
    assert not np.allclose(m1.get_weights(), m0.get_weights())
    # class_weight weighs the training loss only: validation and evaluate stay unweighted
    assert m1.loss.weight is None
    assert h1["val_loss"][-1] == pytest.approx(m1.evaluate(x, y)["loss"], rel=1e-10)
    assert h2["val_loss"][-1] != pytest.approx(m2.evaluate(x, y, loss=CrossEntropyLoss())["loss"], rel=1e-6)


def test_class_weight_errors_and_the_compiled_epoch_is_not_used(backend):
    model = fn.Sequential([fn.Dense(3, 2)], backend=backend, seed=0)
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="class_weight needs CrossEntropyLoss"):
        model.fit(x, y, loss="mse", class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="labels must be integers in"):
        model.fit(x, y, class_weight={2: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"expected \(2,\)"):
        model.fit(x, y, class_weight=[1.0, 2.0, 3.0], verbose=0)
    with pytest.raises(ValueError, match="not both"):
        model.fit(x, y, loss=CrossEntropyLoss(weight=[1, 2]), class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="3 class weights"):
        model.fit(x, y, loss=CrossEntropyLoss(weight=[1, 2, 3]), verbose=0)
    with pytest.raises(ValueError, match="non-negative"):
        CrossEntropyLoss(weight=[1.0, -1.0])
    loss = CrossEntropyLoss(weight=[1.0, 2.0]).bind(model.be)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    xs, ys, labels = fn.training.prepare_data(model, loss, x, y)
    assert isinstance(make_epoch(model, loss, opt, xs, ys, labels, 2, False), LoopEpoch)
    if model.be.COMPILED_EPOCH_LOSSES:
        with pytest.raises(ValueError, match="class-weighted losses run in the layer-by-layer"):
            make_epoch(model, loss, opt, xs, ys, labels, 2, False, compiled=True)


# ----------------------------------------------------------------------------- initialisers


def test_positive_bias_for_relu(backend):
    model = fn.Sequential([fn.Dense(50, 40, init="he", bias_init="positive"), fn.ReLU(),
                           fn.Dense(40, 3, bias_init=fn.init.relu_bias)], backend=backend, seed=0)
    np.testing.assert_allclose(host(model.layers[0].bias.data), 0.01, rtol=1e-6)
    np.testing.assert_allclose(host(model.layers[2].bias.data), 0.01, rtol=1e-6)
    assert fn.init.get("relu_bias") is fn.init.relu_bias
    assert np.std(host(model.layers[0].weight.data)) == pytest.approx(np.sqrt(2 / 50), rel=0.1)


def test_output_bias_from_marginals(backend):
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    x = np.random.default_rng(0).standard_normal((100, 6)).astype(np.float32)
    model = fn.Sequential([fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 4)], backend=backend, seed=0)
    bias = output_bias_from_marginals(model, y, zero_weights=True)
    freq = np.array([0.6, 0.3, 0.1, 0.0])
    np.testing.assert_allclose(bias[:3], np.log(freq[:3]))
    assert bias[3] == pytest.approx(np.log(1 / 1000))           # absent class: floor 1 / (10 N)
    from fastnn.ensemble import softmax
    probs = softmax(model.predict(x))
    expected = np.exp(bias) / np.exp(bias).sum()
    np.testing.assert_allclose(probs, np.broadcast_to(expected, probs.shape), rtol=1e-5)
    np.testing.assert_allclose(expected[:3], freq[:3], atol=1e-3)
    # without zeroing the weights: only the bias is set, and predictions are near the marginals
    model = fn.Sequential([fn.Dense(6, 8), fn.ReLU(), fn.Dense(8, 3, init=fn.init.normal(0.01))],
                          backend=backend, seed=0)
    before = model.get_weights()
    output_bias_from_marginals(model, y)
    after = model.get_weights()
    b = model.layers[2].bias
    np.testing.assert_allclose(after[b.offset:b.offset + 3], np.log(freq[:3]), rtol=1e-6)
    assert np.array_equal(np.delete(after, range(b.offset, b.offset + 3)),
                          np.delete(before, range(b.offset, b.offset + 3)))
    np.testing.assert_allclose(softmax(model.predict(x)).mean(axis=0), freq[:3], atol=0.02)
