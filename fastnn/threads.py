"""One thread setting for everything fastnn runs on the CPU: both OpenBLAS libraries
(NumPy's and SciPy's, which the cpu backend calls from Numba) and Numba's own thread pool.

``fn.set_num_threads(n)`` at run time, or ``FASTNN_NUM_THREADS=n`` in the environment (applied
when fastnn is imported). On a small shared machine one thread is often faster than two for
batch-32 GEMMs, because OpenBLAS threads that wait for a busy core spin; measure with
``fastnn bench --threads 1`` and ``--threads 2``.
"""
import ctypes
import os

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
_GETTERS = tuple(s.replace("set_", "get_") for s in _SETTERS)


def _openblas_libraries():
    """ctypes handles of every OpenBLAS loaded in this process (found in /proc/self/maps)."""
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
    _call_each(_SETTERS, ctypes.c_int(n))
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def get_num_threads():
    """The OpenBLAS thread count (the largest over the loaded OpenBLAS libraries)."""
    counts = _call_each(_GETTERS)
    return max(counts) if counts else 1


def apply_environment():
    """Apply ``$FASTNN_NUM_THREADS`` if it is set."""
    value = os.environ.get("FASTNN_NUM_THREADS")
    if value:
        set_num_threads(value)
