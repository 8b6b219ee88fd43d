"""CPU backend: Numba and Cython kernels; ops without an accelerated kernel use the reference."""
from ..reference import *  # noqa: F401,F403
