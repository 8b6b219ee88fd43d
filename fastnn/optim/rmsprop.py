"""RMSProp, centered or not, with (Nesterov) momentum (``kernels.contract.rmsprop_step``)."""
from .base import Optimizer


class RMSProp(Optimizer):
    """RMSProp (Hinton 2012), PyTorch's ``RMSprop``, plus a Nesterov variant.

    PyTorch's rule: g' = g + weight_decay * w; r <- α r + (1 − α) g' ⊙ g';
    ``centered``: ḡ <- α ḡ + (1 − α) g', denominator a = √(r − ḡ ⊙ ḡ) + eps, else a = √r + eps;
    u = g' / a; with momentum μ: b <- μ b + u (b starts at 0), w <- w − lr * b; without:
    w <- w − lr * u. (``alpha`` is the texts' decay rate ρ, ``momentum`` their α.)

    The textbook's Algorithm 8.5 takes Δθ = −ε/√(δ + r) ⊙ g: δ *inside* the square root;
    PyTorch (and fastnn) put eps *outside*, ε/(√r + δ). The two agree up to the tiny δ.

    ``nesterov=True`` (not in PyTorch) is the textbook's Algorithm 8.6, RMSProp with Nesterov
    momentum: interim point θ̃ = θ + αv, gradient g at θ̃, r <- ρr + (1 − ρ) g⊙g,
    v <- αv − ε g/√r, θ <- θ + v. An optimizer only sees the gradient at the parameters it
    holds, so, as PyTorch's SGD does for Nesterov momentum (Sutskever et al. 2013), the
    parameters held are the interim point φ = θ + αv. In PyTorch's velocity convention
    b = −v/ε this gives, with u = g/(√r + eps) and g taken at φ::

        b <- μ b + u
        φ <- φ − lr (u + μ b)

    (φ_{t+1} = θ_{t+1} + α v_{t+1} = φ_t + α v_{t+1} − ε u_t). The held parameters differ from
    the textbook's θ by αv, which vanishes as training converges. It combines with
    ``centered`` and ``weight_decay`` as the plain momentum form does; it needs momentum > 0.

    Parameters
    ----------
    params : list of Parameter or of parameter groups (dicts)
    lr : float, default 0.01
    alpha : float in [0, 1), default 0.99
    eps : float, default 1e-8
    weight_decay, momentum : float, default 0
    centered : bool, default False
    nesterov : bool, default False
    max_norm, clip_grad_norm, fused : see :class:`~fastnn.optim.Optimizer`
    """

    kernel = "rmsprop_step"
    state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, nesterov=False, **options):
        super().__init__(params, lr, dict(alpha=float(alpha), eps=float(eps),
                                          weight_decay=float(weight_decay), momentum=float(momentum),
                                          centered=bool(centered), nesterov=bool(nesterov)), **options)

    def _check(self, h):
        if not 0 <= h["alpha"] < 1:
            raise ValueError(f"alpha must be in [0, 1), got {h['alpha']}")
        if h["eps"] < 0 or h["weight_decay"] < 0 or h["momentum"] < 0:
            raise ValueError("eps, weight_decay and momentum must be >= 0")
        if h["nesterov"] and h["momentum"] <= 0:
            raise ValueError("RMSProp(nesterov=True) needs momentum > 0")

    def _needs_state(self, h):
        return ("square_avg",) + (("momentum_buffer",) if h["momentum"] else ()) \
            + (("grad_avg",) if h["centered"] else ())

    def kernel_args(self, lr, h):
        return dict(lr=lr, **h)


RMSprop = RMSProp
"""PyTorch's spelling."""
