"""GlobalAvgPool2D, GlobalMaxPool2D and LPPool2D on every backend: forward and dL/dx against
PyTorch (adaptive pools, lp_pool2d) to 1e-9 in float64, overlapping windows (kernel 3,
stride 2, the texts' figure) explicitly, and central differences."""
import numpy as np
import pytest

import fastnn as fn
from support import check_layer_grad, forward_backward

TIGHT = dict(rtol=1e-9, atol=1e-9)


def _against_torch(torch, layer, x, torch_forward, backend, seed=0):
    model = fn.Sequential([layer], backend=backend, dtype="float64")
    rng = np.random.default_rng(seed)
    drawn = {}

    def draw(shape):
        drawn["dy"] = rng.standard_normal(shape)
        return drawn["dy"]

    out, gx, _ = forward_backward(model, x, draw)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_forward(xt)
    yt.backward(torch.tensor(drawn["dy"]))
    np.testing.assert_allclose(out, yt.detach().numpy(), **TIGHT, err_msg="forward")
    np.testing.assert_allclose(gx, xt.grad.numpy(), **TIGHT, err_msg="dL/dx")
    return out


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 1, 1), (3, 1, 7, 2)])
def test_global_average_pool_matches_adaptive_avg_pool(torch, backend, shape):
    x = np.random.default_rng(1).standard_normal(shape)
    out = _against_torch(torch, fn.GlobalAvgPool2D(), x, lambda t: torch.nn.functional
                         .adaptive_avg_pool2d(t, 1).flatten(1), backend)
    assert out.shape == shape[:2]


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 1, 7, 2)])
def test_global_max_pool_matches_adaptive_max_pool(torch, backend, shape):
    x = np.random.default_rng(2).standard_normal(shape)
    _against_torch(torch, fn.GlobalMaxPool2D(), x, lambda t: torch.nn.functional
                   .adaptive_max_pool2d(t, 1).flatten(1), backend)


@pytest.mark.parametrize("norm_type, kernel, stride", [
    (2, 3, 2),            # the texts' L2 pooling over overlapping windows
    (2, (2, 3), None),
    (1, 2, 1),
    (3.5, 3, 2),
])
def test_lp_pool_matches_torch(torch, backend, norm_type, kernel, stride):
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 8))
    if norm_type != 2:
        x = np.abs(x) + 0.1            # x ** p of a negative x: NaN for non-integer p (as torch)
    _against_torch(torch, fn.LPPool2D(norm_type, kernel, stride), x, lambda t: torch.nn
                   .functional.lp_pool2d(t, norm_type, kernel, stride), backend)


def test_overlapping_windows_share_their_inputs(backend):
    """Kernel 3 stride 2 on 5x5: the middle row and column belong to two windows each (the
    centre to four), so their gradient is the sum over those windows."""
    x = np.ones((1, 1, 5, 5))
    model = fn.Sequential([fn.LPPool2D(2, 3, 2)], backend=backend, dtype="float64")
    out, gx, _ = forward_backward(model, x, np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(out, np.full((1, 1, 2, 2), 3.0), **TIGHT)    # sqrt(9 ones)
    windows = np.zeros((5, 5))
    for a in (0, 2):
        for b in (0, 2):
            windows[a:a + 3, b:b + 3] += 1
    np.testing.assert_allclose(gx[0, 0], windows / 3.0, **TIGHT)            # each: x / out


@pytest.mark.parametrize("factory", [fn.GlobalAvgPool2D, fn.GlobalMaxPool2D,
                                     lambda: fn.LPPool2D(2, 3, 2), lambda: fn.LPPool2D(3, 2)],
                         ids=["gap", "gmp", "l2", "l3"])
def test_central_differences(backend, factory):
    x = np.random.default_rng(4).standard_normal((2, 2, 5, 5))
    check_layer_grad(factory, x.shape, backend, x=np.abs(x) + 0.5)


def test_global_pool_head_trains_and_saves(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 1, 6, 6)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    model = fn.Sequential([fn.Conv2D(1, 4, 3, padding="same"), fn.ReLU(), fn.LPPool2D(2, 3, 2),
                           fn.Conv2D(4, 4, 1), fn.GlobalAvgPool2D(), fn.Dense(4, 2)],
                          backend="numpy", seed=0)
    hist = model.fit(x, y, optimizer="adam", lr=0.01, epochs=5, verbose=0, seed=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    model.save(tmp_path / "m.npz")
    loaded = fn.Sequential.load(tmp_path / "m.npz")
    assert [repr(a) for a in loaded.layers] == [repr(a) for a in model.layers]
    np.testing.assert_array_equal(loaded.get_weights(), model.get_weights())
    # float32 GEMMs of two models on the same weights may round differently (buffer alignment)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="norm_type must be a finite number > 0"):
        fn.LPPool2D(0, 2)
    with pytest.raises(fn.errors.ShapeError, match=r"expected images \(N, C, H, W\)"):
        fn.Sequential([fn.GlobalAvgPool2D()], backend="numpy").predict(np.zeros((2, 3)))
