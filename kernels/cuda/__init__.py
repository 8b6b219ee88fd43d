"""CUDA backend (Numba CUDA): not implemented yet."""
from fastnn.errors import BackendUnavailableError


def check_available():
    raise BackendUnavailableError("backend 'cuda' is not implemented yet")
