"""The "cuda" backend (kernels/cuda): its memory functions, a tiny MLP trained on cuda against
the "numpy" backend, the number of kernel launches per training step, PTX compilation of every
kernel the op-case table and a fit launch for a real GPU (the simulator does not type-check
kernels), and the error without a GPU. Every kernel against the NumPy reference, case by case
(support.op_cases), is in test_reference_ops.py, with the other backends.

Without a GPU these run in Numba's CUDA simulator (see conftest.py); on a GPU they run there.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fn
from support import BACKENDS, SIMULATED, host_callable, tolerance

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

needs_cuda = pytest.mark.skipif("cuda" not in BACKENDS, reason="backend 'cuda' is not available "
                                "(no GPU, and NUMBA_ENABLE_CUDASIM is off)")
DTYPES = ["float32", "float64"]


def cuda():
    """The cuda backend's kernels on host arrays (the PTX test runs the op-case table with it)."""
    return host_callable(fn.get_backend("cuda"))


# ----------------------------------------------------------------------------- kernels


@needs_cuda
def test_every_reference_op_has_a_cuda_kernel():
    """No reference op is served by the slow host fallback: each has a kernel in kernels/cuda."""
    be = fn.get_backend("cuda")
    assert be.HOST_FALLBACKS == [], (
        f"kernels/cuda has no kernel for {be.HOST_FALLBACKS}: add one (they run on host copies now)")


# ----------------------------------------------------------------------------- memory


@needs_cuda
def test_memory_functions():
    be = fn.get_backend("cuda")
    a = np.arange(12.0).reshape(3, 4)
    d = be.to_device(a)
    assert not isinstance(d, np.ndarray) and be.to_device(d) is d
    np.testing.assert_array_equal(be.to_host(d), a)
    assert be.to_host(a) is a
    z = be.zeros((2, 3), np.float32)
    assert z.dtype == np.float32 and z.shape == (2, 3) and not be.to_host(z).any()
    e = be.empty((4,), np.int64)
    assert e.dtype == np.int64 and e.shape == (4,)
    be.copy_into(z, np.array([1.0, 2.0, 3.0]))                    # broadcast and cast from the host
    np.testing.assert_array_equal(be.to_host(z), [[1, 2, 3], [1, 2, 3]])
    be.copy_into(z, be.to_device(np.full((2, 3), 5.0)))          # device, other dtype
    np.testing.assert_array_equal(be.to_host(z), 5)
    be.copy_into(d[1], be.to_device(np.full(4, -1.0)))            # device view, same dtype
    np.testing.assert_array_equal(be.to_host(d)[1], -1)
    with pytest.raises(TypeError, match="to_device"):
        be.relu_forward(a, be.empty(a.shape, a.dtype))           # a host array never gets in


@needs_cuda
def test_launch_specialises_a_kernel_once_per_argument_types(monkeypatch):
    """On a GPU, launch() hands Numba a kernel specialised for the argument types, made on the
    first launch with those types (a stand-in kernel here: the simulator needs no specialising)."""
    from fastnn.kernels.cuda import common

    class Kernel:
        def __init__(self):
            self.specialised, self.launched = [], []

        def specialize(self, *args):
            self.specialised.append(args)
            return self

        def __getitem__(self, config):
            return lambda *args: self.launched.append((config, args))

    monkeypatch.setattr(common, "SIM", False)
    monkeypatch.setattr(common, "_specialised", {})
    be, kernel = fn.get_backend("cuda"), Kernel()
    a32, a64 = common.flat(be.zeros((3, 2), np.float32)), be.zeros((4,), np.float64)
    common.launch(kernel, 1, 4, a32, 2, 0.5, np.float32(1), True, (1, 2))
    common.launch(kernel, 2, 8, a32, 3, 0.25, np.float32(2), False, (3, 4))     # same types
    assert len(kernel.specialised) == 1
    common.launch(kernel, 1, 4, a64, 2, 0.5, np.float32(1), True, (1, 2))       # float64 array
    common.launch(kernel, 1, 4, a32, 2, 0.5, np.float64(1), True, (1, 2))       # float64 scalar
    common.launch(kernel, 1, 4, a32, 2, 0.5, np.float32(1), 1, (1, 2, 3))       # int, longer tuple
    assert len(kernel.specialised) == 4 and len(kernel.launched) == 5
    assert kernel.launched[1] == ((2, 8), (a32, 3, 0.25, np.float32(2), False, (3, 4)))


