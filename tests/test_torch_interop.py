"""PyTorch in and out (issue 19 item 2): Sequential.from_torch(torch.nn.Sequential) and
model.to_torch() give the same logits (1e-5 in float32, 1e-12 in float64) both ways, with the
weights and BatchNorm running statistics carried; unsupported modules and layers are named."""
import numpy as np
import pytest

import fastnn as fn

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def mlp():
    return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 10), nn.Sigmoid(),
                         nn.Linear(10, 10, bias=False), nn.Tanh(), nn.Linear(10, 8),
                         nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.PReLU(8), nn.Dropout(0.4),
                         nn.BatchNorm1d(8), nn.Linear(8, 6), nn.PReLU(), nn.Linear(6, 4),
                         nn.Softmax(dim=1))


def cnn():
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
                         nn.AvgPool2d(2, stride=1, padding=1), nn.PReLU(4),
                         nn.Conv2d(4, 4, 3, padding="same", bias=False),
                         nn.BatchNorm2d(4, affine=False), nn.MaxPool2d(3, stride=2, padding=1),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 5), nn.LogSoftmax(dim=-1))


NETS = {"mlp": (mlp, (12,)), "cnn": (cnn, (2, 8, 8))}


def prepared(make, shape, dtype):
    """A torch net with non-default weights and running statistics, in eval mode."""
    torch.manual_seed(0)
    net = make().to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net.train()
    for _ in range(3):
        net(2 * torch.randn((16,) + shape, dtype=dtype) + 0.5)
    return net.eval()


def logits(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NETS)
def test_round_trip_gives_the_same_logits(name, dtype, backend):
    make, shape = NETS[name]
    net = prepared(make, shape, dtype)
    x = np.random.default_rng(1).normal(size=(6,) + shape).astype(
        np.float32 if dtype == torch.float32 else np.float64)
    model = fn.Sequential.from_torch(net, backend=backend)
    assert model.dtype == x.dtype and model.backend == backend
    np.testing.assert_allclose(model.predict(x), logits(net, x), rtol=0, atol=TOL[dtype])

    back = model.to_torch().eval()
    assert [type(m) for m in back] == [type(m) for m in net]
    assert all(p.dtype == dtype for p in back.parameters())
    np.testing.assert_allclose(logits(back, x), model.predict(x), rtol=0, atol=TOL[dtype])
    original, returned = net.state_dict(), back.state_dict()
    for key, value in returned.items():     # every weight and statistic, exactly
        if key.endswith("num_batches_tracked"):     # unused with a fixed momentum
            continue
        if key in original:
            torch.testing.assert_close(value, original[key], rtol=0, atol=0)
        else:                               # a bias-free torch layer has a zero bias in fastnn
            assert key.endswith("bias") and not value.any()


def test_weights_are_copies_and_torch_is_imported_lazily():
    import subprocess
    import sys
    code = "import sys, fastnn; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    net = nn.Sequential(nn.Linear(3, 2))
    model = fn.Sequential.from_torch(net, backend="numpy")
    with torch.no_grad():
        net[0].weight.zero_()
    assert np.abs(model.get_weights()).max() > 0
    back = model.to_torch()
    with torch.no_grad():
        back[0].weight.zero_()
    assert np.abs(model.get_weights()[:6]).max() > 0


def test_a_fitted_fastnn_model_goes_to_torch():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    model = fn.Sequential([fn.Dense(6, 8), fn.ReLU(), fn.BatchNorm(8), fn.Dense(8, 3)],
                          backend="numpy", dtype="float64")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    net = model.to_torch().eval()
    assert isinstance(net[2], nn.BatchNorm1d)
    np.testing.assert_allclose(logits(net, x), model.predict(x), rtol=0, atol=1e-12)


def test_unsupported_modules_and_layers_are_named():
    with pytest.raises(ValueError, match=r"1: GELU.*3: Conv1d"):
        fn.Sequential.from_torch(nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.ReLU(),
                                               nn.Conv1d(1, 1, 1)))
    with pytest.raises(ValueError, match="zeros"):
        fn.Sequential.from_torch(nn.Sequential(nn.Conv2d(1, 1, 3, padding_mode="reflect")))
    with pytest.raises(ValueError, match="count_include_pad"):
        fn.Sequential.from_torch(nn.Sequential(nn.AvgPool2d(2, count_include_pad=False)))
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        fn.Sequential.from_torch(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"1: Maxout"):
        fn.Sequential([fn.Dense(4, 4), fn.Maxout(2)], backend="numpy").to_torch()


@pytest.mark.parametrize("kwargs", [dict(dilation=2), dict(groups=2),
                                    dict(dilation=(1, 2), groups=2, padding=1)],
                         ids=["dilated", "grouped", "both"])
def test_dilated_and_grouped_conv_round_trip(kwargs):
    """Conv2D's dilation and groups go to PyTorch and back (they were dropped before)."""
    model = fn.Sequential([fn.Conv2D(2, 4, 3, **kwargs), fn.Flatten()], backend="numpy",
                          dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 9, 9))
    net = model.to_torch()
    np.testing.assert_allclose(net(torch.from_numpy(x)).detach().numpy(), model.predict(x),
                               rtol=1e-12, atol=1e-12)
    back = fn.Sequential.from_torch(net, backend="numpy")
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-12, atol=1e-12)
