"""Shared fixtures: the whole suite runs once per available backend.

``backend`` is parametrised over :func:`fastnn.available_backends` ("numpy" today; "cpu" and
"cuda" as they appear), so a test that builds its model with ``backend=backend`` checks every
backend without being edited. ``torch`` skips a test when PyTorch is not installed.
"""
import os
import shutil
import sys

# Before NumPy / BLAS start their thread pools: idle OpenMP workers must not spin and steal
# the CPU from the next test (numba and scipy's OpenBLAS each bring their own pool).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Without an NVIDIA GPU the "cuda" backend runs in Numba's CUDA simulator; this must be set
# before numba is imported. The simulator runs every CUDA thread as a Python thread and its
# __syncthreads() waits for the interpreter's thread switch, so a short switch interval
# makes it an order of magnitude faster.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    sys.setswitchinterval(1e-4)

import functools  # noqa: E402
import inspect  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402
from fastnn.kernels import reference  # noqa: E402

BACKENDS = fastnn.available_backends()

REFERENCE_KERNELS = sorted(
    name for name, obj in vars(reference).items()
    if inspect.isfunction(obj) and obj.__module__ == reference.__name__ and not name.startswith("_"))
"""Every public function of the reference backend: the API each backend must expose."""


def missing_kernels(name):
    """The reference kernels that backend ``name`` does not define."""
    module = fastnn.get_backend(name)
    return [k for k in REFERENCE_KERNELS if not hasattr(module, k)]


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


def is_stub(name):
    """True for a backend module that defines none of the kernels yet (an empty stub)."""
    return len(missing_kernels(name)) == len(REFERENCE_KERNELS)


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend(request):
    """Name of a backend that works on this machine ("numpy", "cpu", "cuda" ...).

    A backend module with none of the kernels yet (an empty stub) is skipped with a visible
    reason; a partly written one runs and fails where a kernel is missing.
    """
    name = request.param
    if is_stub(name):
        pytest.skip(f"backend {name!r} is an empty stub: it defines none of the reference kernels")
    return name


@pytest.fixture
def torch():
    """The torch module, or skip the test when PyTorch is not installed."""
    return pytest.importorskip("torch")
