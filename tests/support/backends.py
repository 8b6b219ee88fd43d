"""Which backends the suite runs on, and how a test reaches their kernels.

Imported after ``tests/conftest.py`` has set up the environment (``NUMBA_ENABLE_CUDASIM`` when
there is no GPU), as pytest loads the conftest first.
"""
import functools
import importlib
import types

import numpy as np

import fastnn as fn
from fastnn.kernels import reference

try:
    from numba import config as _numba_config
    SIMULATED = bool(_numba_config.ENABLE_CUDASIM)
except ImportError:                                     # pragma: no cover - no numba
    SIMULATED = False
"""True when the "cuda" backend runs in Numba's CUDA simulator."""

BACKENDS = fn.available_backends()
"""Every backend that works on this machine ("numpy", "cpu", and "cuda" on a GPU or in the
simulator)."""

OTHER_BACKENDS = [b for b in BACKENDS if b != "numpy"]
"""The backends checked against the "numpy" one (the reference)."""

HOST_BACKENDS = [b for b in BACKENDS if b in ("numpy", "cpu")]
"""The backends whose arrays are NumPy arrays."""

REFERENCE_KERNELS = sorted(reference.__all__)
"""Every public function of the reference backend: the API each backend must expose."""


def missing_kernels(name):
    """The reference kernels that backend ``name`` does not define."""
    module = fn.get_backend(name)
    return [k for k in REFERENCE_KERNELS if not hasattr(module, k)]


def host(a):
    """A host float64 NumPy copy of a backend array (NumPy or device)."""
    if not isinstance(a, np.ndarray):
        a = fn.backend.backend_for_array(a).to_host(a)     # a device array
    return np.array(a, dtype=np.float64)


def host_callable(module):
    """The kernels of backend ``module`` callable with host (NumPy) arrays, to check them
    directly against the reference. A device backend (its ``empty`` makes no NumPy array) gets
    an adapter that copies every NumPy argument to the device, runs the kernel and copies each
    argument back into the array it came from; a host backend is returned unchanged."""
    if isinstance(module.empty((1,), np.float64), np.ndarray):
        return module

    def adapt(kernel):
        @functools.wraps(kernel)
        def call(*args, **kwargs):
            pairs = []

            def dev(a):
                if isinstance(a, np.ndarray):
                    pairs.append((a, module.to_device(a)))
                    return pairs[-1][1]
                return a

            result = kernel(*[dev(a) for a in args], **{k: dev(v) for k, v in kwargs.items()})
            for a, d in pairs:
                a[...] = module.to_host(d)
            return result
        return call

    return types.SimpleNamespace(NAME=module.NAME, **{k: adapt(getattr(module, k))
                                                      for k in REFERENCE_KERNELS})


def kernel_implementations(backends=OTHER_BACKENDS, cpu_modules=()):
    """(id, kernel namespace callable on host arrays) of every implementation to check against
    the reference: each of ``backends`` (through :func:`host_callable`), then, when the cpu
    backend is there, the cpu backend's own modules ``kernels/cpu/<name>.py`` for each name in
    ``cpu_modules`` (one id, "cpu.a+b", for all of them together), so that their kernels are
    checked whatever ``kernels/cpu/__init__.py`` exports."""
    impls = [(name, host_callable(fn.get_backend(name))) for name in backends]
    if cpu_modules and "cpu" in BACKENDS:
        merged = {}
        for name in cpu_modules:
            merged.update(vars(importlib.import_module(f"fastnn.kernels.cpu.{name}")))
        impls.append(("cpu." + "+".join(cpu_modules), types.SimpleNamespace(**merged)))
    return impls
