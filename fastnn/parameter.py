"""Parameters as views into one flat parameter buffer and one flat gradient buffer."""
import numpy as np


class Parameter:
    """A trainable array of a layer.

    Attributes
    ----------
    data : ndarray
        The values; a view into the model's flat parameter buffer.
    grad : ndarray
        The gradient, same shape; a view into the model's flat gradient buffer.
    name : str
        ``"<layer index>.<layer class>.<name>"``, e.g. ``"0.Dense.weight"``.
    offset : int
        Position of the first element in the flat buffers.
    """

    def __init__(self, name, shape):
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape))
        self.data = None
        self.grad = None
        self.offset = None
        self.flat_data = None
        self.flat_grad = None

    def bind(self, flat_data, flat_grad, offset):
        """Make ``data``/``grad`` views into the flat buffers starting at ``offset``."""
        self.offset = offset
        self.flat_data, self.flat_grad = flat_data, flat_grad
        self.data = flat_data[offset:offset + self.size].reshape(self.shape)
        self.grad = flat_grad[offset:offset + self.size].reshape(self.shape)

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.shape})"


def flat_range(params):
    """The flat buffers and ``(start, stop)`` covered by ``params`` if they are one contiguous run.

    Returns ``(flat_data, flat_grad, start, stop)`` when the parameters lie back to back in one
    model's buffers, in order; otherwise None (the optimizer then falls back to a per-parameter loop).
    """
    if not params or any(p.flat_data is None for p in params):
        return None
    first = params[0]
    pos = first.offset
    for p in params:
        if p.flat_data is not first.flat_data or p.offset != pos:
            return None
        pos += p.size
    return first.flat_data, first.flat_grad, first.offset, pos
