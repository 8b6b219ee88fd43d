"""Parameters as views into one flat parameter buffer and one flat gradient buffer; and how a
pickled object finds its backend again (:func:`restore_backend`)."""
import contextlib
import contextvars
import os
import weakref

import numpy as np

from . import backend as _registry
from .errors import BackendUnavailableError

UNPICKLE_BACKEND_ENV = "FASTNN_UNPICKLE_BACKEND"
"""Environment variable naming the backend every unpickled fastnn object runs on (instead of
the one it was pickled on); :func:`unpickle_backend` does the same for a block of code."""

_unpickle_override = contextvars.ContextVar("fastnn_unpickle_backend", default=None)


@contextlib.contextmanager
def unpickle_backend(name):
    """Unpickle (or deep-copy) fastnn objects onto backend ``name`` inside the block, whatever
    backend they were pickled on (like ``torch.load``'s ``map_location``)::

        with fastnn.model.unpickle_backend("cpu"):
            model = pickle.loads(blob)            # a model trained on "cuda"

    ``name=None`` inside the block means: each object's own backend. It overrides
    ``$FASTNN_UNPICKLE_BACKEND``.
    """
    if name is not None and name not in _registry.NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_registry.NAMES)}")
    token = _unpickle_override.set(name if name is not None else "")
    try:
        yield
    finally:
        _unpickle_override.reset(token)


def restore_backend(name, what="object"):
    """The backend module a pickled fastnn object (``what``, for the message) saved as ``name``
    runs on after unpickling: ``name`` itself, unless :func:`unpickle_backend` or
    ``$FASTNN_UNPICKLE_BACKEND`` names another.

    Raises BackendUnavailableError naming the backend and the ways to load the object on
    another one when it cannot run here (e.g. "cuda" on a machine without a GPU).
    """
    override = _unpickle_override.get()
    if override is None:
        override = os.environ.get(UNPICKLE_BACKEND_ENV) or None
    target = override or name
    try:
        return _registry.get_backend(target)
    except BackendUnavailableError as exc:
        others = [n for n in ("cpu", "numpy", "cuda") if n != target]   # fastest first
        moved = f" (mapped from {name!r})" if target != name else ""
        raise BackendUnavailableError(
            f"cannot unpickle this fastnn {what}: it runs on backend {target!r}{moved}, which is "
            f"not available here ({exc}). To load it on another backend, unpickle it inside "
            f"`with fastnn.model.unpickle_backend({others[0]!r}):` or with the environment "
            f"variable {UNPICKLE_BACKEND_ENV}={others[0]} (any of {', '.join(others)}); a model "
            f"saved with model.save(path) loads anywhere with "
            f"fastnn.Sequential.load(path, backend=...)") from exc


class Parameter:
    """A trainable array of a layer.

    Attributes
    ----------
    data : ndarray
        The values; a view into the model's flat parameter buffer.
    grad : ndarray
        The gradient, same shape; a view into the model's flat gradient buffer.
    name : str
        ``"<layer index>.<layer class>.<name>"``, e.g. ``"0.Dense.weight"``.
    offset : int
        Position of the first element in the flat buffers.
    backend : module or None
        The kernels of the model's backend (set by :class:`~fastnn.Sequential`).
    model : Sequential or None
        The model whose flat buffers hold this parameter (held weakly).

    Pickling and copying
    --------------------
    A parameter of a model pickles as its name, shape and offset plus a reference to its model
    (pickle's memo keeps one model per pickle); the model, when it is restored, makes the
    parameter a view into its new flat buffers again. So an optimizer pickled with (or
    without) its model still updates that model's parameters. A parameter without a model
    pickles its arrays (its flat buffers when it has some; on a host backend those stay shared
    between the parameters of one pickle); its backend is stored by name.
    """

    def __init__(self, name, shape):
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape))
        self.data = None
        self.grad = None
        self.offset = None
        self.flat_data = None
        self.flat_grad = None
        self.backend = None
        self._model = None

    def bind(self, flat_data, flat_grad, offset):
        """Make ``data``/``grad`` views into the flat buffers starting at ``offset``."""
        self.offset = offset
        self.flat_data, self.flat_grad = flat_data, flat_grad
        self.data = flat_data[offset:offset + self.size].reshape(self.shape)
        self.grad = flat_grad[offset:offset + self.size].reshape(self.shape)

    @property
    def model(self):
        """The :class:`~fastnn.Sequential` whose flat buffers hold this parameter, or None."""
        ref = self.__dict__.get("_model")
        return ref() if ref is not None else None

    def attach(self, model, flat_data, flat_grad, offset, shape):
        """Bind to ``model``'s flat buffers (``Sequential`` calls it when it is made or
        unpickled; ``shape`` is given because an unpickled parameter may not have its own
        attributes back yet)."""
        self.shape = tuple(shape)
        self.size = int(np.prod(self.shape))
        self.bind(flat_data, flat_grad, offset)
        self.backend = model.be
        self._model = weakref.ref(model)

    # -- pickling ------------------------------------------------------------------------
    def __getstate__(self):
        state = {"name": self.name, "shape": self.shape, "size": self.size, "offset": self.offset,
                 "backend": getattr(self.backend, "NAME", None)}
        model = self.model
        if model is not None and getattr(model, "flat_params", None) is self.flat_data:
            state["model"] = model               # it rebinds this parameter when restored
            return state
        host = self.backend is None or self.backend.HOST_ARRAYS
        to_host = (lambda a: a) if host else self.backend.to_host
        if self.flat_data is not None:
            state["flat"] = (to_host(self.flat_data), to_host(self.flat_grad))
        elif self.data is not None:
            state["arrays"] = (to_host(self.data), None if self.grad is None else to_host(self.grad))
        return state

    def __setstate__(self, state):
        state = dict(state)
        model = state.pop("model", None)
        flat = state.pop("flat", None)
        arrays = state.pop("arrays", None)
        backend_name = state.pop("backend", None)
        self.__dict__.update(state)
        for key in ("data", "grad", "flat_data", "flat_grad", "backend", "_model"):
            self.__dict__.setdefault(key, None)   # kept when the model already bound us
        if model is not None:
            self._model = weakref.ref(model)
            return
        be = restore_backend(backend_name, "Parameter") if backend_name else None
        to_device = be.to_device if be is not None else (lambda a: a)
        self.backend = be
        if flat is not None:
            self.bind(to_device(flat[0]), to_device(flat[1]), self.offset)
        elif arrays is not None:
            self.data = to_device(arrays[0])
            self.grad = None if arrays[1] is None else to_device(arrays[1])

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.shape})"


def flat_range(params):
    """The flat buffers and ``(start, stop)`` covered by ``params`` if they are one contiguous run.

    Returns ``(flat_data, flat_grad, start, stop)`` when the parameters lie back to back in one
    model's buffers, in order; otherwise None (the optimizer then falls back to a per-parameter loop).
    """
    if not params or any(p.flat_data is None for p in params):
        return None
    first = params[0]
    pos = first.offset
    for p in params:
        if p.flat_data is not first.flat_data or p.offset != pos:
            return None
        pos += p.size
    return first.flat_data, first.flat_grad, first.offset, pos
