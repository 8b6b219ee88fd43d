"""The base class of the optimizers: parameter groups, state buffers, the two paths of a step,
gradient clipping, the max-norm constraint and saving / restoring (see :mod:`fastnn.optim`)."""
import math

import numpy as np

from .. import threads
from ..backend import get_backend
from ..parameter import flat_range


class Optimizer:
    """Base class of the optimizers.

    Parameters
    ----------
    params : list of Parameter, or list of dict
        The parameters to update, or parameter groups: dicts with a ``"params"`` list and
        per-group values of the optimizer's hyper-parameters (see :mod:`fastnn.optim`).
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
        None: the fused path when the parameters live in a model's flat buffers, the
        per-parameter path otherwise. False: always the per-parameter path (host arrays only,
        so not on the cuda backend). True: always the fused path (ValueError when the
        parameters are not in flat buffers).

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
        Number of steps taken (``t`` of Adam's bias correction). Advanced by :meth:`step`, and
        by :meth:`count_steps` for steps applied elsewhere; nothing else writes it.

    A subclass declares ``kernel`` (the name of its update op in
    :mod:`fastnn.kernels.contract`, e.g. ``"adam_step"``), ``state_names`` (its state buffers,
    in the order of that op's buffer arguments), which of them a group needs
    (:meth:`_needs_state`) and their initial values (:meth:`_initial_state`), the validation
    of its hyper-parameters (:meth:`_check`) and :meth:`kernel_args`, the op's keyword
    arguments for one group at the current step. Nothing about groups, paths, clipping or
    saving.

    Pickling and copying: an optimizer pickles its hyper-parameters, groups, step count,
    learning rate and state buffers (as host arrays), its backend by name, and references to
    its Parameters; pickled with its model (``pickle.dumps((model, opt))``) those are the
    model's own (pickle's memo), so after unpickling the optimizer updates the unpickled model.
    Pickled alone it brings the model its parameters belong to along with it. The flat runs are
    made again over the restored buffers.
    """

    kernel = None
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
        self.be = self._params_backend()
        self._make_state()
        self._runs = self._make_runs()
        if fused and self._runs is None:
            raise ValueError(f"{type(self).__name__}(fused=True) needs parameters that are views "
                             "into a model's flat buffers (model.parameters())")
        if fused is False and not self.be.HOST_ARRAYS:
            raise ValueError(f"{type(self).__name__}(fused=False) runs the reference kernels on "
                             f"host arrays; the {self.be.NAME!r} backend's parameters are not "
                             "(leave fused=None)")
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

    # -- what the subclasses declare -----------------------------------------------------
    def _check(self, h):
        """Raise ValueError for invalid hyper-parameters ``h`` (defaults or one group's)."""

    def _needs_state(self, h):
        """The names in ``state_names`` that a group with hyper-parameters ``h`` uses."""
        return self.state_names

    def _initial_state(self, name, h):
        """Initial value of state buffer ``name`` for a group with hyper-parameters ``h``."""
        return 0.0

    def kernel_args(self, lr, h):
        """The keyword arguments of the ``kernel`` op for a group with learning rate ``lr``
        and hyper-parameters ``h``, at the step :attr:`step_count` (``lr`` included)."""
        raise NotImplementedError

    # -- the update: one kernel call, on a flat run or on one parameter ----------------------
    def _update(self, be, p, g, state, kwargs):
        """``be.<kernel>(p, g, *state buffers, **kwargs)``: the one place an update rule runs.
        ``state`` maps every name of ``state_names`` to the buffer over ``p`` or None."""
        getattr(be, self.kernel)(p, g, *(state[n] for n in self.state_names), **kwargs)

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

    # -- pickling and copying -------------------------------------------------------------
    _restored_attrs = ("be", "state", "_runs", "fused")

    def __getstate__(self):
        if "_pending" in self.__dict__:
            self._restore()
        state = self.__dict__.copy()
        be = state.pop("be")
        state.pop("_runs", None)
        state["_backend_name"] = be.NAME
        state["state"] = {k: be.to_host(v) for k, v in self.state.items()}
        return state

    def __setstate__(self, state):
        state = dict(state)
        pending = (state.pop("_backend_name", None), state.pop("state"), state.pop("fused"))
        self.__dict__.update(state)
        self._pending = pending
        # the parameters are bound once their model is restored: in a pickle of the model and
        # the optimizer, or of the optimizer alone, that is always before this point; should the
        # model come later (it holds the optimizer), the state is rebuilt on first use instead
        if all(p.__dict__.get("data") is not None for p in self.params):
            self._restore()

    def __getattr__(self, name):
        if name in Optimizer._restored_attrs and "_pending" in self.__dict__:
            self._restore()
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _restore(self):
        """Make the state buffers and flat runs of an unpickled optimizer on its backend."""
        name, host_state, fused = self.__dict__.pop("_pending")
        if any(p.__dict__.get("data") is None for p in self.params):
            self._pending = (name, host_state, fused)
            raise RuntimeError(f"unpickled {type(self).__name__}: its parameters are not bound "
                               "to their model yet")
        be = self.be = self._params_backend()
        self.state = {k: be.to_device(np.array(v)) for k, v in host_state.items()}
        self._runs = self._make_runs()
        self.fused = bool(fused) and self._runs is not None

    def _params_backend(self):
        """The model's backend (Sequential sets Parameter.backend); numpy for bare host arrays."""
        return getattr(self.params[0], "backend", None) or get_backend("numpy")

    # -- stepping ----------------------------------------------------------------------
    def step(self):
        """Update every parameter in place from its ``grad`` (clipped first when
        ``clip_grad_norm`` is set; the max-norm constraint applied after)."""
        self.step_count += 1
        threads.use_backend(self.be)
        if self.clip_grad_norm is not None:
            self.clip_gradients(self.clip_grad_norm)
        if self.fused:
            self.step_fused()
        else:
            self.step_reference()
        if self.max_norm is not None:
            self.apply_max_norm(self.max_norm)

    def count_steps(self, n):
        """Count ``n`` steps that a compiled epoch applied itself (plain SGD folded into its
        GEMMs, see :meth:`SGD.foldable_into_gemm`), so that :attr:`step_count` stays the
        number of updates made."""
        if int(n) != n or n < 0:
            raise ValueError(f"count_steps needs a whole number >= 0, got {n!r}")
        self.step_count += int(n)

    def step_fused(self):
        """The fused path: every group updated by the kernel of the model's backend, one call
        per flat run (no clipping, no constraint, ``step_count`` not advanced: :meth:`step`
        does those)."""
        if self._runs is None:
            raise ValueError("the fused step needs parameters that are views into flat buffers")
        for group, runs in zip(self.param_groups, self._runs):
            kwargs = self.kernel_args(self.group_lr(group), self.group_hyper(group))
            for p, g, state in runs:
                self._update(self.be, p, g, {n: state.get(n) for n in self.state_names}, kwargs)

    def step_reference(self):
        """The per-parameter path: the reference backend's kernel once per parameter, on its
        ``data``, ``grad`` and state views (host arrays; see :meth:`step_fused`)."""
        ref = get_backend("numpy")
        views = {n: self.param_state(n) if n in self.state else None for n in self.state_names}
        i = 0
        for group in self.param_groups:
            kwargs = self.kernel_args(self.group_lr(group), self.group_hyper(group))
            for p in group["params"]:
                state = {n: None if v is None else v[i] for n, v in views.items()}
                self._update(ref, p.data, p.grad, state, kwargs)
                i += 1

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

    def __repr__(self):
        args = [f"{k}={v!r}" for k, v in self.hyper.items()]
        args += [f"{k}={getattr(self, k)!r}" for k in ("max_norm", "clip_grad_norm")
                 if getattr(self, k) is not None]
        if len(self.param_groups) > 1:
            args.append(f"groups={len(self.param_groups)}")
        return f"{type(self).__name__}(lr={self.lr}{', ' if args else ''}{', '.join(args)})"
