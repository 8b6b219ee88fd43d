"""The layer protocol: the base class every layer derives from, the registry that
``Sequential.load`` rebuilds layers from, and helpers shared by several layers.

A layer never imports a backend module; the model hands it the backend (``be``), a module
with the ops of :mod:`fastnn.kernels.contract`. Output and work buffers are made once per input
shape and reused, so a training step allocates nothing after the first batch of a given shape.
"""
import numpy as np

from .. import init as initializers
from ..parameter import Parameter

LAYERS = {}
"""Registry used by ``Sequential.load``: class name -> class. Every public (not ``_``-prefixed),
non-abstract subclass of :class:`Layer` enters it when its class statement runs."""


class Layer:
    """Base class of every layer.

    A subclass implements ``forward``/``backward`` and, as far as it has them, overrides the
    no-ops below for its parameters, shape checks, non-trainable state and configuration.
    Subclassing registers it in :data:`LAYERS` (``class Base(Layer, abstract=True)`` keeps an
    abstract base out).

    The model calls, once per step of a batch:

    ``forward(be, x, training=False)``
        Returns the output (a buffer of the layer's, overwritten by the next forward).
    ``backward(be, dy, need_dx=True, accumulate=False)``
        Writes the parameter gradients (adds to them when ``accumulate``) and returns the
        gradient w.r.t. the input of the last forward, or None when ``need_dx`` is False.

    A layer with ``fuses_activation = True`` (Dense, Conv2D) also takes ``act``, the
    :class:`fastnn.kernels.contract.Activation` the model fused into it (the activation layer
    that follows it, which then does not run): ``forward(be, x, training, act)`` and
    ``backward(be, dy, need_dx, accumulate, act)``. The model passes ``act`` only to those
    layers and only when it fused one, so a layer written without it keeps working.

    Pickling and copying: a layer pickles its ``__dict__`` without its work buffers (the
    ``buffer`` cache and the attributes named in ``work_attrs``, which forward/backward set:
    the last inputs, outputs, masks ...); they are made again by the next forward. A subclass
    that keeps such attributes names them in its own ``work_attrs`` (the names of the classes
    it derives from are added). Its Parameters pickle with a reference to their model (see
    :class:`~fastnn.Parameter`), so a layer of a model pickles together with that model.
    """

    fuses_activation = False    # forward/backward take the fused activation ``act``
    uses_rng = False            # Sequential hands it its random stream as ``self.rng``
    init_family = "lecun"       # initialiser family for the Dense/Conv2D before this layer
    state_names = ()            # names of the non-trainable state (see state_arrays)
    work_attrs = ()             # attributes set by forward/backward, not pickled
    trainable = True            # False: frozen (Keras's meaning; see Sequential.backward_batch)

    def __init_subclass__(cls, abstract=False, **kwargs):
        super().__init_subclass__(**kwargs)
        if not abstract and not cls.__name__.startswith("_"):
            LAYERS[cls.__name__] = cls

    def __init__(self):
        self.params = []
        self._buffers = {}

    # -- parameters ---------------------------------------------------------------------
    def parameter_shapes(self):
        """List of ``(name, shape)`` of this layer's parameters, in order (the one place a
        layer names its parameters; :attr:`param_names` and the attributes follow from it)."""
        return []

    @property
    def param_names(self):
        """Names of the parameters, in order: the names of :meth:`parameter_shapes`."""
        return tuple(name for name, _ in self.parameter_shapes())

    def initial_values(self, rng, dtype, next_activation=None):
        """Host arrays with the initial values of the parameters, in ``parameter_shapes`` order."""
        return []

    def make_parameters(self, prefix):
        """Make the :class:`Parameter` objects (unbound) as ``self.params`` and as attributes
        named after them (``self.weight``); the model binds them to its flat buffers."""
        self.params = []
        for name, shape in self.parameter_shapes():
            param = Parameter(f"{prefix}.{name}", shape)
            setattr(self, name, param)
            self.params.append(param)
        return self.params

    # -- non-trainable state -----------------------------------------------------------------
    def init_state(self, be, dtype):
        """Make the non-trainable state on backend ``be``; Sequential calls it once."""

    def state_arrays(self):
        """Host copies of the non-trainable state, ``{name: array}`` for ``state_names``."""
        return {}

    def load_state_arrays(self, arrays):
        """Set the state from host arrays as :meth:`state_arrays` returns them."""

    # -- shapes -------------------------------------------------------------------------
    def output_shape(self, input_shape):
        """Per-sample output shape for a per-sample ``input_shape`` (no batch axis)."""
        return tuple(input_shape)

    def check_input(self, shape):
        """Raise ShapeError if a batch of per-sample ``shape`` cannot enter this layer."""

    # -- buffers ------------------------------------------------------------------------
    def buffer(self, be, name, shape, dtype):
        """A cached work array: allocated the first time a (name, shape, dtype) is asked for
        on backend ``be`` (a layer instance may move between models on different backends)."""
        key = (be.NAME, name, tuple(shape), np.dtype(dtype).str)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = be.empty(shape, dtype)
        return buf

    # -- serialisation -------------------------------------------------------------------
    @classmethod
    def _work_attrs(cls):
        return {name for klass in cls.__mro__ for name in klass.__dict__.get("work_attrs", ())}

    def __getstate__(self):
        """``__dict__`` without the work buffers (see the class docstring)."""
        state = self.__dict__.copy()
        for name in self._work_attrs():
            state.pop(name, None)
        state["_buffers"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def get_config(self):
        """Keyword arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def register(cls):
    """Class decorator that makes a layer loadable by ``Sequential.load`` (the old spelling:
    subclassing :class:`Layer` already registers a class)."""
    LAYERS[cls.__name__] = cls
    return cls


def shape_text(shape):
    """A per-sample shape as an error message shows a batch of it: ``(N, 3, 28, 28)``."""
    return "(N, " + ", ".join(map(str, shape)) + ")"


def initial_weight_and_bias(layer, rng, dtype, next_activation, weight_shape, fan_in, fan_out):
    """[weight, bias] of a layer with ``init`` / ``bias_init`` attributes (Dense, Conv2D); the
    bias has one entry per output unit (the last axis of a Dense weight, the first of a conv)."""
    init = layer.init or initializers.default_for(next_activation)
    n_out = weight_shape[-1] if len(weight_shape) == 2 else weight_shape[0]
    w = initializers.get(init)(rng, weight_shape, fan_in, fan_out)
    b = initializers.get(layer.bias_init)(rng, (n_out,), fan_in, fan_out)
    return [w.astype(dtype), b.astype(dtype)]


def initializer_config(layer):
    """The ``init`` / ``bias_init`` given by name (a function cannot be saved as JSON)."""
    return {key: getattr(layer, key) for key in ("init", "bias_init")
            if isinstance(getattr(layer, key), str) or getattr(layer, key) is None}
