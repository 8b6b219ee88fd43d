"""Exception types of fastnn, one per kind of problem.

Every type derives from the built-in exception a user would catch anyway
(``ValueError`` for bad input, ``FloatingPointError`` for divergence), so
``except ValueError`` keeps working while the precise type stays available.
"""


class ShapeError(ValueError):
    """An array has the wrong shape for the layer, loss or model."""


class DTypeError(ValueError):
    """An array has a dtype fastnn cannot use (e.g. int images, float labels)."""


class NonFiniteError(ValueError):
    """An input array holds NaN or Inf."""


class LabelError(ValueError):
    """Integer labels are out of range for the number of outputs."""


class IDXFormatError(ValueError):
    """An IDX file is corrupt, truncated or not an IDX file at all."""


class ModelFileError(ValueError):
    """A saved model file is missing, corrupt or from an incompatible version."""


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine (e.g. no CUDA GPU)."""


class DivergenceError(FloatingPointError):
    """Training produced a NaN or Inf loss; raised instead of returning NaN weights."""


for _cls in (ShapeError, DTypeError, NonFiniteError, LabelError, IDXFormatError, ModelFileError,
             BackendUnavailableError, DivergenceError):
    _cls.__module__ = "fastnn.errors"   # their public home (re-exported there), as users see them
del _cls
