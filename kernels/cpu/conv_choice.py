"""Which kernel a stride-1 convolution of the cpu backend runs on, per shape, decided by
measurement (as :mod:`.gemm_choice` does for dense products).

A stride-1 convolution that :func:`.conv_direct.supported` accepts has two candidates:

* ``direct``: the register-blocked kernels of :mod:`.conv_direct` (no im2col, no packing):
  they win few channels (LeNet-5's 1 -> 6 and 6 -> 16) and CPUs with AVX-512, where their
  64-byte vectors are one register each;
* ``im2col``: im2col / col2im around single-threaded BLAS per image (:mod:`.conv`), which packs
  and cache-blocks: it wins tens of channels, and most shapes where the CPU has only AVX2 (the
  direct kernels' 16 accumulators of 64 bytes then need 32 of AVX2's 16 registers): on a
  2-core Zen 3 VM a 32 -> 64 channel 3x3 layer on 14x14 images ran forward + backward in 57 ms
  by im2col against 115 ms direct, at batch 128.

One choice covers a layer's forward and backward (the backward needs the ``cols`` the forward
made), keyed by (N, C, H, W, F, kh, kw, padding, itemsize, threads). It is decided the first
time the key is asked, as :mod:`.gemm_choice` decides: ``FASTNN_CONV=direct|im2col`` forces a
candidate (``auto``, the default, measures; :func:`refresh` re-reads it); a decision stored
before on this machine is read from the same cache file (``gemm-choice.json``, entries named
``conv ...``); otherwise both candidates run forward + backward (with the input gradient) on
one thread, on the images one thread gets (at most ``TIMED_WORK`` multiply-adds of them, the
time scaled up), interleaved, the best of 3; ``im2col`` is chosen when it is faster by
``MARGIN``, else the direct kernel stays (the behaviour before this module). Stored, the same
choice holds for every run on the machine, so a seeded run gives the same weights each time.
"""
import os
import time

import numpy as np

from .. import threads
from . import conv_direct
from .gemm_choice import measured_choice

__all__ = ["use_direct", "decisions", "refresh"]

KERNELS = 1            # bump when a candidate changes: decisions stored before are not reused
MARGIN = 1.10          # im2col is chosen when direct time > MARGIN * im2col time
TIMED_WORK = 1 << 25   # multiply-adds of forward per timed call, at most (then scaled)
ROUNDS = 3

_MODES = ("auto", "direct", "im2col")
_state = {"mode": "auto"}
_memo, _log = {}, {}


def refresh():
    """Re-read ``FASTNN_CONV`` and forget the decisions held in memory."""
    _state["mode"] = os.environ.get("FASTNN_CONV", "auto").strip().lower() or "auto"
    _memo.clear()
    _log.clear()


def use_direct(x_shape, out_channels, kh, kw, stride, padding, itemsize, parts):
    """True when the convolution of a batch ``x_shape`` (N, C, H, W) with ``out_channels``
    filters of (kh, kw) runs on the direct kernels, False for im2col + BLAS. Geometries the
    direct kernels do not support are always im2col. A dict lookup once decided."""
    if not conv_direct.supported(stride, padding, kh, kw):
        return False
    key = (tuple(x_shape), out_channels, kh, kw, tuple(padding), itemsize, parts)
    choice = _memo.get(key)
    if choice is None:
        choice = _memo[key] = _decide(key)
    return choice


def decisions():
    """{shape key: (choice, how)} of every convolution decided in this process."""
    return {_name(key): ("direct" if _memo[key] else "im2col", _log.get(key, "")) for key in _memo}


def _name(key):
    (n, c, h, w), f, kh, kw, pad, itemsize, parts = key
    dt = "float32" if itemsize == 4 else "float64"
    return (f"conv{KERNELS} {dt} {n}x{c}x{h}x{w} -> {f} k{kh}x{kw} pad={','.join(map(str, pad))} "
            f"threads={parts}")


def _decide(key):
    mode = _state["mode"]
    if mode not in _MODES:
        raise ValueError(f"FASTNN_CONV={mode!r}: use one of {', '.join(_MODES)}")
    if mode != "auto":
        _log[key] = "forced"
        return mode == "direct"
    use, _log[key] = measured_choice(_name(key), "direct", "im2col", MARGIN, "ms",
                                     lambda: _measure(key))
    return use == "direct"


def _candidates(x, w, padding):
    """Forward + backward (with dx) of both candidates on one thread, on scratch arrays."""
    from .conv import _conv_backward, _conv_forward       # .conv imports this module
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    top, _, left, _ = padding
    oh, ow = h + padding[0] + padding[1] - kh + 1, wd + padding[2] + padding[3] - kw + 1
    b = np.zeros(f, x.dtype)
    out = np.empty((n, f, oh, ow), x.dtype)
    dy = np.random.default_rng(1).random(out.shape, x.dtype) - 0.5
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    k_dim, length = c * kh * kw, oh * ow
    cols = np.empty((n, k_dim, length), x.dtype)
    scratch = np.empty(k_dim * length, x.dtype)
    w2, out3, dy3 = w.reshape(f, -1), out.reshape(n, f, length), dy.reshape(n, f, length)

    def direct():
        conv_direct.forward(x, w, b, out, padding, 0, 1)
        conv_direct.backward(x, w, out, dy, dy, dx, dw, db, padding, 0, False, 1)

    def im2col():
        _conv_forward(x, w2, b, out3, kh, kw, 1, 1, top, left, oh, ow, cols, 0, 1)
        _conv_backward(w2, out3, dy3, dy3, 0, dx, dw.reshape(f, -1), db, 0.0, kh, kw, 1, 1, top,
                       left, oh, ow, cols, scratch, 1)
    return direct, im2col


def _measure(key):
    """(seconds of direct, of im2col, what was timed) for the images of the busiest thread."""
    (n, c, h, wd), f, kh, kw, padding, itemsize, parts = key
    threads.use_pool("numba")
    dtype = np.float32 if itemsize == 4 else np.float64
    share = -(-n // max(1, min(parts, n)))
    oh, ow = h + padding[0] + padding[1] - kh + 1, wd + padding[2] + padding[3] - kw + 1
    per_image = f * c * kh * kw * oh * ow
    images = max(1, min(share, TIMED_WORK // max(per_image, 1)))
    rng = np.random.default_rng(0)
    x = rng.random((images, c, h, wd), dtype) - 0.5
    w = rng.random((f, c, kh, kw), dtype) - 0.5
    fns = _candidates(x, w, padding)
    for fn in fns:
        fn()                                          # compile / load, warm the caches
    best = [np.inf, np.inf]
    for r in range(ROUNDS):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            fns[i]()
            best[i] = min(best[i], time.perf_counter() - start)
    scale = share / images
    return best[0] * scale, best[1] * scale, f"one thread, {images} of {share} images"


refresh()
