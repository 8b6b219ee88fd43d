"""PyTorch models in and out: ``Sequential.from_torch(module)`` and ``model.to_torch()``.

Each supported ``torch.nn`` module maps to one fastnn layer with the same computation and the
weights copied (Linear's weight transposed: fastnn's Dense weight is (in, out)); BatchNorm
carries its running statistics. torch is an optional dependency, imported inside.

=================================  ========================================
torch.nn                           fastnn
=================================  ========================================
Linear                             Dense (a Linear without bias: bias 0)
Conv2d (zeros padding)             Conv2D (a Conv2d without bias: bias 0)
MaxPool2d, AvgPool2d               MaxPool2D, AvgPool2D
Flatten (start_dim=1, end_dim=-1)  Flatten
BatchNorm1d, BatchNorm2d           BatchNorm
Dropout                            Dropout
ReLU, Sigmoid, Tanh, LeakyReLU,    ReLU, Sigmoid, Tanh, LeakyReLU,
PReLU, Softmax, LogSoftmax         PReLU, Softmax, LogSoftmax (last axis)
=================================  ========================================
"""
import numpy as np

from .. import layers as L


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("from_torch / to_torch need PyTorch: pip install torch") from None
    return torch


def _array(t):
    return t.detach().cpu().numpy()


def _reject(module, why):
    raise ValueError(f"{module!r} cannot be converted to fastnn: {why}")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# -- torch -> fastnn: each returns (layer, {parameter name: array}, {state name: array}) --------

def _linear(m):
    bias = _array(m.bias) if m.bias is not None else np.zeros(m.out_features)
    return L.Dense(m.in_features, m.out_features), {"weight": _array(m.weight).T,
                                                    "bias": bias}, {}


def _conv2d(m):
    if m.padding_mode != "zeros":
        _reject(m, "fastnn's Conv2D pads with zeros only")
    padding = m.padding if isinstance(m.padding, str) else list(_pair(m.padding))
    bias = _array(m.bias) if m.bias is not None else np.zeros(m.out_channels)
    layer = L.Conv2D(m.in_channels, m.out_channels, list(_pair(m.kernel_size)),
                     stride=list(_pair(m.stride)), padding=padding,
                     dilation=list(_pair(m.dilation)), groups=m.groups)
    return layer, {"weight": _array(m.weight), "bias": bias}, {}


def _pool(cls):
    def convert(m):
        if m.ceil_mode or (cls is L.MaxPool2D and (_pair(m.dilation) != (1, 1)
                                                   or m.return_indices)):
            _reject(m, "ceil_mode, dilation and return_indices are not supported")
        if cls is L.AvgPool2D and (not m.count_include_pad or m.divisor_override is not None):
            _reject(m, "fastnn's AvgPool2D counts the zero padding (count_include_pad=True)")
        stride = m.stride if m.stride else m.kernel_size
        return cls(list(_pair(m.kernel_size)), list(_pair(stride)), list(_pair(m.padding))), {}, {}
    return convert


def _flatten(m):
    if m.start_dim != 1 or m.end_dim != -1:
        _reject(m, "only Flatten(start_dim=1, end_dim=-1) is supported")
    return L.Flatten(), {}, {}


def _batchnorm(m):
    if m.momentum is None or not m.track_running_stats:
        _reject(m, "fastnn's BatchNorm keeps running statistics with a fixed momentum")
    layer = L.BatchNorm(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine)
    params = {"weight": _array(m.weight), "bias": _array(m.bias)} if m.affine else {}
    return layer, params, {"running_mean": _array(m.running_mean),
                           "running_var": _array(m.running_var)}


def _softmax(cls):
    def convert(m):
        if m.dim not in (-1, 1):
            _reject(m, "fastnn's softmax layers work on the last axis of (N, K)")
        return cls(), {}, {}
    return convert


def _plain(cls):
    return lambda m: (cls(), {}, {})


FROM_TORCH = {
    "Linear": _linear,
    "Conv2d": _conv2d,
    "MaxPool2d": _pool(L.MaxPool2D),
    "AvgPool2d": _pool(L.AvgPool2D),
    "Flatten": _flatten,
    "BatchNorm1d": _batchnorm,
    "BatchNorm2d": _batchnorm,
    "Dropout": lambda m: (L.Dropout(m.p), {}, {}),
    "ReLU": _plain(L.ReLU),
    "Sigmoid": _plain(L.Sigmoid),
    "Tanh": _plain(L.Tanh),
    "LeakyReLU": lambda m: (L.LeakyReLU(m.negative_slope), {}, {}),
    "PReLU": lambda m: (L.PReLU(m.num_parameters), {"weight": _array(m.weight)}, {}),
    "Softmax": _softmax(L.Softmax),
    "LogSoftmax": _softmax(L.LogSoftmax),
}
"""torch module class name -> ``convert(module) -> (layer, parameters, state)``."""


