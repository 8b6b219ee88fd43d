"""Fused optimizer updates: one launch over the flat parameter buffer per step.

Same signatures and update rules as :mod:`fastnn.kernels.reference` (PyTorch's, plus L1).
The hyper-parameters are passed in the dtype of the parameters, so a float32 model is updated
in float32 arithmetic as NumPy does it.
"""
from numba import cuda

from .common import flat, launch_1d, scalar


@cuda.jit
def _sgd(p, g, buf, lr, momentum, undamped, nesterov, weight_decay, l1, first_step):
    """p, g, buf: (n,) flat buffers; buf is not touched when momentum == 0;
    undamped = 1 - dampening."""
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, p.size, step):
        w = p[i]
        d = g[i]
        if weight_decay != 0:
            d += weight_decay * w
        if l1 != 0:
            if w > 0:
                d += l1
            elif w < 0:
                d -= l1
        if momentum != 0:
            if first_step:
                v = d
            else:
                v = momentum * buf[i] + undamped * d
            buf[i] = v
            d = d + momentum * v if nesterov else v
        p[i] = w - lr * d


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, first_step=False):
    """One SGD step on flat device arrays (see reference.sgd_step); ``buf`` may be None without
    momentum. One launch."""
    pf = flat(p)
    launch_1d(_sgd, pf.size, pf, flat(g), pf if buf is None else flat(buf), scalar(pf, lr),
              scalar(pf, momentum), scalar(pf, 1.0 - dampening), bool(nesterov),
              scalar(pf, weight_decay), scalar(pf, l1), bool(first_step))
