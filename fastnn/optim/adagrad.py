"""AdaGrad (``fastnn.kernels.contract.adagrad_step``)."""
from .base import Optimizer


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011), PyTorch's ``Adagrad``.

    PyTorch's rule, at step t: g' = g + weight_decay * w;
    clr = lr / (1 + (t − 1) * lr_decay); r <- r + g' ⊙ g'; w <- w − clr * g' / (√r + eps),
    with r starting at ``initial_accumulator_value``.

    This is the textbook's Algorithm 8.4 (r ← r + g⊙g, Δθ = −ε/(δ + √r) ⊙ g) with ε = lr,
    δ = eps, plus PyTorch's optional L2 term and learning-rate decay.

    Parameters
    ----------
    params : list of Parameter or of parameter groups (dicts)
    lr : float, default 0.01
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
    eps : float, default 1e-10
    max_norm, clip_grad_norm, fused : see :class:`~fastnn.optim.Optimizer`
    """

    kernel = "adagrad_step"
    state_names = ("sum",)

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, **options):
        super().__init__(params, lr, dict(lr_decay=float(lr_decay), weight_decay=float(weight_decay),
                                          initial_accumulator_value=float(initial_accumulator_value),
                                          eps=float(eps)), **options)

    def _check(self, h):
        if h["lr_decay"] < 0 or h["weight_decay"] < 0 or h["eps"] < 0 \
                or h["initial_accumulator_value"] < 0:
            raise ValueError("lr_decay, weight_decay, initial_accumulator_value and eps must be >= 0")

    def _initial_state(self, name, h):
        return h["initial_accumulator_value"]

    def kernel_args(self, lr, h):
        # initial_accumulator_value only fills the state buffer (_initial_state)
        return dict(lr=lr, lr_decay=h["lr_decay"], weight_decay=h["weight_decay"], eps=h["eps"],
                    step=self.step_count)


Adagrad = AdaGrad
"""PyTorch's spelling."""
