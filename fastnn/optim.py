"""Optimizers and learning-rate schedules.

Every optimizer follows PyTorch's update rule and argument names, so that a run can be compared
one to one with ``torch.optim``; each docstring maps PyTorch's form to the textbook's
(Goodfellow, Bengio and Courville, *Deep Learning*, ch. 8: ε is the learning rate, δ the small
constant, ρ a decay rate, α the momentum).

Each optimizer has two implementations of its update, as in ``torch.optim``:

* ``_step_reference(params, state, lr, h)`` - a plain per-parameter NumPy loop in textbook form
  over the parameters of one group: the oracle;
* ``_step_fused(p, g, state, lr, h)`` - one backend kernel call over a flat run of the model's
  parameter buffer (``be.adam_step(p, g, m, v, ...)``).

The base class :class:`Optimizer` does everything else once for all optimizers: parameter
groups, state buffers, the choice between the two forms, gradient clipping by global norm before
the update, the max-norm constraint after it, and saving / restoring the state.

Parameter groups
----------------
As in PyTorch, ``params`` is either a list of parameters or a list of dicts, each with a
``"params"`` list and any of the optimizer's keyword arguments overriding the defaults for that
group (``lr`` included)::

    fn.optim.SGD([{"params": model.parameters()[0::2], "weight_decay": 1e-4},   # weights
                  {"params": model.parameters()[1::2], "weight_decay": 0}],     # biases
                 lr=0.1, momentum=0.9)

The state buffers are flat arrays over all the parameters, group after group, each group's
parameters in their given order. A step runs the fused kernel once per *run*: a maximal sequence
of a group's parameters lying back to back in the model's flat buffer (the whole buffer for
``model.parameters()``).

A group's learning rate is ``param_groups[i]["lr"]``. :attr:`Optimizer.lr` is the learning rate
of the groups that did not set their own; when it changes (a schedule), every group's rate is
scaled by the same factor ``lr / lr_at_construction``, as PyTorch's schedulers scale each group.

Where the fused form runs
-------------------------
``step()`` uses the fused kernels whenever every parameter is a view into a model's flat
buffers (the parameters of a :class:`~fastnn.Sequential`), and the reference loop otherwise
(``fused=False`` forces the loop; it needs host arrays, so not on the cuda backend). Both read
and write the same state buffers, so they can be swapped mid-training and compared step by step.
"""
import math

import numpy as np

from .parameter import flat_range

# numpy backend: the module every host array can use when a parameter knows no backend
from .kernels import reference as _host_kernels


