"""Compute kernels of fastnn, one module per backend.

``reference`` is plain NumPy (the oracle), ``cpu`` Numba (BLAS called from compiled code), ``cuda`` Numba CUDA; all
expose the same functions with explicit output buffers. See :mod:`fastnn.backend`.
"""
