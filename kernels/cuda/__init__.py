"""CUDA backend (Numba CUDA)."""
