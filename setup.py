"""Build script: setuptools reads the metadata from pyproject.toml. Nothing is compiled at
install time: the CPU kernels are Numba, compiled on first use and cached beside their sources
(``cache=True``), calling BLAS through SciPy's ``cython_blas`` function pointers
(kernels/cpu/blas.py); the CUDA kernels are Numba CUDA. A Cython extension (``.pyx``) would
be declared here; there is none today."""
from setuptools import setup

setup()
