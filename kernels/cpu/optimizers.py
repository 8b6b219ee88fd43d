"""Fused optimizer updates: one Numba pass over the flat parameter buffer per step.

Same signatures and update rules as the reference (:mod:`fastnn.kernels.reference`).
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _sgd(p, g, buf, lr, momentum, dampening, nesterov, weight_decay, l1, first_step):
    use_momentum = momentum != 0
    for i in range(p.size):
        d = g[i] + weight_decay * p[i]
        if l1 != 0:
            d += l1 * np.sign(p[i])
        if use_momentum:
            if first_step:
                v = d
            else:
                v = momentum * buf[i] + (1 - dampening) * d
            buf[i] = v
            d = d + momentum * v if nesterov else v
        p[i] -= lr * d


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, l1=0.0, first_step=False):
    """SGD on flat arrays (see reference.sgd_step); ``buf`` may be None without momentum."""
    _sgd(p, g, p if buf is None else buf, lr, momentum, dampening, nesterov,
         weight_decay, l1, first_step)
