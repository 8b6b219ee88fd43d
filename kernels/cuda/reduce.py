"""Per-channel reductions shared by the topic modules: the layout of a tensor as channels, the
block shape of a launch over channels, and the bias-gradient sums of dense and convolution
layers (plain, or with the activation's backward fused into the same pass). The other
per-channel reductions use the same layout and launch: PReLU's slope gradient
(:mod:`.activations`), batch normalization (:mod:`.regularization`) and the max-norm
constraint (:mod:`.optimizers`).

A tensor of ``outer * f * p`` elements is seen as ``(outer, f, p)``: channel ``j`` owns the
elements ``(o * f + j) * p + q``. Dense rows ``(N, F)`` are ``(N, F, 1)``; images
``(N, C, H, W)`` are ``(N, C, H * W)``; a quantity shared by all features is ``(N, 1, rest)``.

A block is an ``(ry, rx)`` table of threads: column ``tx`` is channel ``blockIdx.x * rx + tx``,
and its ``ry`` threads stride over that channel's ``outer * p`` terms, then add up in a fixed
tree order in shared memory (float64). For dense rows (p == 1) neighbouring threads read
neighbouring channels (coalesced: ``rx = COLUMNS``); for images (p > 1) a block is one channel
(``rx = 1``) and its threads read along the plane. Deterministic: no atomics.
"""
from numba import cuda, float64

from .common import COLUMNS, THREADS, act_backward, act_code, block_sum, flat, launch


@cuda.jit(device=True)
def channel_element(e, j, f, p):
    """Flat index of the ``e``-th element (0 <= e < outer * p) of channel ``j`` of (outer, f, p)."""
    o = e // p
    return (o * f + j) * p + (e - o * p)


@cuda.jit(device=True)
def channel_of_thread():
    """(j, ty, ry) of this thread: the channel ``j`` its column sums (none when j >= f), its row
    in the block and the block's number of rows (it strides over the channel's terms by ry)."""
    return cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, cuda.threadIdx.y, cuda.blockDim.y


@cuda.jit(device=True)
def channel_total(sh, s):
    """The total of this thread's channel from every thread's partial sum ``s``, through the
    shared array ``sh`` (THREADS float64) in :func:`~.common.block_sum`'s fixed order. Every
    thread of the block must call it."""
    tx, ty, rx, ry = cuda.threadIdx.x, cuda.threadIdx.y, cuda.blockDim.x, cuda.blockDim.y
    sh[ty * rx + tx] = s
    return block_sum(sh, tx, ty, rx, ry)


@cuda.jit(device=True)
def store_total(out, j, total, beta):
    """out[j] = total, or total + beta * out[j] (beta is 0 or 1: accumulate)."""
    out[j] = total + beta * out[j] if beta != 0 else total


@cuda.jit
def _channel_sum(a, out, outer, f, p, beta):
    """out[j] = beta * out[j] + sum of channel j of a (outer, f, p)."""
    sh = cuda.shared.array(THREADS, float64)
    j, ty, ry = channel_of_thread()
    s = 0.0
    if j < f:
        for e in range(ty, outer * p, ry):
            s += a[channel_element(e, j, f, p)]
    total = channel_total(sh, s)
    if ty == 0 and j < f:
        store_total(out, j, total, beta)


@cuda.jit
def _act_backward_channel_sum(y, dy, dz, out, outer, f, p, code, beta):
    """dz = dy * act'(.) (from the output y) and out[j] = beta * out[j] + sum of channel j of dz."""
    sh = cuda.shared.array(THREADS, float64)
    j, ty, ry = channel_of_thread()
    s = 0.0
    if j < f:
        for e in range(ty, outer * p, ry):
            i = channel_element(e, j, f, p)
            dz[i] = act_backward(y[i], dy[i], code)
            s += dz[i]
    total = channel_total(sh, s)
    if ty == 0 and j < f:
        store_total(out, j, total, beta)


def channels(shape, per_channel):
    """(outer, f, p) of an (N, F) or (N, C, ...) array: channels along axis 1, or one for all."""
    n, rest = shape[0], 1
    for s in shape[1:]:
        rest *= s
    if not per_channel:
        return n, 1, rest
    f = shape[1]
    return n, f, rest // f if f else 0


def launch_channels(kernel, f, p, *args):
    """One launch over f channels: (blocks, (rx, ry)) as described in the module docstring."""
    if f == 0:
        return
    rx = COLUMNS if p == 1 else 1
    launch(kernel, -(-f // rx), (rx, THREADS // rx), *args)


def channel_sum(a, out, accumulate=False):
    """out (+)= sum of ``a`` over every axis but 1. a : (N, F) or (N, C, H, W); out : (F,) or (C,).
    One launch."""
    outer, f, p = channels(a.shape, True)
    launch_channels(_channel_sum, f, p, flat(a), flat(out), outer, f, p,
                    1.0 if accumulate else 0.0)


def act_backward_channel_sum(y, dy, dz, out, act, accumulate=False):
    """dz = dy * act'(.) from the output y, and out (+)= sum of dz over every axis but 1, in one
    launch. y, dy, dz : (N, F) or (N, C, H, W); out : (F,) or (C,); ``act`` an Activation."""
    outer, f, p = channels(y.shape, True)
    launch_channels(_act_backward_channel_sum, f, p, flat(y), flat(dy), flat(dz), flat(out),
                    outer, f, p, act_code(act), 1.0 if accumulate else 0.0)
