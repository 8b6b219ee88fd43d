"""Arrays of the reference backend: host NumPy arrays, allocated through the backend.

The model layer allocates through the backend so the CUDA backend can hand out device arrays;
here every array is a plain ``numpy.ndarray`` and moving it is the identity.
"""
import numpy as np


def empty(shape, dtype):
    """Uninitialised host array of ``shape`` and ``dtype``."""
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype):
    """Zero-filled host array."""
    return np.zeros(shape, dtype=dtype)


def to_device(a):
    """Identity on the host backends: returns ``a`` unchanged."""
    return a


def to_host(a):
    """Identity on the host backends: returns ``a`` unchanged."""
    return a


def copy_into(dst, src):
    """``dst[...] = src`` (``src`` may be a host array)."""
    dst[...] = src


def take_rows(a, idx, out):
    """out[i] = a[idx[i]]: gather the rows of a mini-batch into a reused buffer."""
    np.take(a, idx, axis=0, out=out)
