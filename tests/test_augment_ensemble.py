"""Data augmentation (fastnn.augment) and bagging (fastnn.ensemble)."""
import numpy as np
import pytest

import fastnn as fn
from fastnn import augment as A
from fastnn.ensemble import Bagging, softmax
from fastnn.errors import ShapeError
from fastnn import epochs
from fastnn.epochs import LoopEpoch


def images(n=6, c=2, h=7, w=9, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(0.1, 1.0, (n, c, h, w)).astype(dtype)


def shifted(img, dy, dx):
    """img (C, H, W) moved down by dy and right by dx, zeros where nothing moved in."""
    out = np.zeros_like(img)
    h, w = img.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


# ----------------------------------------------------------------------------- augmentations


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_shift_moves_each_image_and_fills_zeros(dtype):
    x = images(dtype=dtype)
    x0 = x.copy()
    aug = A.RandomShift(2)
    out = aug(x, np.random.default_rng(5))
    shifts = np.random.default_rng(5).integers(-2, 3, size=(len(x), 2))   # the same draws
    assert out.shape == x.shape and out.dtype == dtype
    for img, o, (dy, dx) in zip(x, out, shifts):
        np.testing.assert_array_equal(o, shifted(img, dy, dx))
    assert np.any(shifts != 0) and np.any(out == 0)                   # zero fill happened
    np.testing.assert_array_equal(x, x0)                              # input untouched
    again = aug(x, np.random.default_rng(5))
    assert again is out                                               # buffer reused
    np.testing.assert_array_equal(A.RandomShift(0)(x, np.random.default_rng(0)), x)


def test_random_rotation_is_bilinear_about_the_centre():
    x = images(n=3, c=2, h=8, w=8, dtype=np.float64)
    out = np.empty_like(x)
    A.rotate(x, np.full(3, np.pi / 2), out)                            # exact for 90 degrees
    np.testing.assert_allclose(out, np.rot90(x, axes=(2, 3)), atol=1e-12)
    A.rotate(x, np.zeros(3), out)
    np.testing.assert_array_equal(out, x)
    ndimage = pytest.importorskip("scipy.ndimage")
    angles = np.array([7.0, -12.0, 3.5])
    A.rotate(x, np.deg2rad(angles), out)
    for img, o, a in zip(x, out, angles):
        for c in range(2):
            expected = ndimage.rotate(img[c], a, reshape=False, order=1, mode="constant", cval=0.0)
            np.testing.assert_allclose(o[c, 1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-10)
    aug = A.RandomRotation(15)
    a, b = aug(x, np.random.default_rng(3)).copy(), aug(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and not np.allclose(a, x)
    np.testing.assert_array_equal(A.RandomRotation(0)(x, np.random.default_rng(0)), x)


def test_random_horizontal_flip():
    x = images(n=400, c=1, h=3, w=4)
    flipped = np.all(A.RandomHorizontalFlip(1.0)(x, np.random.default_rng(0)) == x[..., ::-1])
    assert flipped
    np.testing.assert_array_equal(A.RandomHorizontalFlip(0.0)(x, np.random.default_rng(0)), x)
    out = A.RandomHorizontalFlip(0.3)(x, np.random.default_rng(1))
    is_flipped = np.all(out == x[..., ::-1], axis=(1, 2, 3))
    assert np.all(is_flipped | np.all(out == x, axis=(1, 2, 3)))
    assert is_flipped.mean() == pytest.approx(0.3, abs=0.07)


def test_compose_chains_and_repeats_with_the_seed():
    x = images()
    aug = A.Compose([A.RandomHorizontalFlip(), A.RandomShift(1), A.RandomRotation(10)])
    a = aug(x, np.random.default_rng(0)).copy()
    rng = np.random.default_rng(0)
    manual = A.RandomRotation(10)(A.RandomShift(1)(A.RandomHorizontalFlip()(x, rng), rng), rng)
    np.testing.assert_array_equal(a, manual)
    np.testing.assert_array_equal(aug(x, np.random.default_rng(0)), a)
    assert not np.array_equal(aug(x, np.random.default_rng(1)), a)


def test_augmentation_errors():
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        A.RandomShift(1)(np.zeros((3, 4), np.float32), np.random.default_rng(0))
    for bad in (lambda: A.RandomShift(-1), lambda: A.RandomShift(1.5),
                lambda: A.RandomRotation(-3), lambda: A.RandomHorizontalFlip(2)):
        with pytest.raises(ValueError):
            bad()


class Spy:
    """An augmentation that records what fit hands it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, x, rng):
        self.calls.append((x.shape, rng))
        return self.inner(x, rng)


@pytest.mark.slow_on_simulator
def test_fit_with_augment_runs_on_training_batches_only(backend, monkeypatch):
    (x, y), (xv, yv) = fn.datasets.load_digits_split()
    x, y = x[:200], y[:200]
    x0 = x.copy()

    def run(shuffle=True):
        spy = Spy(A.Compose([A.RandomShift(1), A.RandomRotation(10)]))
        model = fn.Sequential([fn.Flatten(), fn.Dense(64, 16), fn.ReLU(), fn.Dense(16, 10)],
                              backend=backend, seed=0)
        h = model.fit(x, y, epochs=2, batch_size=64, optimizer="adam", lr=0.01, seed=3,
                      shuffle=shuffle, validation_data=(xv, yv), augment=spy, verbose=0)
        return model, h, spy

    built = []
    original = epochs.make_epoch

    def recording_make_epoch(*args, **kwargs):
        runner = original(*args, **kwargs)
        built.append(type(runner))
        return runner

    monkeypatch.setattr(fn.training, "make_epoch", recording_make_epoch)
    m1, h1, spy = run()
    assert built == [LoopEpoch]                            # the layer-by-layer loop runs
    assert [s for s, _ in spy.calls] == [(64, 1, 8, 8)] * 3 + [(8, 1, 8, 8)] + [(64, 1, 8, 8)] * 3 + [(8, 1, 8, 8)]
    assert len({id(r) for _, r in spy.calls}) == 1         # the fit's random stream
    np.testing.assert_array_equal(x, x0)                   # the data set is not modified
    m2, h2, _ = run()
    assert h1.history["loss"] == h2.history["loss"]        # same seed, same augmentations
    np.testing.assert_array_equal(m1.get_weights(), m2.get_weights())
    run(shuffle=False)                                     # batches are views of x here
    np.testing.assert_array_equal(x, x0)
    # without augment, the loss differs (the augmentation really changed the batches)
    plain = fn.Sequential([fn.Flatten(), fn.Dense(64, 16), fn.ReLU(), fn.Dense(16, 10)],
                          backend=backend, seed=0)
    hp = plain.fit(x, y, epochs=2, batch_size=64, optimizer="adam", lr=0.01, seed=3, verbose=0)
    assert hp.history["loss"] != h1.history["loss"]
    with pytest.raises(ShapeError, match="augment works on images"):
        fn.Sequential([fn.Dense(64, 10)], backend=backend).fit(
            x.reshape(len(x), -1), y, augment=A.RandomShift(1), verbose=0)


def test_loop_epoch_augments_device_batches_through_a_buffer(backend):
    """On a device backend the augmented host batch goes to a reused device buffer."""
    model = fn.Sequential([fn.Flatten(), fn.Dense(4, 2)], backend=backend, seed=0)
    loss = fn.CrossEntropyLoss().bind(model.be)
    x, y = images(n=4, c=1, h=2, w=2), np.array([0, 1, 0, 1])
    xs, ys, labels = fn.training.prepare_data(model, loss, x, y)
    runner = LoopEpoch(model, loss, fn.optim.SGD(model.parameters(), lr=0.0), xs, ys, labels, 4,
                          augment=A.RandomHorizontalFlip(1.0), rng=np.random.default_rng(0))
    xb = runner._augment(runner.batches.get(0)[0])
    np.testing.assert_array_equal(model.be.to_host(xb), x[..., ::-1])
    assert runner._augment(runner.batches.get(0)[0]) is xb


# ----------------------------------------------------------------------------- bagging


def make_mlp(backend):
    def make(seed):
        return fn.Sequential([fn.Flatten(), fn.Dense(64, 24), fn.ReLU(), fn.Dense(24, 10)],
                             backend=backend, seed=seed)
    return make


@pytest.mark.slow_on_simulator
def test_bagging_averages_members_and_is_at_least_as_good_on_digits(backend):
    (x, y), (xt, yt) = fn.datasets.load_digits_split()
    ens = Bagging(make_mlp(backend), n=5, seed=0)
    assert len(ens.models) == 5 and len(set(ens.member_seeds)) == 5
    ens.fit(x, y, epochs=8, batch_size=32, optimizer="adam", lr=0.005, verbose=0)
    assert len(ens.histories) == 5
    for idx in ens.samples:                       # bootstrap samples: with replacement, full size
        assert len(idx) == len(x) and len(np.unique(idx)) < len(x)
    assert not np.array_equal(ens.samples[0], ens.samples[1])
    probs = ens.predict(xt)
    members = [softmax(m.predict(xt)) for m in ens.models]
    np.testing.assert_allclose(probs, np.mean(members, axis=0), rtol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    acc = ens.evaluate(xt, yt)
    member_acc = [m.evaluate(xt, yt)["accuracy"] for m in ens.models]
    assert acc["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == yt))
    assert acc["accuracy"] >= np.mean(member_acc) and acc["accuracy"] >= min(member_acc)
    assert acc["accuracy"] > 0.9
    assert acc["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(len(yt)), yt])))
    # same seed, same ensemble; refitting starts over from fresh members
    again = Bagging(make_mlp(backend), n=5, seed=0).fit(x, y, epochs=8, batch_size=32,
                                                         optimizer="adam", lr=0.005, verbose=0)
    np.testing.assert_array_equal(again.predict(xt), probs)
    ens.fit(x, y, epochs=8, batch_size=32, optimizer="adam", lr=0.005, verbose=0)
    np.testing.assert_array_equal(ens.predict(xt), probs)


def test_bagging_outputs_average_and_optimizer_factory(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    ens = Bagging(lambda s: fn.Sequential([fn.Dense(3, 1)], backend=backend, dtype="float64", seed=s),
                  n=3, seed=1, average="outputs")
    ens.fit(x, y, loss="mse", epochs=3, batch_size=8, verbose=0,
            optimizer=lambda params: fn.optim.SGD(params, lr=0.05, momentum=0.9))
    np.testing.assert_allclose(ens.predict(x), np.mean([m.predict(x) for m in ens.models], axis=0),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="factory"):
        ens.fit(x, y, optimizer=fn.optim.SGD(ens.models[0].parameters(), lr=0.1))
    with pytest.raises(ValueError):
        Bagging(lambda s: None, n=0)
    with pytest.raises(ValueError):
        Bagging(lambda s: None, n=2, average="median")