# ----------------------------------------------------------------------------- training


def _tiny_problem(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((26, 6)).astype(dtype)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.3)
    return x, y


def _tiny_mlp(backend, dtype):
    return fn.Sequential([fn.Dense(6, 8), fn.Tanh(), fn.Dense(8, 5), fn.ReLU(), fn.Dense(5, 3)],
                         backend=backend, dtype=dtype, seed=1)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_mlp_trains_like_numpy(dtype):
    """A few SGD steps (Nesterov momentum, weight decay, shuffling, a last partial batch) on cuda
    give the weights and the history of the "numpy" backend."""
    x, y = _tiny_problem(dtype)
    results = []
    for backend in ("numpy", "cuda"):
        model = _tiny_mlp(backend, dtype)
        opt = fn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
        history = model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=2, batch_size=8,
                            seed=0, validation_data=(x[:5], y[:5]), verbose=0)
        results.append((model.get_weights(), history.history, model.predict(x[:4])))
    tol = tolerance("training", dtype)
    (w_np, h_np, p_np), (w_cu, h_cu, p_cu) = results
    np.testing.assert_allclose(w_cu, w_np, **tol)
    np.testing.assert_allclose(p_cu, p_np, **tol)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_cu[key], h_np[key], **tol, err_msg=key)


def _count_launches_and_copies(monkeypatch):
    """Counters of kernel launches and of device-to-host copies, patched into numba.cuda."""
    counts = {"launches": 0, "copies to host": 0}
    if SIMULATED:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as DeviceArray
        from numba.cuda.simulator.kernel import FakeCUDAKernel

        launch = FakeCUDAKernel.__call__

        def counted_launch(self, *args):
            counts["launches"] += not self._device
            return launch(self, *args)
        monkeypatch.setattr(FakeCUDAKernel, "__call__", counted_launch)
    else:
        from numba.cuda.cudadrv.devicearray import DeviceNDArray as DeviceArray
        from numba.cuda.dispatcher import _LaunchConfiguration

        launch = _LaunchConfiguration.__call__

        def counted_launch(self, *args):
            counts["launches"] += 1
            return launch(self, *args)
        monkeypatch.setattr(_LaunchConfiguration, "__call__", counted_launch)
    to_host = DeviceArray.copy_to_host

    def counted_copy(self, *args, **kwargs):
        counts["copies to host"] += 1
        return to_host(self, *args, **kwargs)
    monkeypatch.setattr(DeviceArray, "copy_to_host", counted_copy)
    return counts


@needs_cuda
@pytest.mark.parametrize("flatten", [False, True])
def test_launches_per_training_step(monkeypatch, flatten):
    """The MLP of kernels/cuda/__init__.py's docstring (Dense+ReLU, Dense+ReLU, Dense,
    cross-entropy, SGD with momentum): 17 launches and 2 scalar copies back per step, as
    documented; one more GEMM when a Flatten comes first and Sequential asks the first Dense for
    its input gradient (for the Flatten)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((24, 2, 4)).astype(np.float32), rng.integers(0, 3, 24)
    layers = [fn.Dense(8, 6), fn.ReLU(), fn.Dense(6, 5), fn.ReLU(), fn.Dense(5, 3)]
    model = fn.Sequential([fn.Flatten()] * flatten + layers, backend="cuda", seed=0)
    opt = fn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    counts = _count_launches_and_copies(monkeypatch)
    model.fit(x if flatten else x.reshape(24, 8), y, loss=fn.CrossEntropyLoss(), optimizer=opt,
              epochs=1, batch_size=8, verbose=0)
    steps, first_dx = 3, any(key[0] == "dx" for key in layers[0]._buffers)
    assert counts == {"launches": (17 + first_dx) * steps, "copies to host": 2 * steps}


# ----------------------------------------------------------------------------- a real GPU's compiler

_RECORD = """
import os, pickle, sys
sys.path.insert(0, {tests!r})
import numpy as np
from numba import typeof
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
from numba.cuda.simulator.kernel import FakeCUDAKernel
import conftest  # noqa: F401  (the simulator's speed-up and race fixes, as in a test session)
import test_cuda
from support.op_cases import OP_CASES, run_case

seen = {{}}
launch = FakeCUDAKernel.__call__

