"""Optimizers and learning-rate schedules.

Two kinds:

* the step optimizers :class:`SGD`, :class:`AdaGrad`, :class:`RMSProp`, :class:`Adam`,
  :class:`AdamW` and :class:`AdaDelta` (``step()`` after each backward pass);
* the closure optimizers (:class:`ClosureOptimizer`, :mod:`.closure`): :class:`LBFGS`,
  :class:`BFGS`, :class:`ConjugateGradient` and :class:`Newton`, full-batch methods whose
  ``step(closure)`` re-evaluates the cost itself (``fit`` drives them through
  :mod:`.closure_fit`).

The step optimizers and L-BFGS follow PyTorch's update rule and argument names, so that a run
can be compared one to one with ``torch.optim``; each docstring maps PyTorch's form to the
textbook's (Goodfellow, Bengio and Courville, *Deep Learning*, ch. 8: ε is the learning rate,
δ the small constant, ρ a decay rate, α the momentum). PyTorch has no BFGS, conjugate
gradients or Newton: BFGS and Polak-Ribiere+ conjugate gradients are SciPy's methods
(``scipy.optimize.minimize``, Nocedal and Wright), Newton the texts' section 8.6.1 (damped,
on Hessian-vector products); their docstrings give the rules and the arguments.

Where the update rules live
---------------------------
Each rule of a step optimizer is written once, as a NumPy kernel of the reference backend:
``kernels/reference/optimizers.py`` (``fastnn.kernels.reference.optimizers``: ``sgd_step``,
``adagrad_step``, ``rmsprop_step``, ``adam_step``, ``adadelta_step``; signatures in
:mod:`fastnn.kernels.contract`), with its compiled twins in ``kernels/cpu/optimizers.py`` and
``kernels/cuda/optimizers.py``, tested against it. An optimizer class holds its
hyper-parameters (their defaults, validation and per-group values), the names of its state
buffers, the name of its kernel (``kernel``) and :meth:`~Optimizer.kernel_args`, which turns a
group's learning rate, hyper-parameters and the step count into the kernel's keyword
arguments. :class:`Optimizer` makes the one kernel call (``Optimizer._update``), on either of
two paths, as ``torch.optim`` has a for-each and a per-parameter form:

* the **fused** path: the kernel of the model's backend once per flat run of the model's
  parameter buffer (``be.adam_step(p, g, m, v, ...)`` over the whole buffer for
  ``model.parameters()``);
* the **per-parameter** path: the reference kernel (``get_backend("numpy")``) once per
  parameter, on its ``data``, ``grad`` and the per-parameter views of the state buffers
  (arrays of the parameter's shape: the NumPy kernels are elementwise and take any shape).

Both read and write the same state buffers, so they can be swapped mid-training and compared
step by step (``tests/test_optim.py``, which also checks every configuration against
``torch.optim`` and the variants PyTorch lacks against hand-written textbook loops).

The base class does everything else once for all step optimizers: parameter groups, state
buffers, the choice between the two paths, gradient clipping by global norm before the update,
the max-norm constraint after it, and saving / restoring the state.

The closure optimizers have no kernel: their vector arithmetic runs in NumPy on host copies of
the flat parameters and gradients (see :mod:`.closure`); they take one parameter group and no
clipping or max-norm.

Parameter groups
----------------
As in PyTorch, ``params`` is either a list of parameters or a list of dicts, each with a
``"params"`` list and any of the optimizer's keyword arguments overriding the defaults for that
group (``lr`` included)::

    fn.optim.SGD([{"params": model.parameters()[0::2], "weight_decay": 1e-4},   # weights
                  {"params": model.parameters()[1::2], "weight_decay": 0}],     # biases
                 lr=0.1, momentum=0.9)

The state buffers are flat arrays over all the parameters, group after group, each group's
parameters in their given order. A fused step runs the kernel once per *run*: a maximal sequence
of a group's parameters lying back to back in the model's flat buffer (the whole buffer for
``model.parameters()``).

A group's learning rate is ``param_groups[i]["lr"]``. :attr:`Optimizer.lr` is the learning rate
of the groups that did not set their own; when it changes (a schedule), every group's rate is
scaled by the same factor ``lr / lr_at_construction``, as PyTorch's schedulers scale each group.

Which path runs
---------------
``step()`` takes the fused path whenever every parameter is a view into a model's flat
buffers (the parameters of a :class:`~fastnn.Sequential`), and the per-parameter path
otherwise (``fused=False`` forces it; it needs host arrays, so not on the cuda backend).

Steps made outside ``step()``
-----------------------------
A compiled epoch may fold plain SGD into its weight-gradient GEMMs
(:meth:`SGD.foldable_into_gemm`); it then reports those updates with
:meth:`Optimizer.count_steps`. Nothing else writes :attr:`Optimizer.step_count`.

Modules: :mod:`.base` (Optimizer), :mod:`.sgd`, :mod:`.adagrad`, :mod:`.rmsprop`,
:mod:`.adam` (Adam, AdamW), :mod:`.adadelta`; :mod:`.closure` (ClosureOptimizer),
:mod:`.lbfgs`, :mod:`.bfgs`, :mod:`.cg` (ConjugateGradient), :mod:`.newton`,
:mod:`.line_search` (the strong Wolfe search of L-BFGS, BFGS and CG), :mod:`.closure_fit`
(the epoch runner ``fit`` uses for them); :mod:`.schedules`.
"""
from .adadelta import AdaDelta, Adadelta
from .adagrad import AdaGrad, Adagrad
from .adam import Adam, AdamW
from .base import Optimizer
from .bfgs import BFGS
from .cg import ConjugateGradient
from .closure import ClosureOptimizer
from .lbfgs import LBFGS
from .newton import Newton
from .rmsprop import RMSProp, RMSprop
from .schedules import CosineDecay, ExponentialDecay, LinearDecay, Schedule, StepDecay
from .sgd import SGD

OPTIMIZERS = {"sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW,
              "adadelta": AdaDelta}
"""Optimizer classes by name (see :func:`get`)."""


def get(name, params, lr=None, **kwargs):
    """Build a step optimizer by name: 'sgd', 'momentum' (SGD, momentum 0.9), 'nesterov' (SGD,
    Nesterov momentum 0.9), and the names in ``OPTIMIZERS`` ('adagrad', 'rmsprop', 'adam',
    'adamw', 'adadelta'). ``lr=None`` keeps the optimizer's default (SGD has none). The closure
    optimizers (LBFGS, BFGS, ConjugateGradient, Newton) have no name here: build them from
    their classes."""
    name = name.lower()
    if name in ("momentum", "nesterov"):
        kwargs.setdefault("momentum", 0.9)
        kwargs["nesterov"] = name == "nesterov"
        name = "sgd"
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of "
                         f"{sorted(set(OPTIMIZERS) | {'momentum', 'nesterov'})}")
    if lr is not None:
        kwargs["lr"] = lr
    return OPTIMIZERS[name](params, **kwargs)


__all__ = ["Optimizer", "ClosureOptimizer", "LBFGS",
           "BFGS", "ConjugateGradient", "Newton",
           "SGD", "AdaGrad", "Adagrad", "AdaDelta", "Adadelta", "RMSProp", "RMSprop", "Adam",
           "AdamW",
           "Schedule", "LinearDecay", "StepDecay", "ExponentialDecay", "CosineDecay",
           "OPTIMIZERS", "get"]