class Optimizer:
    """Base class of the optimizers.

    Parameters
    ----------
    params : list of Parameter, or list of dict
        The parameters to update, or parameter groups: dicts with a ``"params"`` list and
        per-group values of the optimizer's hyper-parameters (see the module docstring).
    lr : float
        Learning rate (ε in the texts), >= 0.
    hyper : dict
        The optimizer's hyper-parameters (the defaults of every group), from the subclass.
    max_norm : float or None, default None
        Max-norm constraint (Srivastava et al. 2014), applied after every step: the incoming
        weight vector of each unit is rescaled to norm ``max_norm`` when it is longer. It acts
        on the parameters with ``ndim >= 2``: for a Dense weight ``(in, out)`` the norm is over
        all axes but the last (one column per output unit); for a Conv2D weight
        ``(out, in, kh, kw)`` over all axes but the first (one filter per output channel).
        Biases and other 1-D parameters are left alone.
    clip_grad_norm : float or None, default None
        Gradient clipping by global norm, applied before every step, as
        ``torch.nn.utils.clip_grad_norm_``: with n the L2 norm of all the gradients of the
        optimizer's parameters together, every gradient is multiplied by
        ``min(1, clip_grad_norm / (n + 1e-6))``. The gradients are changed in place.
    fused : bool or None, default None
        None: the fused kernels when the parameters live in a model's flat buffers, the
        reference loop otherwise. False: always the reference loop. True: always the fused
        kernels (ValueError when the parameters are not in flat buffers).

    Attributes
    ----------
    params : list of Parameter
        Every parameter, group after group (the order of the state buffers).
    param_groups : list of dict
        ``{"params": [...], "lr": float, <hyper-parameter>: value, ...}`` per group.
    hyper : dict
        The default hyper-parameters (JSON-serialisable; saved with the model).
    state : dict of name -> flat array
        The state buffers (``state_names``), over ``params``.
    step_count : int
        Number of steps taken (``t`` of Adam's bias correction).

    Subclasses list their possible state buffers in ``state_names`` and say which ones a group
    needs in :meth:`_needs_state`; they implement ``_check(h)``, ``_step_reference`` and
    ``_step_fused`` and nothing about groups, clipping or saving.
    """

    state_names = ()

    def __init__(self, params, lr, hyper=None, max_norm=None, clip_grad_norm=None, fused=None):
        if not lr >= 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        for name, value in (("max_norm", max_norm), ("clip_grad_norm", clip_grad_norm)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        self.lr = float(lr)
        self._base_lr = self.lr
        self.hyper = dict(hyper or {})
        self.max_norm = None if max_norm is None else float(max_norm)
        self.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        self.step_count = 0
        self._check(self.hyper)
        self.param_groups = self._make_groups(params)
        self.params = [p for group in self.param_groups for p in group["params"]]
        self.be = getattr(self.params[0], "backend", None) or _host_kernels
        # (flat data, flat grad, start, stop) when the optimizer is one plain group over one
        # contiguous run, without clipping or constraint; None otherwise (see foldable_into_gemm)
        group = self.param_groups[0]
        plain = (len(self.param_groups) == 1 and group["lr"] == self.lr
                 and self.group_hyper(group) == self.hyper
                 and self.max_norm is None and self.clip_grad_norm is None)
        self._flat = flat_range(self.params) if plain else None
        self._make_state()
        self._runs = self._make_runs()
        if fused and self._runs is None:
            raise ValueError(f"{type(self).__name__}(fused=True) needs parameters that are views "
                             "into a model's flat buffers (model.parameters())")
        self.fused = fused is not False and self._runs is not None

    # -- construction ------------------------------------------------------------------
    def _make_groups(self, params):
        if isinstance(params, dict):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        groups, seen = [], set()
        allowed = set(self.hyper) | {"lr", "params"}
        for i, spec in enumerate(params):
            if not isinstance(spec, dict) or "params" not in spec:
                raise TypeError(f"parameter group {i} must be a dict with a 'params' list, "
                                f"got {type(spec).__name__}")
            unknown = sorted(set(spec) - allowed)
            if unknown:
                raise ValueError(f"parameter group {i} has unknown option(s) {unknown} for "
                                 f"{type(self).__name__}; choose from {sorted(allowed - {'params'})}")
            plist = list(spec["params"])
            if not plist:
                raise ValueError(f"parameter group {i} of {type(self).__name__} is empty")
            for p in plist:
                if id(p) in seen:
                    raise ValueError(f"parameter {getattr(p, 'name', p)!r} appears more than once "
                                     "in the optimizer's parameters")
                seen.add(id(p))
            group = {"params": plist, "lr": float(spec.get("lr", self.lr))}
            if not group["lr"] >= 0:
                raise ValueError(f"parameter group {i}: learning rate must be >= 0, got {group['lr']}")
            for k, v in self.hyper.items():
                group[k] = spec.get(k, v)
            self._check({k: group[k] for k in self.hyper})
            groups.append(group)
        return groups

    def _make_state(self):
        total = sum(p.size for p in self.params)
        dtype = self.params[0].data.dtype
        names = [n for n in self.state_names
                 if any(n in self._needs_state(self.group_hyper(g)) for g in self.param_groups)]
        self.state = {name: self.be.zeros((total,), dtype) for name in names}
        pos = 0
        for g in self.param_groups:
            size = sum(p.size for p in g["params"])
            for name in names:
                fill = self._initial_state(name, self.group_hyper(g))
                if fill:
                    self.state[name][pos:pos + size] = fill
            pos += size

    def _make_runs(self):
        """Per group, the runs ``(p, g, {name: state slice})`` of parameters lying back to back
        in one model's flat buffers; None when some parameter is not in flat buffers."""
        if any(p.flat_data is None for p in self.params):
            return None
        runs, pos = [], 0
        for group in self.param_groups:
            group_runs, plist, i = [], group["params"], 0
            while i < len(plist):
                j = i + 1
                while (j < len(plist) and plist[j].flat_data is plist[i].flat_data
                       and plist[j].offset == plist[j - 1].offset + plist[j - 1].size):
                    j += 1
                start, stop = plist[i].offset, plist[j - 1].offset + plist[j - 1].size
                size = stop - start
                group_runs.append((plist[i].flat_data[start:stop], plist[i].flat_grad[start:stop],
                                   {n: buf[pos:pos + size] for n, buf in self.state.items()}))
                pos += size
                i = j
            runs.append(group_runs)
        return runs

    # -- hooks for the subclasses --------------------------------------------------------
    def _check(self, h):
        """Raise ValueError for invalid hyper-parameters ``h`` (defaults or one group's)."""

    def _needs_state(self, h):
        """The names in ``state_names`` that a group with hyper-parameters ``h`` uses."""
        return self.state_names

    def _initial_state(self, name, h):
        """Initial value of state buffer ``name`` for a group with hyper-parameters ``h``."""
        return 0.0

    def _step_reference(self, params, state, lr, h):
        """Update ``params`` (one group) in a per-parameter loop; ``state[name]`` is the list of
        per-parameter views of each state buffer (None for a buffer the optimizer lacks)."""
        raise NotImplementedError

    def _step_fused(self, p, g, state, lr, h):
        """Update the flat run ``p`` from ``g`` in one kernel call; ``state[name]`` is the flat
        slice of each state buffer over the run (None for a buffer the optimizer lacks)."""
        raise NotImplementedError

    # -- groups and state ----------------------------------------------------------------
    def group_hyper(self, group):
        """The hyper-parameters of ``group`` (without ``params`` and ``lr``)."""
        return {k: group[k] for k in self.hyper}

    def group_lr(self, group):
        """The learning rate a step uses for ``group``: exactly :attr:`lr` for a group that set
        none of its own; else its own ``lr`` times the factor ``lr / lr_at_construction`` a
        schedule applied (no factor while :attr:`lr` is unchanged or was made 0)."""
        if group["lr"] == self._base_lr:
            return self.lr
        if self.lr == self._base_lr or self._base_lr == 0:
            return group["lr"]
        return group["lr"] * (self.lr / self._base_lr)

    def param_state(self, name):
        """Per-parameter views of state buffer ``name``, shaped like each parameter
        (in the order of :attr:`params`)."""
        views, pos, flat = [], 0, self.state[name]
        for p in self.params:
            views.append(flat[pos:pos + p.size].reshape(p.shape))
            pos += p.size
        return views

    def state_dict(self):
        """Host copies of everything needed to resume: learning rate, step count, state buffers
        (``"lr"``, ``"step_count"``, ``"state.<name>"``)."""
        out = {"lr": self.lr, "step_count": self.step_count}
        out.update({f"state.{k}": np.array(self.be.to_host(v)) for k, v in self.state.items()})
        return out

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned, in place (the optimizer must be built with
        the same class, parameters and groups). Raises ValueError when the state does not fit."""
        missing = [k for k in ["lr", "step_count"] + [f"state.{n}" for n in self.state] if k not in state]
        if missing:
            raise ValueError(f"optimizer state does not fit {type(self).__name__}: missing "
                             f"{missing}; it holds {sorted(state)}")
        for k, buf in self.state.items():
            value = np.asarray(state[f"state.{k}"])
            if value.shape != tuple(buf.shape):
                raise ValueError(f"optimizer state {k!r} has shape {value.shape}, "
                                 f"{type(self).__name__} needs {tuple(buf.shape)} (other parameters?)")
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        for k, buf in self.state.items():
            self.be.copy_into(buf, np.asarray(state[f"state.{k}"], dtype=buf.dtype))

    # -- stepping ----------------------------------------------------------------------
    def step(self):
        """Update every parameter in place from its ``grad`` (clipped first when
        ``clip_grad_norm`` is set; the max-norm constraint applied after)."""
        self.step_count += 1
        if self.clip_grad_norm is not None:
            self.clip_gradients(self.clip_grad_norm)
        if self.fused:
            self.step_fused()
        else:
            self.step_reference()
        if self.max_norm is not None:
            self.apply_max_norm(self.max_norm)

    def step_fused(self):
        """The update of every group by the fused kernels, one call per run (no clipping,
        no constraint, ``step_count`` not advanced: :meth:`step` does those)."""
        if self._runs is None:
            raise ValueError("the fused step needs parameters that are views into flat buffers")
        for group, runs in zip(self.param_groups, self._runs):
            lr, h = self.group_lr(group), self.group_hyper(group)
            for p, g, state in runs:
                self._step_fused(p, g, {n: state.get(n) for n in self.state_names}, lr, h)

    def step_reference(self):
        """The update of every group by the reference loop (see :meth:`step_fused`)."""
        views = {n: self.param_state(n) if n in self.state else [None] * len(self.params)
                 for n in self.state_names}
        pos = 0
        for group in self.param_groups:
            k = len(group["params"])
            self._step_reference(group["params"], {n: v[pos:pos + k] for n, v in views.items()},
                                 self.group_lr(group), self.group_hyper(group))
            pos += k

    def _grad_chunks(self):
        if self._runs is not None:
            return [g for runs in self._runs for _, g, _ in runs]
        return [p.grad for p in self.params]

    def grad_norm(self):
        """The global L2 norm of the gradients of all the optimizer's parameters."""
        return math.sqrt(sum(self.be.sum_of_squares(g) for g in self._grad_chunks()))

    def clip_gradients(self, max_norm):
        """Scale every gradient by ``min(1, max_norm / (norm + 1e-6))`` (PyTorch's
        ``clip_grad_norm_``); returns the global norm before clipping."""
        norm = self.grad_norm()
        coef = max_norm / (norm + 1e-6)
        if coef < 1:
            for g in self._grad_chunks():
                self.be.scale_inplace(g, coef)
        return norm

    def apply_max_norm(self, max_norm):
        """Rescale each unit's incoming weights to norm <= ``max_norm`` (see the class doc)."""
        for p in self.params:
            if len(p.shape) >= 2:
                self.be.renorm_units(p.data, max_norm, -1 if len(p.shape) == 2 else 0)

    def zero_grad(self):
        """Set every parameter's gradient to zero."""
        if self._runs is not None:
            for g in self._grad_chunks():
                g[:] = 0
        else:
            for p in self.params:
                p.grad[...] = 0

    def flat(self):
        """(parameters, gradients) as flat arrays covering ``self.params`` (one plain run)."""
        flat_data, flat_grad, start, stop = flat_range(self.params)
        return flat_data[start:stop], flat_grad[start:stop]

    def foldable_into_gemm(self, model=None):
        """True when a step is exactly ``w <- w - lr * g`` over one contiguous run with
        :attr:`lr` (plain SGD: one group, no momentum, weight decay, L1, clipping or max-norm),
        so a compiled epoch may fold it into the weight-gradient GEMMs. With ``model``, the run
        must also be the whole of the model's flat buffer."""
        if (type(self) is not SGD or self._flat is None or len(self.param_groups) != 1
                or self.max_norm is not None or self.clip_grad_norm is not None):
            return False
        group = self.param_groups[0]
        if group["momentum"] or group["weight_decay"] or group["l1"] or self.group_lr(group) != self.lr:
            return False
        if model is not None:
            data, _, start, stop = self._flat
            if data is not model.flat_params or (start, stop) != (0, model.num_parameters()):
                return False
        return True

    def __repr__(self):
        args = [f"{k}={v!r}" for k, v in self.hyper.items()]
        args += [f"{k}={getattr(self, k)!r}" for k in ("max_norm", "clip_grad_norm")
                 if getattr(self, k) is not None]
        if len(self.param_groups) > 1:
            args.append(f"groups={len(self.param_groups)}")
        return f"{type(self).__name__}(lr={self.lr}{', ' if args else ''}{', '.join(args)})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum, L2 and L1.

    PyTorch's rule: with g' = g + weight_decay * w + l1 * sign(w),
    v <- momentum * v + (1 - dampening) * g' (v = g' at the first step), and
    w <- w - lr * v  (or w - lr * (g' + momentum * v) with ``nesterov``).

    The textbook momentum form (Algorithm 8.2) v <- αv − εg, θ <- θ + v is the same trajectory
    for a constant learning rate (its v is −lr times PyTorch's, α = momentum, dampening 0).
    With ``nesterov`` the stored parameters are the textbook's interim point θ + αv
    (Algorithm 8.3, see :class:`RMSProp`). ``weight_decay`` is the L2 coefficient: the texts'
    weight decay factor (1 − ηλ/n) corresponds to ``weight_decay = λ/n``. ``l1`` adds
    l1 * sign(w) (the texts' L1 regulariser with l1 = λ/n).

    Parameters
    ----------
    params : list of Parameter or of parameter groups (dicts)
    lr : float
    momentum, dampening : float, default 0
    nesterov : bool, default False (needs momentum > 0 and dampening 0)
    weight_decay, l1 : float, default 0
    max_norm, clip_grad_norm, fused : see :class:`Optimizer`
    """

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

    def _step_fused(self, p, g, state, lr, h):
        self.be.sgd_step(p, g, state["momentum_buffer"], lr, first_step=self.step_count == 1, **h)

    def _step_reference(self, params, state, lr, h):
        for p, buf in zip(params, state["momentum_buffer"]):
            d = p.grad + h["weight_decay"] * p.data + h["l1"] * np.sign(p.data)
            if h["momentum"]:
                if self.step_count == 1:
                    buf[...] = d
                else:
                    buf[...] = h["momentum"] * buf + (1 - h["dampening"]) * d
                d = d + h["momentum"] * buf if h["nesterov"] else buf
            p.data[...] = p.data - lr * d


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
    max_norm, clip_grad_norm, fused : see :class:`Optimizer`
    """

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

    def _step_fused(self, p, g, state, lr, h):
        self.be.adagrad_step(p, g, state["sum"], lr, lr_decay=h["lr_decay"],
                             weight_decay=h["weight_decay"], eps=h["eps"], step=self.step_count)

    def _step_reference(self, params, state, lr, h):
        clr = lr / (1 + (self.step_count - 1) * h["lr_decay"])
        for p, r in zip(params, state["sum"]):
            g = p.grad + h["weight_decay"] * p.data
            r[...] = r + g * g
            p.data[...] = p.data - clr * g / (np.sqrt(r) + h["eps"])


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
    max_norm, clip_grad_norm, fused : see :class:`Optimizer`
    """

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

    def _step_fused(self, p, g, state, lr, h):
        self.be.rmsprop_step(p, g, state["square_avg"], state["momentum_buffer"], state["grad_avg"],
                             lr, **h)

    def _step_reference(self, params, state, lr, h):
        rho, mu = h["alpha"], h["momentum"]
        for p, r, b, gbar in zip(params, state["square_avg"], state["momentum_buffer"],
                                 state["grad_avg"]):
            g = p.grad + h["weight_decay"] * p.data
            r[...] = rho * r + (1 - rho) * g * g
            if h["centered"]:
                gbar[...] = rho * gbar + (1 - rho) * g
                u = g / (np.sqrt(r - gbar * gbar) + h["eps"])
            else:
                u = g / (np.sqrt(r) + h["eps"])
            if mu > 0:
                b[...] = mu * b + u
                u = u + mu * b if h["nesterov"] else b
            p.data[...] = p.data - lr * u


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
    max_norm, clip_grad_norm, fused : see :class:`Optimizer`
    """

    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled = False

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

    def _step_fused(self, p, g, state, lr, h):
        b1, b2 = h["betas"]
        self.be.adam_step(p, g, state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"], lr,
                          beta1=b1, beta2=b2, eps=h["eps"], weight_decay=h["weight_decay"],
                          step=self.step_count, amsgrad=h["amsgrad"], decoupled=self.decoupled)

    def _step_reference(self, params, state, lr, h):
        (b1, b2), t, wd = h["betas"], self.step_count, h["weight_decay"]
        for p, m, v, vmax in zip(params, state["exp_avg"], state["exp_avg_sq"],
                                 state["max_exp_avg_sq"]):
            g = p.grad
            if self.decoupled:
                p.data[...] = p.data * (1 - lr * wd)
            else:
                g = g + wd * p.data
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            if h["amsgrad"]:
                vmax[...] = np.maximum(vmax, v)
                v = vmax
            m_hat = m / (1 - b1 ** t)
            v_hat = v / (1 - b2 ** t)
            p.data[...] = p.data - lr * m_hat / (np.sqrt(v_hat) + h["eps"])


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
    max_norm, clip_grad_norm, fused : see :class:`Optimizer`
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, **options):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, **options)


Adagrad = AdaGrad
"""PyTorch's spelling."""
RMSprop = RMSProp
"""PyTorch's spelling."""


# ------------------------------------------------------------------------------- schedules


class Schedule:
    """Sets ``optimizer.lr`` from the number of times :meth:`step` was called.

    ``value(k)`` is the learning rate after ``k`` steps (``value(0)`` is the optimizer's rate
    when the schedule was made); ``step()`` advances ``k`` and sets the optimizer's rate (every
    parameter group follows it, scaled, see :class:`Optimizer`). A schedule counts whatever
    calls its ``step``: once per epoch (the default; ``per_batch=False``) or once per mini-batch
    (``per_batch=True``); the flag tells a ``LearningRateScheduler`` callback which, so ``steps``
    and ``step_size`` are in epochs or in batches accordingly.

    Parameters
    ----------
    optimizer : Optimizer
    per_batch : bool, default False
    """

    def __init__(self, optimizer, per_batch=False):
        self.optimizer = optimizer
        self.initial_lr = optimizer.lr
        self.per_batch = bool(per_batch)
        self.k = 0

    def step(self):
        """Advance one step; returns the new learning rate (also set on the optimizer)."""
        self.k += 1
        self.optimizer.lr = self.value(self.k)
        return self.optimizer.lr

    def value(self, k):
        raise NotImplementedError

    def state_dict(self):
        """``{"k": steps taken, "initial_lr": ε_0}``, to resume the schedule."""
        return {"k": self.k, "initial_lr": self.initial_lr}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned and set the optimizer's rate to ``value(k)``."""
        self.k, self.initial_lr = int(state["k"]), float(state["initial_lr"])
        self.optimizer.lr = self.value(self.k)

    @staticmethod
    def _positive(name, value):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
        return int(value)


class LinearDecay(Schedule):
    """ε_k = (1 − k/τ) ε_0 + (k/τ) ε_τ for k <= τ, then constant ε_τ (τ = ``steps``)."""

    def __init__(self, optimizer, final_lr, steps, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.final_lr, self.steps = float(final_lr), self._positive("steps", steps)

    def value(self, k):
        a = min(k / self.steps, 1.0)
        return (1 - a) * self.initial_lr + a * self.final_lr


class StepDecay(Schedule):
    """ε_k = ε_0 · gamma^floor(k / step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.step_size, self.gamma = self._positive("step_size", step_size), float(gamma)

    def value(self, k):
        return self.initial_lr * self.gamma ** (k // self.step_size)


class ExponentialDecay(Schedule):
    """ε_k = ε_0 · gamma^k."""

    def __init__(self, optimizer, gamma, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.gamma = float(gamma)

    def value(self, k):
        return self.initial_lr * self.gamma ** k


class CosineDecay(Schedule):
    """ε_k = ε_min + (ε_0 − ε_min) (1 + cos(π min(k, τ)/τ)) / 2 (τ = ``steps``, ε_min = ``final_lr``)."""

    def __init__(self, optimizer, steps, final_lr=0.0, per_batch=False):
        super().__init__(optimizer, per_batch)
        self.steps, self.final_lr = self._positive("steps", steps), float(final_lr)

    def value(self, k):
        c = (1 + math.cos(math.pi * min(k, self.steps) / self.steps)) / 2
        return self.final_lr + (self.initial_lr - self.final_lr) * c


OPTIMIZERS = {"sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}


def get(name, params, lr=None, **kwargs):
    """Build an optimizer by name: 'sgd', 'momentum' (SGD, momentum 0.9), 'nesterov' (SGD,
    Nesterov momentum 0.9), and the names in ``OPTIMIZERS`` ('adagrad', 'rmsprop', 'adam',
    'adamw'). ``lr=None`` keeps the optimizer's default (SGD has none)."""
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
