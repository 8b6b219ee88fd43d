"""Stochastic gradient descent (``fastnn.kernels.contract.sgd_step``)."""
from ..parameter import flat_range
from .base import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum, L2 and L1.

    PyTorch's rule: with g' = g + weight_decay * w + l1 * sign(w),
    v <- momentum * v + (1 - dampening) * g' (v = g' at the first step), and
    w <- w - lr * v  (or w - lr * (g' + momentum * v) with ``nesterov``).

    The textbook momentum form (Algorithm 8.2) v <- αv − εg, θ <- θ + v is the same trajectory
    for a constant learning rate (its v is −lr times PyTorch's, α = momentum, dampening 0).
    With ``nesterov`` the stored parameters are the textbook's interim point θ + αv
    (Algorithm 8.3, see :class:`~fastnn.optim.RMSProp`). ``weight_decay`` is the L2
    coefficient: the texts' weight decay factor (1 − ηλ/n) corresponds to
    ``weight_decay = λ/n``. ``l1`` adds l1 * sign(w) (the texts' L1 regulariser with l1 = λ/n).

    Parameters
    ----------
    params : list of Parameter or of parameter groups (dicts)
    lr : float
    momentum, dampening : float, default 0
    nesterov : bool, default False (needs momentum > 0 and dampening 0)
    weight_decay, l1 : float, default 0
    max_norm, clip_grad_norm, fused : see :class:`~fastnn.optim.Optimizer`
    """

    kernel = "sgd_step"
    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, l1=0.0, **options):
        super().__init__(params, lr, dict(momentum=float(momentum), dampening=float(dampening),
                                          nesterov=bool(nesterov), weight_decay=float(weight_decay),
                                          l1=float(l1)), **options)

    def _check(self, h):
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        if h["momentum"] < 0 or h["weight_decay"] < 0 or h["l1"] < 0:
            raise ValueError("momentum, weight_decay and l1 must be >= 0")

    def _needs_state(self, h):
        return ("momentum_buffer",) if h["momentum"] else ()

    def kernel_args(self, lr, h):
        # the momentum buffer starts as the first step's direction
        return dict(lr=lr, first_step=self.step_count == 1, **h)

    def foldable_into_gemm(self, model=None):
        """True when a step is exactly ``w <- w - lr * g`` over one contiguous run with
        :attr:`lr` (one group, no momentum, weight decay, L1, clipping or max-norm), so a
        compiled epoch may fold it into the weight-gradient GEMMs (and report those steps
        with :meth:`count_steps`). With ``model``, the run must also be the whole of the
        model's flat buffer."""
        if (len(self.param_groups) != 1 or self.max_norm is not None
                or self.clip_grad_norm is not None):
            return False
        group = self.param_groups[0]
        if group["momentum"] or group["weight_decay"] or group["l1"] or self.group_lr(group) != self.lr:
            return False
        flat = flat_range(self.params)
        if flat is None:
            return False
        if model is not None:
            data, _, start, stop = flat
            if data is not model.flat_params or (start, stop) != (0, model.num_parameters()):
                return False
        return True
