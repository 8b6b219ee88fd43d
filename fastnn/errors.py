"""Exception types of fastnn, one per kind of problem (defined in :mod:`fastnn.kernels.errors`,
where the kernels can raise them without importing the model layer)."""
from .kernels.errors import (BackendUnavailableError, DivergenceError, DTypeError,  # noqa: F401
                             IDXFormatError, LabelError, ModelFileError, NonFiniteError,
                             ShapeError)
