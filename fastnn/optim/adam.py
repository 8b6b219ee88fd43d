"""Adam and AdamW (``fastnn.kernels.contract.adam_step``, ``decoupled`` False / True)."""
from .base import Optimizer


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015), PyTorch's ``Adam``.

    PyTorch's rule at step t: g' = g + weight_decay * w (the L2 term in the gradient);
    m <- β1 m + (1 − β1) g'; v <- β2 v + (1 − β2) g' ⊙ g'; ``amsgrad``: v̂max <- max(v̂max, v)
    and v is replaced by v̂max below; m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t);
    w <- w − lr * m̂ / (√v̂ + eps).

    This is the textbook's Algorithm 8.7 (s, r, ŝ, r̂; Δθ = −ε ŝ/(√r̂ + δ)) with ε = lr,
    ρ1, ρ2 = betas, δ = eps (outside the square root in both).

    Parameters
    ----------
    params : list of Parameter or of parameter groups (dicts)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999), each in [0, 1)
    eps : float, default 1e-8
    weight_decay : float, default 0
    amsgrad : bool, default False
    max_norm, clip_grad_norm, fused : see :class:`~fastnn.optim.Optimizer`
    """

    kernel = "adam_step"
    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False
    """Whether the weight decay shrinks the weights (AdamW) instead of entering the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, **options):
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas}")
        super().__init__(params, lr, dict(betas=betas, eps=float(eps), weight_decay=float(weight_decay),
                                          amsgrad=bool(amsgrad)), **options)

    def _check(self, h):
        b1, b2 = h["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {tuple(h['betas'])}")
        if h["eps"] < 0 or h["weight_decay"] < 0:
            raise ValueError("eps and weight_decay must be >= 0")

    def _needs_state(self, h):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if h["amsgrad"] else ())

    def kernel_args(self, lr, h):
        b1, b2 = h["betas"]
        return dict(lr=lr, beta1=b1, beta2=b2, eps=h["eps"], weight_decay=h["weight_decay"],
                    step=self.step_count, amsgrad=h["amsgrad"], decoupled=self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter 2019), PyTorch's ``AdamW``.

    As :class:`Adam` except the weight decay: the gradient is left alone and the weights
    shrink before the Adam update, w <- w (1 − lr * weight_decay) (the texts' weight decay
    factor with ηλ = lr * weight_decay), so the decay is not rescaled by 1/(√v̂ + eps).

    Parameters
    ----------
    params : list of Parameter or of parameter groups (dicts)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0.01
    amsgrad : bool, default False
    max_norm, clip_grad_norm, fused : see :class:`~fastnn.optim.Optimizer`
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, **options):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, **options)
