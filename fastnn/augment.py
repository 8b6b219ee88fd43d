"""Data augmentation of image batches on the fly, without copying the data set.

Each augmentation is a callable ``aug(x_batch, rng) -> batch``: it takes a batch of images
``(N, C, H, W)`` (float32 or float64, never modified) and a ``numpy.random.Generator``, and
returns the augmented batch in a buffer it owns and reuses for the next batch of the same
shape (copy the result to keep it). Every sample gets its own random draw; the same generator
state gives the same output. ``fit(..., augment=aug)`` applies it to each training batch with
the fit's random stream, never to validation data::

    aug = fn.augment.Compose([fn.augment.RandomShift(2), fn.augment.RandomRotation(10)])
    model.fit(x, y, augment=aug, seed=0)

The per-pixel work runs in Numba-compiled loops on the host (plain Python if numba is missing).
"""
import math

import numpy as np

from .errors import ShapeError

try:
    from numba import njit
except ImportError:                       # pragma: no cover - numba missing: plain Python loops
    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda f: f)


class Augmentation:
    """Base class: subclasses implement ``apply(x, out, rng)`` writing every element of ``out``."""

    def __init__(self):
        self._out = {}

    def __call__(self, x, rng):
        x = np.asarray(x)
        if x.ndim != 4:
            raise ShapeError(f"{self!r} expected a batch of images (N, C, H, W), got shape {x.shape}")
        key = (x.shape, x.dtype.str)
        out = self._out.get(key)
        if out is None:
            out = self._out[key] = np.empty(x.shape, dtype=x.dtype)
        self.apply(np.ascontiguousarray(x), out, rng)
        return out

    def apply(self, x, out, rng):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomShift(Augmentation):
    """Shift each image by a random whole number of pixels in [-max_pixels, max_pixels] along H
    and along W (drawn independently per sample), filling the uncovered border with zeros.

    Parameters
    ----------
    max_pixels : int >= 0
    """

    def __init__(self, max_pixels):
        super().__init__()
        if int(max_pixels) != max_pixels or max_pixels < 0:
            raise ValueError(f"max_pixels must be a non-negative integer, got {max_pixels!r}")
        self.max_pixels = int(max_pixels)

    def apply(self, x, out, rng):
        k = self.max_pixels
        shifts = rng.integers(-k, k + 1, size=(x.shape[0], 2))
        _shift(x, out, shifts)


class RandomRotation(Augmentation):
    """Rotate each image about its centre by a random angle drawn uniformly from
    [-max_degrees, max_degrees] (positive: counter-clockwise as displayed with row 0 at the
    top), with bilinear interpolation and zeros outside the image.

    Parameters
    ----------
    max_degrees : float >= 0
    """

    def __init__(self, max_degrees):
        super().__init__()
        if not max_degrees >= 0:
            raise ValueError(f"max_degrees must be >= 0, got {max_degrees!r}")
        self.max_degrees = float(max_degrees)

    def apply(self, x, out, rng):
        angles = np.deg2rad(rng.uniform(-self.max_degrees, self.max_degrees, size=x.shape[0]))
        rotate(x, angles, out)


class RandomHorizontalFlip(Augmentation):
    """Mirror each image left to right with probability ``p``.

    Parameters
    ----------
    p : float in [0, 1], default 0.5
    """

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def apply(self, x, out, rng):
        _hflip(x, out, rng.random(x.shape[0]) < self.p)


class Compose:
    """Apply augmentations one after the other: ``Compose([RandomShift(2), RandomRotation(10)])``."""

    def __init__(self, augmentations):
        self.augmentations = list(augmentations)
        for a in self.augmentations:
            if not callable(a):
                raise TypeError(f"Compose takes callables aug(x, rng), got {a!r}")

    def __call__(self, x, rng):
        for a in self.augmentations:
            x = a(x, rng)
        return x

    def __repr__(self):
        return f"Compose({self.augmentations!r})"


def rotate(x, angles, out):
    """Rotate each image ``x[i]`` (N, C, H, W) by ``angles[i]`` radians counter-clockwise about
    the centre ((H - 1) / 2, (W - 1) / 2), bilinear, zeros outside; writes ``out``."""
    _rotate(x, np.cos(angles), np.sin(angles), out)


# --------------------------------------------------------------------------- compiled loops


@njit(cache=True)
def _shift(x, out, shifts):
    n, c, h, w = x.shape
    for i in range(n):
        dy, dx = shifts[i, 0], shifts[i, 1]
        for ch in range(c):
            for r in range(h):
                sr = r - dy
                for col in range(w):
                    sc = col - dx
                    if 0 <= sr < h and 0 <= sc < w:
                        out[i, ch, r, col] = x[i, ch, sr, sc]
                    else:
                        out[i, ch, r, col] = 0


@njit(cache=True)
def _hflip(x, out, flips):
    n, c, h, w = x.shape
    for i in range(n):
        for ch in range(c):
            for r in range(h):
                for col in range(w):
                    out[i, ch, r, col] = x[i, ch, r, w - 1 - col] if flips[i] else x[i, ch, r, col]


@njit(cache=True)
def _rotate(x, cos, sin, out):
    n, c, h, w = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    for i in range(n):
        ca, sa = cos[i], sin[i]
        for r in range(h):
            for col in range(w):
                # output pixel (r, col) comes from the source point rotated back by the angle
                yr, xr = r - cy, col - cx
                sy = sa * xr + ca * yr + cy
                sx = ca * xr - sa * yr + cx
                y0, x0 = math.floor(sy), math.floor(sx)
                fy, fx = sy - y0, sx - x0
                y0, x0 = int(y0), int(x0)
                for ch in range(c):
                    v = 0.0
                    if 0 <= y0 < h:
                        if 0 <= x0 < w:
                            v += (1 - fy) * (1 - fx) * x[i, ch, y0, x0]
                        if 0 <= x0 + 1 < w:
                            v += (1 - fy) * fx * x[i, ch, y0, x0 + 1]
                    if 0 <= y0 + 1 < h:
                        if 0 <= x0 < w:
                            v += fy * (1 - fx) * x[i, ch, y0 + 1, x0]
                        if 0 <= x0 + 1 < w:
                            v += fy * fx * x[i, ch, y0 + 1, x0 + 1]
                    out[i, ch, r, col] = v
