"""One thread setting for everything fastnn runs on the CPU: both OpenBLAS libraries
(NumPy's and SciPy's, which the cpu backend calls from Numba) and Numba's own thread pool.

``fn.set_num_threads(n)`` at run time, or ``FASTNN_NUM_THREADS=n`` in the environment (applied
when fastnn is imported). Measure with ``fastnn bench --threads 1`` and ``--threads 2``.

Only one thread pool does the parallel work at a time, chosen by :func:`use_pool` before
kernels run: ``"blas"`` gives OpenBLAS the thread count (the numpy backend), ``"numba"`` runs
OpenBLAS on one thread while Numba's threads split the work (the cpu backend, layer by layer
and in its compiled dense-stack epoch: convolution and pooling by images, GEMMs into blocks,
see :mod:`fastnn.kernels.cpu.parallel`). Idle threads of one pool spin while the other works: with
both pools active, LeNet-5 ran 10x slower on 2 cores.
"""
import ctypes
import os

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
_GETTERS = tuple(s.replace("set_", "get_") for s in _SETTERS)


_state = {"requested": None, "blas": None, "numba": None, "libraries": None}


def _openblas_libraries():
    """ctypes handles of every OpenBLAS loaded in this process (found in /proc/self/maps)."""
    if _state["libraries"] is None:
        _state["libraries"] = _find_openblas_libraries()
    return _state["libraries"]


def _find_openblas_libraries():
    import numpy  # noqa: F401  make sure both BLAS libraries are loaded
    import scipy.linalg.cython_blas  # noqa: F401
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "openblas" in os.path.basename(path).lower() and ".so" in path:
                    paths.add(path)
    except OSError:
        return []
    return [ctypes.CDLL(p) for p in sorted(paths)]


def _call_each(names, *args):
    results = []
    for lib in _openblas_libraries():
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                results.append(fn(*args))
                break
    return results


def set_num_threads(n):
    """Use ``n`` threads in OpenBLAS (NumPy's and SciPy's) and in Numba's parallel loops."""
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    _state["requested"] = n
    _set_blas_threads(n)
    import numba
    _state["numba"] = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(_state["numba"])


def numba_threads():
    """Numba's thread count as set by :func:`set_num_threads` (remembered here: asking Numba
    costs about 2 us, paid by every parallel kernel call otherwise)."""
    if _state["numba"] is None:
        import numba
        _state["numba"] = numba.get_num_threads()
    return _state["numba"]


def _set_blas_threads(n):
    if _state["blas"] != n:
        _call_each(_SETTERS, ctypes.c_int(n))
        _state["blas"] = n


def use_pool(pool):
    """Make ``pool`` the one that works in parallel: ``"blas"`` (OpenBLAS gets the count of
    :func:`set_num_threads`, or keeps its own default before any) or ``"numba"`` (OpenBLAS runs
    on one thread). Cheap when nothing changes."""
    if pool not in ("blas", "numba"):
        raise ValueError(f"unknown thread pool {pool!r}; use 'blas' or 'numba'")
    if _state["requested"] is None:      # OpenBLAS's own default, read before any change
        _state["requested"] = _state["blas"] = get_num_threads()
    _set_blas_threads(1 if pool == "numba" else _state["requested"])


def use_backend(be):
    """:func:`use_pool` with the pool the backend module ``be`` declares in ``THREAD_POOL``
    (see :mod:`fastnn.kernels.contract`). The model layer calls it before it runs a backend's
    kernels: the one place where the pool is switched."""
    use_pool(be.THREAD_POOL)


def get_num_threads():
    """The count given to :func:`set_num_threads`; before any, OpenBLAS's (the largest over
    the loaded OpenBLAS libraries)."""
    if _state["requested"] is not None:
        return _state["requested"]
    counts = _call_each(_GETTERS)
    return max(counts) if counts else 1


def apply_environment():
    """Apply ``$FASTNN_NUM_THREADS`` if it is set."""
    value = os.environ.get("FASTNN_NUM_THREADS")
    if value:
        set_num_threads(value)
