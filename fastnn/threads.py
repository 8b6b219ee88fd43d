"""Thread settings of fastnn: :mod:`fastnn.kernels.threads`, re-exported."""
from .kernels.threads import (apply_environment, get_num_threads, numba_threads,  # noqa: F401
                              set_num_threads, use_backend, use_pool)
