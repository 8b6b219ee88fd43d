"""Shared fixtures: the whole suite runs once per available backend.

``backend`` is parametrised over :func:`fastnn.available_backends` ("numpy", "cpu", and "cuda"
on a GPU or in Numba's CUDA simulator), so a test that builds its model with ``backend=backend`` checks every
backend without being edited. ``torch`` skips a test when PyTorch is not installed.

What the tests share besides fixtures (backend lists, host_callable, the gradient check, the
tolerances, the op cases) is in the package ``tests/support`` (``from support import ...``).
"""
import os
import shutil
import sys

# Before NumPy / BLAS start their thread pools: idle OpenMP workers must not spin and steal
# the CPU from the next test (numba and scipy's OpenBLAS each bring their own pool).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The cpu backend keeps its measured GEMM choices in $XDG_CACHE_HOME/fastnn; a test session
# measures afresh into a folder of its own instead of the user's cache.
import atexit  # noqa: E402
import tempfile  # noqa: E402
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="fastnn-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

# Without an NVIDIA GPU the "cuda" backend runs in Numba's CUDA simulator; this must be set
# before numba is imported.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from support import BACKENDS, SIMULATED  # noqa: E402


def _speed_up_and_fix_the_cuda_simulator():
    """The simulator runs every CUDA thread as a Python thread, and each __syncthreads() waits
    for the interpreter's thread switch: a 0.1 ms switch interval (instead of 5 ms) makes it an
    order of magnitude faster. Threads then interleave finely enough to hit two races of the
    simulator itself, fixed here for the test session:

    * a device function defined in another module than its kernel swaps that module's ``cuda``
      global for the fake one on entry and back on exit, per thread, without counting, so one
      thread can restore the real module while another still runs (numba-cuda PR #690; the
      fix below is that PR's reference count);
    * ``cuda.shared.array`` allocates an array per source line on the first call, checked and
      set without a lock, so two threads of a block can get different "shared" arrays.
    """
    import contextlib
    import threading
    from collections import defaultdict

    from numba.core import types as nb_types
    from numba.cuda.simulator import kernel, kernelapi
    from numba.np import numpy_support

    sys.setswitchinterval(1e-4)
    lock, refcount, originals = threading.RLock(), defaultdict(int), {}

    @contextlib.contextmanager
    def swapped_cuda_module(fn, fake_cuda_module):
        from numba import cuda
        glob = fn.__globals__
        key = id(glob)
        with lock:
            if refcount[key] == 0:
                originals[key] = {k: v for k, v in glob.items() if v is cuda}
                glob.update({k: fake_cuda_module for k in originals[key]})
            refcount[key] += 1
        try:
            yield
        finally:
            with lock:
                refcount[key] -= 1
                if refcount[key] == 0:
                    glob.update(originals.pop(key))

    original_shared_array = kernelapi.FakeCUDAShared.array

    def shared_array(self, shape, dtype, *args, **kwargs):
        if shape == 0:                        # dynamic shared memory: one buffer, no race
            return original_shared_array(self, shape, dtype, *args, **kwargs)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            array = self._allocations.get(key)
            if array is None:
                if isinstance(dtype, nb_types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                array = self._allocations[key] = np.empty(shape, dtype)
        return array

    kernel.swapped_cuda_module = kernelapi.swapped_cuda_module = swapped_cuda_module
    kernelapi.FakeCUDAShared.array = shared_array


if SIMULATED:
    _speed_up_and_fix_the_cuda_simulator()

SLOW_ON_SIMULATOR = "too slow under the CUDA simulator; runs on a real GPU"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow_on_simulator: skipped on the cuda backend when it runs in Numba's CUDA "
                   "simulator (no GPU); always runs on a real GPU")


def skip_on_simulator(name):
    """Skip the calling test for backend ``name`` when it is "cuda" in the simulator."""
    if name == "cuda" and SIMULATED:
        pytest.skip(SLOW_ON_SIMULATOR)


@pytest.fixture(params=BACKENDS, ids=BACKENDS)
def backend(request):
    """Name of a backend that works on this machine ("numpy", "cpu", "cuda" ...).

    A test marked ``slow_on_simulator`` is skipped for "cuda" in the CUDA simulator.
    """
    name = request.param
    if request.node.get_closest_marker("slow_on_simulator"):
        skip_on_simulator(name)
    return name


@pytest.fixture
def torch():
    """The torch module, or skip the test when PyTorch is not installed."""
    return pytest.importorskip("torch")
