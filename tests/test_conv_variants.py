"""Convolution variants (Conv1D, Conv2D with dilation / groups / "full", ConvTranspose2D,
SeparableConv2D, LocallyConnected2D, TiledConv2D) on every backend: forward, input gradient and
every parameter gradient against PyTorch (or an einsum form run by torch's autograd) to 1e-9
in float64, and against central differences."""
import numpy as np
import pytest

import fastnn as fn
from support import check_layer_grad, forward_backward, host, tolerance

TIGHT = dict(rtol=1e-9, atol=1e-9)


def _against_torch(torch, layer, x_shape, torch_forward, backend, seed):
    """One forward and backward of ``layer`` on ``backend`` and of ``torch_forward(x, *params)``
    on the same float64 values: output, dL/dx and every parameter gradient agree to 1e-9."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    model = fn.Sequential([layer], backend=backend, dtype="float64", seed=seed)
    drawn = {}

    def draw(shape):
        drawn["dy"] = rng.standard_normal(shape)
        return drawn["dy"]

    out, gx, grads = forward_backward(model, x, draw)
    dy = drawn["dy"]
    xt = torch.tensor(x, requires_grad=True)
    pt = [torch.tensor(host(p.data).copy(), requires_grad=True) for p in model.parameters()]
    yt = torch_forward(xt, *pt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(out, yt.detach().numpy(), **TIGHT, err_msg="forward")
    np.testing.assert_allclose(gx, xt.grad.numpy(), **TIGHT, err_msg="dL/dx")
    for p, g, t in zip(model.parameters(), grads, pt):
        np.testing.assert_allclose(g, t.grad.numpy(), **TIGHT, err_msg=p.name)


def _sizes(seed):
    """Random small sizes: (N, groups, channels per group, out per group, kernel, stride,
    dilation)."""
    rng = np.random.default_rng(seed)
    return (int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3)),
            int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 3)),
            int(rng.integers(1, 3)))


@pytest.mark.parametrize("seed", range(3))
def test_conv1d_matches_torch(torch, backend, seed):
    n, g, cg, og, k, s, d = _sizes(seed)
    p = seed % 2
    layer = fn.Conv1D(g * cg, g * og, k, stride=s, padding=p, dilation=d, groups=g)
    _against_torch(torch, layer, (n, g * cg, 9), lambda x, w, b: torch.nn.functional.conv1d(
        x, w, b, stride=s, padding=p, dilation=d, groups=g), backend, seed)


@pytest.mark.parametrize("seed", range(3))
def test_conv2d_dilation_groups_matches_torch(torch, backend, seed):
    n, g, cg, og, k, s, d = _sizes(seed + 10)
    p = (seed % 2, 1)
    layer = fn.Conv2D(g * cg, g * og, (k, 2), stride=(s, 1), padding=p, dilation=(d, 2),
                      groups=g)
    _against_torch(torch, layer, (n, g * cg, 7, 8), lambda x, w, b: torch.nn.functional.conv2d(
        x, w, b, stride=(s, 1), padding=p, dilation=(d, 2), groups=g), backend, seed)


def test_depthwise_conv2d_matches_torch(torch, backend):
    layer = fn.Conv2D(3, 6, 3, padding=1, groups=3)          # depth multiplier 2
    _against_torch(torch, layer, (2, 3, 6, 5), lambda x, w, b: torch.nn.functional.conv2d(
        x, w, b, padding=1, groups=3), backend, 3)


@pytest.mark.parametrize("dilation", [1, 2])
def test_conv2d_full_and_same_padding(torch, backend, dilation):
    full = fn.Conv2D(2, 3, (3, 2), padding="full", dilation=dilation)
    eh, ew = dilation * 2 + 1, dilation + 1
    _against_torch(torch, full, (2, 2, 5, 6), lambda x, w, b: torch.nn.functional.conv2d(
        x, w, b, padding=(eh - 1, ew - 1), dilation=dilation), backend, 4)
    same = fn.Conv2D(2, 3, (3, 2), padding="same", dilation=dilation)
    _against_torch(torch, same, (2, 2, 5, 6), lambda x, w, b: torch.nn.functional.conv2d(
        x, w, b, padding="same", dilation=dilation), backend, 5)
    assert full.output_shape((2, 5, 6)) == (3, 5 + eh - 1, 6 + ew - 1)
    assert same.output_shape((2, 5, 6)) == (3, 5, 6)


@pytest.mark.parametrize("stride, padding, output_padding", [(1, 0, 0), (2, 1, 1), ((2, 3), (0, 1), (1, 2))])
def test_conv_transpose2d_matches_torch(torch, backend, stride, padding, output_padding):
    layer = fn.ConvTranspose2D(3, 2, (3, 2), stride=stride, padding=padding,
                               output_padding=output_padding)
    assert layer.parameter_shapes()[0][1] == (3, 2, 3, 2)
    _against_torch(torch, layer, (2, 3, 4, 3), lambda x, w, b:
                   torch.nn.functional.conv_transpose2d(x, w, b, stride=stride, padding=padding,
                                                        output_padding=output_padding),
                   backend, 6)


def test_separable_conv2d_matches_torch(torch, backend):
    layer = fn.SeparableConv2D(3, 4, 3, stride=2, padding=1, depth_multiplier=2)
    assert [shape for _, shape in layer.parameter_shapes()] == [(6, 1, 3, 3), (4, 6, 1, 1), (4,)]

    def reference(x, dw, pw, b):
        mid = torch.nn.functional.conv2d(x, dw, None, stride=2, padding=1, groups=3)
        return torch.nn.functional.conv2d(mid, pw, b)

    _against_torch(torch, layer, (2, 3, 7, 6), reference, backend, 7)


def _unshared_reference(torch, stride, tile=None):
    """The texts' unshared convolution as an einsum over explicit windows (torch autograd
    differentiates it): out[n, o, p, q] = sum_{c,i,j} W[p, q, o, c, i, j] x[n, c, p s + i, q s + j]
    with W the kernel set of each position (tiled: set (p mod t, q mod t))."""
    def forward(x, w, b):
        kh, kw = w.shape[4:]
        win = x.unfold(2, kh, stride).unfold(3, kw, stride)              # (N, C, OH, OW, kh, kw)
        oh, ow = win.shape[2:4]
        if tile is not None:
            w = w[torch.arange(oh)[:, None] % tile, torch.arange(ow)[None, :] % tile]
        out = torch.einsum("ncpqij,pqocij->nopq", win, w)
        return out + (b if tile is None else b[None, :, None, None])
    return forward


@pytest.mark.parametrize("stride", [1, 2])
def test_locally_connected2d_matches_einsum(torch, backend, stride):
    layer = fn.LocallyConnected2D(2, 3, (3, 2), input_size=(6, 5), stride=stride)
    oh, ow = (6 - 3) // stride + 1, (5 - 2) // stride + 1
    assert [s for _, s in layer.parameter_shapes()] == [(oh, ow, 3, 2, 3, 2), (3, oh, ow)]
    _against_torch(torch, layer, (2, 2, 6, 5), _unshared_reference(torch, stride), backend, 8)


@pytest.mark.parametrize("tile, stride", [(1, 1), (2, 1), (3, 2)])
def test_tiled_conv2d_matches_einsum(torch, backend, tile, stride):
    layer = fn.TiledConv2D(2, 3, 2, tile=tile, stride=stride)
    assert layer.parameter_shapes()[0][1] == (tile, tile, 3, 2, 2, 2)
    _against_torch(torch, layer, (2, 2, 7, 6), _unshared_reference(torch, stride, tile),
                   backend, 9)


def test_tiled_with_tile_one_is_a_valid_conv2d(backend):
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    tiled = fn.Sequential([fn.TiledConv2D(2, 3, 3, tile=1)], backend=backend, dtype="float64")
    conv = fn.Sequential([fn.Conv2D(2, 3, 3)], backend=backend, dtype="float64")
    conv.set_weights(tiled.get_weights())
    np.testing.assert_allclose(tiled.predict(x), conv.predict(x), **tolerance("op", "float64"))


GRAD_CASES = {
    "conv1d": (lambda: fn.Conv1D(4, 2, 3, stride=2, padding=1, dilation=2, groups=2), (2, 4, 9)),
    "conv2d-dilated-grouped": (lambda: fn.Conv2D(4, 4, 2, padding="full", dilation=2, groups=2),
                               (1, 4, 4, 4)),
    "conv-transpose2d": (lambda: fn.ConvTranspose2D(2, 3, 3, stride=2, padding=1,
                                                    output_padding=1), (1, 2, 3, 3)),
    "separable": (lambda: fn.SeparableConv2D(2, 3, 3, padding="same", depth_multiplier=2),
                  (1, 2, 4, 4)),
    "locally-connected": (lambda: fn.LocallyConnected2D(2, 2, 2, input_size=(4, 3)), (2, 2, 4, 3)),
    "tiled": (lambda: fn.TiledConv2D(2, 2, 2, tile=2, stride=1), (2, 2, 4, 4)),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_central_differences(backend, case):
    factory, x_shape = GRAD_CASES[case]
    check_layer_grad(factory, x_shape, backend)


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_float32_matches_float64(backend, case):
    """The float32 path computes what float64 does (to float32 rounding)."""
    factory, x_shape = GRAD_CASES[case]
    x = np.random.default_rng(1).standard_normal(x_shape)
    outs = []
    for dtype in ("float64", "float32"):
        model = fn.Sequential([factory()], backend=backend, dtype=dtype, seed=3)
        out, gx, grads = forward_backward(model, x.astype(dtype), np.ones(model.output_shape(
            x_shape[1:]), dtype)[None].repeat(x_shape[0], 0))
        outs.append([out, gx] + grads)
    for a, b in zip(*outs):
        np.testing.assert_allclose(b, a, **tolerance("long sums", "float32"))


def test_save_load_keeps_the_configuration(tmp_path):
    layers = [fn.Conv2D(2, 4, 3, padding="full", dilation=2, groups=2), fn.ReLU(),
              fn.SeparableConv2D(4, 3, 3, depth_multiplier=2), fn.TiledConv2D(3, 2, 2, tile=2),
              fn.ConvTranspose2D(2, 2, 2, stride=2, output_padding=1)]
    model = fn.Sequential(layers, backend="numpy", dtype="float64", seed=1)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))
    model.save(tmp_path / "m.npz")
    back = fn.Sequential.load(tmp_path / "m.npz", backend="numpy")
    assert [repr(a) for a in back.layers] == [repr(a) for a in model.layers]
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


@pytest.mark.parametrize("make, message", [
    (lambda: fn.Conv2D(3, 4, 3, groups=2), "groups=2 must be a positive int dividing"),
    (lambda: fn.Conv2D(3, 4, 3, padding="wide"), "'valid', 'same' or 'full'"),
    (lambda: fn.ConvTranspose2D(3, 4, 3, stride=2, output_padding=2), "output_padding in"),
    (lambda: fn.LocallyConnected2D(1, 1, 5, input_size=(3, 3)), "smaller than the kernel"),
    (lambda: fn.Conv1D(2, 2, 0), "positive kernel_size"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_inputs_are_named():
    lc = fn.Sequential([fn.LocallyConnected2D(1, 2, 3, input_size=(5, 5))], backend="numpy")
    with pytest.raises(fn.errors.ShapeError, match="built for 5x5 images"):
        lc.predict(np.zeros((1, 1, 6, 5), np.float32))
    c1 = fn.Sequential([fn.Conv1D(2, 2, 3)], backend="numpy")
    with pytest.raises(fn.errors.ShapeError, match=r"expected sequences \(N, 2, L\)"):
        c1.predict(np.zeros((1, 3, 8), np.float32))


@pytest.mark.parametrize("stride, padding, dilation", [((1, 1), (0, 0, 0, 0), (2, 1)),
                                                       ((2, 1), (1, 2, 0, 1), (1, 3))])
def test_dilated_im2col_and_col2im_ops_match_the_reference(backend, stride, padding, dilation):
    """The contract ops themselves (the layers' kernels fuse their own unfolding)."""
    from fastnn.kernels.reference import conv_variants as ref
    from fastnn.kernels.geometry import output_hw
    be = fn.get_backend(backend)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 7))
    kh, kw = 2, 3
    oh, ow = output_hw(6, 7, ref.dilated_kernel((kh, kw), dilation), stride, padding)
    expected = np.empty((2, 3 * kh * kw, oh * ow))
    ref.im2col_dilated(x, kh, kw, stride, padding, dilation, expected)
    cols = be.empty(expected.shape, np.float64)
    be.im2col_dilated(be.to_device(x), kh, kw, stride, padding, dilation, cols)
    np.testing.assert_array_equal(host(cols), expected)
    g = np.random.default_rng(1).standard_normal(expected.shape)
    folded = np.empty(x.shape)
    ref.col2im_dilated(g, kh, kw, stride, padding, dilation, folded)
    dx = be.empty(x.shape, np.float64)
    be.col2im_dilated(be.to_device(g), kh, kw, stride, padding, dilation, dx)
    np.testing.assert_allclose(host(dx), folded, **tolerance("op", "float64"))
    # col2im is im2col's adjoint: <im2col(x), g> = <x, col2im(g)>
    np.testing.assert_allclose(np.sum(expected * g), np.sum(x * folded), rtol=1e-12)
