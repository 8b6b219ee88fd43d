"""ONNX export of a Sequential (``model.export_onnx``), built with the ``onnx`` package's helpers.

Every layer becomes one or a few standard ONNX operators over initialisers holding its
weights (host copies, in the model's dtype); the batch axis is dynamic (``"N"``). Dense is a
``Gemm`` (its weight is already (in, out)), Conv2D a ``Conv``, the pools ``MaxPool`` /
``AveragePool`` (zero padding counted, as fastnn), Flatten a ``Flatten``, Dropout an
``Identity``, BatchNorm a ``BatchNormalization`` with the running statistics, Maxout a
``Reshape`` to (N, F, pieces) and a ``ReduceMax``, RNN / LSTM / GRU ONNX's ``RNN`` / ``LSTM`` /
``GRU`` (gates reordered, on the sequences transposed to time-major); the activations their
ONNX namesakes.
``onnx`` is an optional dependency (``pip install fastnn[onnx]``), imported inside.
"""
import numpy as np

from ..summary import known_input_shape


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("model.export_onnx needs the onnx package: pip install fastnn[onnx] "
                          "(or pip install onnx)") from None
    return onnx


class _Graph:
    """The nodes and initialisers of the graph being built; names are made unique here."""

    def __init__(self, onnx, dtype, opset):
        self.onnx, self.dtype, self.opset = onnx, np.dtype(dtype), opset
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, stem):
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem, array, dtype=None):
        """An initialiser holding ``array`` (in the model's dtype unless ``dtype``); its name."""
        name = self.name(stem)
        value = np.ascontiguousarray(array, dtype=dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def node(self, op, inputs, stem, output=0, **attrs):
        """Add ``op(inputs, **attrs)``; returns the name of its output number ``output`` (the
        ones before it are left unnamed: optional outputs not computed)."""
        out = self.name(stem)
        outputs = [""] * output + [out]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), outputs, name=out, **attrs))
        return out


def _params(model, layer):
    """Host copies of ``layer``'s parameters by name."""
    return {name: np.array(model.be.to_host(p.data))
            for name, p in zip(layer.param_names, layer.params)}


def _dense(g, model, layer, x, shape):
    p = _params(model, layer)
    return g.node("Gemm", [x, g.const("weight", p["weight"]), g.const("bias", p["bias"])],
                  "dense")


def _conv_pads(layer):
    top, bottom, left, right = layer.pads
    return [top, left, bottom, right]             # ONNX: begins of (H, W), then ends


def _conv2d(g, model, layer, x, shape):
    p = _params(model, layer)
    return g.node("Conv", [x, g.const("weight", p["weight"]), g.const("bias", p["bias"])],
                  "conv", kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=_conv_pads(layer), dilations=list(getattr(layer, "dilation", (1, 1))),
                  group=int(getattr(layer, "groups", 1)))


def _pool(op, **extra):
    def convert(g, model, layer, x, shape):
        return g.node(op, [x], op.lower(), kernel_shape=list(layer.kernel_size),
                      strides=list(layer.stride), pads=_conv_pads(layer), **extra)
    return convert


def _simple(op, **attrs):
    def convert(g, model, layer, x, shape):
        return g.node(op, [x], op.lower(), **attrs)
    return convert


def _leaky_relu(g, model, layer, x, shape):
    return g.node("LeakyRelu", [x], "leakyrelu", alpha=layer.negative_slope)


def _prelu(g, model, layer, x, shape):
    slope = _params(model, layer)["weight"]
    if layer.num_parameters != 1:                 # one per axis-1 entry, broadcast over H, W
        slope = slope.reshape((-1,) + (1,) * (len(shape) - 1))
    return g.node("PRelu", [x, g.const("slope", slope)], "prelu")


def _maxout(g, model, layer, x, shape):
    f = shape[0] // layer.pieces
    grouped = g.node("Reshape", [x, g.const("shape", [0, f, layer.pieces], np.int64)], "groups")
    if g.opset >= 18:                             # axes became an input in opset 18
        return g.node("ReduceMax", [grouped, g.const("axes", [2], np.int64)], "maxout",
                      keepdims=0)
    return g.node("ReduceMax", [grouped], "maxout", axes=[2], keepdims=0)


def _batchnorm(g, model, layer, x, shape):
    f = layer.num_features
    p = _params(model, layer) if layer.affine else {"weight": np.ones(f), "bias": np.zeros(f)}
    state = layer.state_arrays()
    inputs = [x, g.const("scale", p["weight"]), g.const("shift", p["bias"]),
              g.const("mean", state["running_mean"]), g.const("var", state["running_var"])]
    return g.node("BatchNormalization", inputs, "batchnorm", epsilon=layer.eps)


