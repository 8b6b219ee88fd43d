"""Build script: setuptools reads the metadata from pyproject.toml. Compiled extensions
(Cython ``.pyx``) would be declared here; today every CPU kernel is Numba, which calls BLAS
directly (kernels/cpu/blas.py), so there are none."""
from setuptools import setup

setup()