def from_torch(cls, module, backend=None, dtype=None, seed=0):
    """A fastnn model (``cls``, a Sequential) computing what the ``torch.nn.Sequential``
    ``module`` computes, with its weights (see the module docstring for the layers).

    ``dtype`` None: the dtype of the module's parameters (float32 or float64). ValueError
    naming every module that has no fastnn form."""
    torch = _torch()
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch takes a torch.nn.Sequential, got {type(module).__name__}")
    missing = [f"{i}: {m!r}" for i, m in enumerate(module)
               if type(m).__name__ not in FROM_TORCH]
    if missing:
        raise ValueError(f"these torch modules have no fastnn form: {', '.join(missing)}; "
                         f"supported: {', '.join(sorted(FROM_TORCH))}")
    if dtype is None:
        first = next(iter(module.parameters()), None)
        dtype = "float64" if first is not None and first.dtype == torch.float64 else "float32"
    converted = [FROM_TORCH[type(m).__name__](m) for m in module]
    model = cls([layer for layer, _, _ in converted], backend=backend, dtype=dtype, seed=seed)
    for layer, params, state in converted:
        for p, name in zip(layer.params, layer.param_names):
            model.be.copy_into(p.data, np.ascontiguousarray(params[name], dtype=model.dtype))
        if state:
            layer.load_state_arrays(state)
    return model


# -- fastnn -> torch -----------------------------------------------------------------------------

def _host_params(model, layer):
    return {name: np.array(model.be.to_host(p.data))
            for name, p in zip(layer.param_names, layer.params)}


def _to_conv(nn, layer):
    top, bottom, left, right = layer.pads
    if top != bottom or left != right:
        raise ValueError(f"{layer!r}: PyTorch's Conv2d pads both sides equally, this layer pads "
                         f"(top, bottom, left, right) = {layer.pads}")
    return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                     stride=layer.stride, padding=(top, left), dilation=layer.dilation,
                     groups=layer.groups)


def _to_batchnorm(nn, layer, rank):
    cls = nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d
    return cls(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine)


def _sample_rank(layer, rank):
    """The number of per-sample axes after ``layer`` (None: not known)."""
    if isinstance(layer, (L.Conv2D, L.MaxPool2D, L.AvgPool2D)):
        return 3
    if isinstance(layer, (L.Flatten, L.Dense, L.Maxout)):
        return 1
    return rank


TO_TORCH = {
    "Dense": lambda nn, l, s: nn.Linear(l.in_features, l.out_features),
    "Conv2D": lambda nn, l, s: _to_conv(nn, l),
    "MaxPool2D": lambda nn, l, s: nn.MaxPool2d(l.kernel_size, l.stride, l.padding),
    "AvgPool2D": lambda nn, l, s: nn.AvgPool2d(l.kernel_size, l.stride, l.padding),
    "Flatten": lambda nn, l, s: nn.Flatten(),
    "BatchNorm": _to_batchnorm,
    "Dropout": lambda nn, l, s: nn.Dropout(l.p),
    "ReLU": lambda nn, l, s: nn.ReLU(),
    "Sigmoid": lambda nn, l, s: nn.Sigmoid(),
    "Tanh": lambda nn, l, s: nn.Tanh(),
    "LeakyReLU": lambda nn, l, s: nn.LeakyReLU(l.negative_slope),
    "PReLU": lambda nn, l, s: nn.PReLU(l.num_parameters),
    "Softmax": lambda nn, l, s: nn.Softmax(dim=-1),
    "LogSoftmax": lambda nn, l, s: nn.LogSoftmax(dim=-1),
}
"""fastnn layer class name -> ``make(torch.nn, layer, per-sample rank of its input)``."""


def _torch_values(name, layer, value):
    """A fastnn parameter as its torch module holds it."""
    return value.T if isinstance(layer, L.Dense) and name == "weight" else value


def to_torch(model):
    """A ``torch.nn.Sequential`` equivalent to ``model``, with a copy of its weights, in the
    model's dtype, in training mode (call ``.eval()`` for inference).

    A BatchNorm becomes BatchNorm2d after a Conv2D or pool, else BatchNorm1d (a leading one:
    after the shape the model was fitted with). ValueError naming every layer without a
    PyTorch form."""
    torch = _torch()
    missing = [f"{i}: {layer!r}" for i, layer in enumerate(model.layers)
               if type(layer).__name__ not in TO_TORCH]
    if missing:
        raise ValueError(f"these layers have no PyTorch form in fastnn: {', '.join(missing)}; "
                         f"supported: {', '.join(sorted(TO_TORCH))}")
    rank = len(model._sample_shape) if model._sample_shape is not None else None
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    modules = []
    for layer in model.layers:
        module = TO_TORCH[type(layer).__name__](torch.nn, layer, rank).to(dtype)
        with torch.no_grad():
            for name, value in _host_params(model, layer).items():
                getattr(module, name).copy_(torch.from_numpy(_torch_values(name, layer, value)))
            for name, value in layer.state_arrays().items():
                getattr(module, name).copy_(torch.from_numpy(value))
        modules.append(module)
        rank = _sample_rank(layer, rank)
    return torch.nn.Sequential(*modules)
