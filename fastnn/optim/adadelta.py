"""AdaDelta (``fastnn.kernels.contract.adadelta_step``)."""
from .base import Optimizer


class AdaDelta(Optimizer):
    """AdaDelta (Zeiler 2012), PyTorch's ``Adadelta``.

    PyTorch's rule: g' = g + weight_decay * w; r <- ρ r + (1 − ρ) g' ⊙ g';
    Δ = √(u + eps) / √(r + eps) ⊙ g'; u <- ρ u + (1 − ρ) Δ ⊙ Δ; w <- w − lr * Δ,
    with r (``square_avg``) and u (``acc_delta``) starting at 0. Zeiler's method has no
    learning rate (lr = 1, the default): the ratio of the two running RMS values gives the
    update its units.

    Parameters
    ----------
    params : list of Parameter or of parameter groups (dicts)
    lr : float, default 1.0
    rho : float in [0, 1), default 0.9
    eps : float, default 1e-6
    weight_decay : float, default 0
    max_norm, clip_grad_norm, fused : see :class:`~fastnn.optim.Optimizer`
    """

    kernel = "adadelta_step"
    state_names = ("square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, **options):
        super().__init__(params, lr, dict(rho=float(rho), eps=float(eps),
                                          weight_decay=float(weight_decay)), **options)

    def _check(self, h):
        if not 0 <= h["rho"] < 1:
            raise ValueError(f"AdaDelta: rho must be in [0, 1), got {h['rho']}")
        if h["eps"] <= 0 or h["weight_decay"] < 0:
            raise ValueError(f"AdaDelta: eps must be > 0 and weight_decay >= 0, got eps="
                             f"{h['eps']}, weight_decay={h['weight_decay']}")

    def kernel_args(self, lr, h):
        return dict(lr=lr, **h)


Adadelta = AdaDelta
"""PyTorch's spelling."""