# ONNX's gate order, as indices of PyTorch's (fastnn's) gate blocks
_GATES = {"RNN": [0], "LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2]}   # LSTM iofc <- ifgo, GRU zrh <- rzn


def _recurrent(g, model, layer, x, shape):
    """ONNX's RNN / LSTM / GRU over time-major data: (N, T, F) is transposed to (T, N, F); the
    output is every step's state (N, T, D*H) or the final one (N, D*H), forward features first."""
    if layer.initial_state is not None:
        raise ValueError(f"{layer!r} has an initial_state; export it without one (the ONNX graph "
                         "starts every sequence from zeros)")
    op, h, d = type(layer).__name__, layer.hidden_size, layer.directions
    order, p = _GATES[op], _params(model, layer)

    def stacked(name):           # (D, G*H, ...) in ONNX's gate order, per direction
        blocks = []
        for suffix in ("", "_reverse")[:d]:
            value = p[name + suffix]
            value = value.T if value.ndim == 2 else value          # (G*H, F) / (G*H, H) / (G*H,)
            blocks.append(np.concatenate([value[k * h:(k + 1) * h] for k in order]))
        return np.stack(blocks)

    attrs = {"hidden_size": h, "direction": "bidirectional" if d == 2 else "forward"}
    if op == "RNN":
        attrs["activations"] = ["Tanh" if layer.nonlinearity == "tanh" else "Relu"] * d
    if op == "GRU":
        attrs["linear_before_reset"] = 1                            # PyTorch's GRU
    bias = np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1)
    time_major = g.node("Transpose", [x], "time_major", perm=[1, 0, 2])
    inputs = [time_major, g.const("W", stacked("weight_ih")), g.const("R", stacked("weight_hh")),
              g.const("B", bias)]
    if layer.return_sequences:                                      # Y: (T, D, N, H)
        y = g.node(op, inputs, op.lower(), **attrs)
        y = g.node("Transpose", [y], "batch_major", perm=[2, 0, 1, 3])
        return g.node("Reshape", [y, g.const("shape", [0, 0, d * h], np.int64)], "sequences")
    y_h = g.node(op, inputs, op.lower(), output=1, **attrs)         # Y_h: (D, N, H)
    y_h = g.node("Transpose", [y_h], "batch_major", perm=[1, 0, 2])
    return g.node("Reshape", [y_h, g.const("shape", [0, d * h], np.int64)], "final")


CONVERTERS = {
    "Dense": _dense,
    "Conv2D": _conv2d,
    "MaxPool2D": _pool("MaxPool"),
    "AvgPool2D": _pool("AveragePool", count_include_pad=1),
    "Flatten": _simple("Flatten", axis=1),
    "Sigmoid": _simple("Sigmoid"),
    "Tanh": _simple("Tanh"),
    "ReLU": _simple("Relu"),
    "LeakyReLU": _leaky_relu,
    "PReLU": _prelu,
    "Maxout": _maxout,
    "Softmax": _simple("Softmax", axis=-1),
    "LogSoftmax": _simple("LogSoftmax", axis=-1),
    "Dropout": _simple("Identity"),
    "BatchNorm": _batchnorm,
    "RNN": _recurrent,
    "LSTM": _recurrent,
    "GRU": _recurrent,
}
"""Layer class name -> ``convert(graph, model, layer, input name, per-sample input shape)``
returning the name of the layer's output."""


def sample_shape(model, input_shape=None):
    """The per-sample input shape to export with (see :func:`fastnn.summary.known_input_shape`);
    ValueError when none is known, ShapeError when the layers reject it."""
    shape = known_input_shape(model, input_shape)
    if shape is None:
        raise ValueError(f"the input shape of {model!r} is not known yet (it was never fitted or "
                         "run): pass input_shape, the shape of one sample, e.g. (1, 28, 28)")
    model.output_shape(shape)                     # ShapeError when a layer rejects it
    return shape


def build(model, input_shape=None, opset=17):
    """The ``onnx.ModelProto`` of ``model`` (see :func:`export`)."""
    onnx = _onnx()
    shape = sample_shape(model, input_shape)
    missing = [f"{i}: {layer!r}" for i, layer in enumerate(model.layers)
               if type(layer).__name__ not in CONVERTERS]
    if missing:
        raise ValueError(f"these layers have no ONNX form in fastnn: {', '.join(missing)}; "
                         f"exportable layers: {', '.join(sorted(CONVERTERS))}")
    g = _Graph(onnx, model.dtype, int(opset))
    elem = onnx.helper.np_dtype_to_tensor_dtype(model.dtype)
    name, first = "input", shape
    for layer in model.layers:
        name = CONVERTERS[type(layer).__name__](g, model, layer, name, shape)
        shape = layer.output_shape(shape)
    g.nodes.append(onnx.helper.make_node("Identity", [name], ["output"], name="output"))
    graph = onnx.helper.make_graph(
        g.nodes, "fastnn.Sequential",
        [onnx.helper.make_tensor_value_info("input", elem, ["N", *first])],
        [onnx.helper.make_tensor_value_info("output", elem, ["N", *shape])],
        initializer=g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="fastnn",
                                   opset_imports=[onnx.helper.make_opsetid("", int(opset))])
    onnx.checker.check_model(proto)
    return proto


def export(model, path, input_shape=None, opset=17):
    """Write ``model`` as an ONNX file at ``path`` that onnxruntime runs.

    Parameters
    ----------
    model : Sequential
    path : str or path-like
    input_shape : tuple of int or None
        Shape of one sample, e.g. ``(1, 28, 28)``; None: the shape the model was fitted or run
        with (or the ``in_features`` of a leading Dense).
    opset : int, default 17

    The graph has one input ``"input"`` of shape ``(N, *input_shape)`` and one output
    ``"output"``, in the model's dtype (float32 or float64), with a dynamic batch axis N;
    it computes what ``model.predict`` does (inference: Dropout is the identity, BatchNorm uses
    its running statistics). ValueError naming every layer that has no ONNX form.
    """
    proto = build(model, input_shape, opset)
    from ..io import atomic_open
    with atomic_open(path) as f:
        f.write(proto.SerializeToString())
    return path


__all__ = ["export", "build", "sample_shape", "CONVERTERS"]
