"""Backend registry: the one way the model layer reaches kernels.

A backend is a module of kernels that fulfils :mod:`fastnn.kernels.contract` (every op with the
contract's signature, and the declared capabilities ``NAME``, ``HOST_ARRAYS``, ``THREAD_POOL``,
``COMPILED_EPOCH_LOSSES``, ``check_available``):

* ``"numpy"`` - the plain NumPy reference (always available, the oracle);
* ``"cpu"``   - Numba kernels calling BLAS directly (needs numba; the default when it imports);
* ``"cuda"``  - Numba CUDA kernels (needs a CUDA GPU, or ``NUMBA_ENABLE_CUDASIM=1``).
"""
import importlib
import os

import numpy as np

from .errors import BackendUnavailableError

NAMES = ("numpy", "cpu", "cuda")
_MODULES = {"numpy": "fastnn.kernels.reference", "cpu": "fastnn.kernels.cpu",
            "cuda": "fastnn.kernels.cuda"}
_loaded = {}


def get_backend(name=None):
    """The kernel module of backend ``name`` (None: the default, see :func:`default_backend`).

    Raises ValueError for an unknown name and BackendUnavailableError (a RuntimeError) with
    the reason when the backend cannot run on this machine.
    """
    if name is None:
        name = default_backend()
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as exc:
            raise BackendUnavailableError(f"backend {name!r} is not available: {exc}") from exc
        module.check_available()
        _loaded[name] = module
    return _loaded[name]


def available_backends():
    """Names of the backends that work on this machine, ``"numpy"`` first."""
    names = []
    for name in NAMES:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def default_backend():
    """``$FASTNN_BACKEND`` if set, else ``"cpu"`` when it is available, else ``"numpy"``."""
    env = os.environ.get("FASTNN_BACKEND")
    if env:
        return env
    try:
        get_backend("cpu")
        return "cpu"
    except BackendUnavailableError:
        return "numpy"


def backend_for_array(a):
    """A backend that can work on array ``a``: the default host backend for NumPy arrays,
    ``"cuda"`` for device arrays."""
    if isinstance(a, np.ndarray):
        name = default_backend()
        return get_backend("cpu" if name == "cuda" else name)
    return get_backend("cuda")