def record(self, *args):
    if not self._device:
        fn = self.fn
        closure = {{name: cell.cell_contents for name, cell in
                   zip(fn.__code__.co_freevars, fn.__closure__ or ())}}
        types = tuple(typeof(a._ary if isinstance(a, FakeCUDAArray) else a) for a in args)
        key = (fn.__module__, fn.__qualname__, tuple(sorted(closure.items(), key=str)), types)
        seen[key] = None
    return launch(self, *args)

FakeCUDAKernel.__call__ = record
for case in sorted(OP_CASES):
    for dtype in test_cuda.DTYPES:
        run_case(case, test_cuda.cuda(), dtype)
test_cuda.test_memory_functions()
for dtype in test_cuda.DTYPES:
    x, y = test_cuda._tiny_problem(dtype)
    test_cuda._tiny_mlp("cuda", dtype).fit(x, y, epochs=1, batch_size=8, verbose=0, lr=0.1)
with open({out!r}, "wb") as f:
    pickle.dump(list(seen), f)
"""

_COMPILE = """
import importlib, inspect, pickle
from numba import cuda
import numba.cuda.dispatcher


class Device:                     # device functions ask the current device for its compute
    compute_capability = (9, 0)   # capability; there is none here, so say sm_90 (an H100)


numba.cuda.dispatcher.get_current_device = Device
failures, done = [], 0
with open({path!r}, "rb") as f:
    entries = pickle.load(f)
for module, qualname, closure, types in entries:
    mod = importlib.import_module(module)
    if ".<locals>." in qualname:        # a kernel made by a factory: call it with its closure
        kernel = getattr(mod, qualname.split(".<locals>.")[0])(**dict(closure))
    else:
        kernel = getattr(mod, qualname)
    try:
        cuda.compile_ptx(kernel.py_func, types, cc=(9, 0))
        done += 1
    except Exception as exc:
        failures.append(f"{{module}}.{{qualname}}{{types}}: {{type(exc).__name__}}: {{exc}}")
print("compiled", done)
print("\\n".join(failures))
"""


def _nvvm_available():
    code = "from numba.cuda.cudadrv import nvvm; nvvm.NVVM()"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


@needs_cuda
@pytest.mark.skipif(not SIMULATED, reason="on a GPU every kernel is compiled by the tests themselves")
def test_every_launched_kernel_compiles_for_a_gpu(tmp_path):
    """The simulator runs kernels as Python, so it misses what only the CUDA compiler checks
    (types, unsupported functions). Record the kernels and argument types that the op-case
    table (support.op_cases) and a small fit launch, then compile each to PTX for sm_90 with NVVM (no GPU needed)."""
    if not _nvvm_available():
        pytest.skip("NVVM (the CUDA toolkit's compiler library) is not installed")
    sigs = tmp_path / "kernels.pkl"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", _RECORD.format(tests=HERE, out=str(sigs))],
                          env=env, capture_output=True, text=True, cwd=HERE)
    assert done.returncode == 0, done.stderr[-3000:]
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    done = subprocess.run([sys.executable, "-c", _COMPILE.format(path=str(sigs))], env=env,
                          capture_output=True, text=True, cwd=HERE)
    assert done.returncode == 0, done.stderr[-3000:]
    count, *failures = done.stdout.strip().split("\n")
    assert not [f for f in failures if f], "\n".join(failures)
    assert int(count.split()[1]) >= 30


# ----------------------------------------------------------------------------- no GPU


def test_cuda_without_gpu_or_simulator_is_unavailable():
    """With neither a GPU nor the simulator, "cuda" is left out of available_backends() and
    asking for it raises BackendUnavailableError with the reason (never a crash)."""
    code = textwrap.dedent("""
        import sys
        from numba import cuda
        if cuda.is_available():
            print("GPU"); sys.exit(0)
        import fastnn as fn
        from fastnn.errors import BackendUnavailableError
        assert "cuda" not in fn.available_backends()
        try:
            fn.Sequential([fn.Dense(2, 1)], backend="cuda")
        except BackendUnavailableError as exc:
            print("unavailable:", exc)
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = ROOT
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    if done.stdout.startswith("GPU"):
        pytest.skip("this machine has a CUDA GPU")
    assert done.stdout.startswith("unavailable:"), done.stdout
    assert "NUMBA_ENABLE_CUDASIM" in done.stdout and "GPU" in done.stdout
