"""Weight initialisers.

Every initialiser is a function ``f(rng, shape, fan_in, fan_out) -> float64 ndarray`` of
``shape``; ``rng`` is a ``numpy.random.Generator``. Layers accept either such a function or
its name (``Dense(784, 100, init="he_normal")``). Parametrised ones are made by a factory:
``normal(std=0.01)`` returns an initialiser.

For ReLU units, He weights with a small positive bias keep the units active at the start:
``Dense(784, 100, init="he", bias_init="positive")`` (``relu_bias``, every bias 0.01).
:func:`output_bias_from_marginals` sets the output layer's bias from the class frequencies
of the training labels, so the initial softmax predicts the class marginals.
"""
import numpy as np

from .validation import check_labels


def normal(std=0.01, mean=0.0):
    """N(mean, std^2) for every weight (the course texts' 'small random numbers')."""
    def init(rng, shape, fan_in, fan_out):
        return rng.normal(mean, std, size=shape)
    return init


def constant(value):
    """Every weight set to ``value`` (e.g. a small positive bias for ReLU units)."""
    def init(rng, shape, fan_in, fan_out):
        return np.full(shape, float(value))
    return init


def zeros(rng, shape, fan_in, fan_out):
    """All zeros (biases)."""
    return np.zeros(shape)


def ones(rng, shape, fan_in, fan_out):
    """All ones (e.g. a scale)."""
    return np.ones(shape)


relu_bias = constant(0.01)
"""Bias initialiser for ReLU units: every bias 0.01, so that (with He weights) about half or
more of the units start active and pass gradients; ``bias_init="positive"`` by name."""


def xavier_normal(rng, shape, fan_in, fan_out):
    """Glorot & Bengio: N(0, 2 / (fan_in + fan_out)); keeps variance for sigmoid/tanh."""
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def xavier_uniform(rng, shape, fan_in, fan_out):
    """Glorot & Bengio: U(-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out)))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def lecun_normal(rng, shape, fan_in, fan_out):
    """LeCun: N(0, 1 / fan_in)."""
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)


def lecun_uniform(rng, shape, fan_in, fan_out):
    """LeCun: U(-sqrt(3 / fan_in), +sqrt(3 / fan_in))."""
    limit = np.sqrt(3.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def he_normal(rng, shape, fan_in, fan_out):
    """He et al.: N(0, 2 / fan_in); keeps variance through ReLU units."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def he_uniform(rng, shape, fan_in, fan_out):
    """He et al.: U(-sqrt(6 / fan_in), +sqrt(6 / fan_in))."""
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def orthogonal(rng, shape, fan_in, fan_out):
    """Saxe et al.: a (semi-)orthogonal matrix from the QR decomposition of a Gaussian one."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q[:rows, :cols].reshape(shape)


def sparse(fraction=0.1, std=0.01):
    """Martens: all but a ``fraction`` of each column's weights zero, the rest N(0, std^2)."""
    def init(rng, shape, fan_in, fan_out):
        w = rng.normal(0.0, std, size=shape)
        w[rng.random(size=shape) >= fraction] = 0.0
        return w
    return init


BY_NAME = {
    "normal": normal(), "zeros": zeros, "ones": ones,
    "positive": relu_bias, "relu_bias": relu_bias,
    "xavier": xavier_normal, "glorot": xavier_normal,
    "xavier_normal": xavier_normal, "glorot_normal": xavier_normal,
    "xavier_uniform": xavier_uniform, "glorot_uniform": xavier_uniform,
    "lecun": lecun_normal, "lecun_normal": lecun_normal, "lecun_uniform": lecun_uniform,
    "he": he_normal, "he_normal": he_normal, "he_uniform": he_uniform,
    "kaiming": he_normal, "kaiming_normal": he_normal, "kaiming_uniform": he_uniform,
    "orthogonal": orthogonal, "sparse": sparse(),
}

_DEFAULT_FOR_FAMILY = {"he": he_normal, "xavier": xavier_normal, "lecun": lecun_normal}


def get(init):
    """The initialiser for a name or a callable; ValueError naming the choices otherwise."""
    if callable(init):
        return init
    try:
        return BY_NAME[init]
    except KeyError:
        raise ValueError(f"unknown initialiser {init!r}; choose one of {sorted(BY_NAME)} "
                         "or pass a function f(rng, shape, fan_in, fan_out)") from None


def default_for(activation):
    """Default weight initialiser for a layer followed by ``activation`` (a layer, whose
    ``init_family`` says which, or None): He for ReLU-like units, Xavier for sigmoid/tanh,
    LeCun otherwise."""
    return _DEFAULT_FOR_FAMILY["lecun" if activation is None else activation.init_family]


def output_bias_from_marginals(model, y, zero_weights=False, min_frequency=None):
    """Set the bias of the model's last Dense layer to the log of the class frequencies of ``y``.

    With logits ``x @ W + b`` and ``b_k = log(frequency_k)``, ``softmax(b)`` equals the class
    marginals, so the network starts by predicting the base rates (Karpathy's "init well"
    recipe for imbalanced classes) instead of a uniform guess. The initial softmax equals the
    marginals exactly when the layer's weights are zero (``zero_weights=True``); with the usual
    small random weights it is close to them.

    Parameters
    ----------
    model : Sequential
        Its last Dense layer must have one output per class (a softmax, if any, comes after it).
        The Dense layers are found by their parameters (a 2-D ``weight`` and a ``bias`` with one
        entry per column of it), so this module needs nothing of :mod:`fastnn.layers`.
    y : array-like of shape (n_samples,), integer labels in [0, n_classes)
    zero_weights : bool, default False
        Also set that layer's weights to zero.
    min_frequency : float or None
        Frequency used for classes absent from ``y`` (whose log would be -inf); by default
        ``1 / (10 * n_samples)``.

    Returns
    -------
    ndarray of shape (n_classes,): the bias that was set (float64).
    """
    dense = [layer for layer in model.layers if _is_dense(layer)]
    if not dense:
        raise ValueError("output_bias_from_marginals needs a model with a Dense layer")
    layer = dense[-1]
    k = layer.bias.size
    y = check_labels(y, len(np.asarray(y)), k)
    if len(y) == 0:
        raise ValueError("output_bias_from_marginals needs at least one label")
    freq = np.bincount(y, minlength=k) / len(y)
    floor = 1.0 / (10 * len(y)) if min_frequency is None else float(min_frequency)
    bias = np.log(np.maximum(freq, floor))
    flat = model.get_weights()
    flat[layer.bias.offset:layer.bias.offset + k] = bias
    if zero_weights:
        flat[layer.weight.offset:layer.weight.offset + layer.weight.size] = 0.0
    model.set_weights(flat)
    return bias


def _is_dense(layer):
    """Whether ``layer`` is fully connected: parameters ``weight`` (F_in, K) and ``bias`` (K,)."""
    shapes = dict(layer.parameter_shapes())
    return (shapes.keys() == {"weight", "bias"} and len(shapes["weight"]) == 2
            and tuple(shapes["bias"]) == tuple(shapes["weight"][1:]))
