"""Build script: setuptools reads the metadata from pyproject.toml; this file declares the
Cython extensions (compiled with OpenMP where the compiler supports it)."""
from setuptools import setup

setup()
