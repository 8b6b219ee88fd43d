"""Model zoo: ready-made architectures from the course texts."""
from . import layers as L
from .model import Sequential

ACTIVATIONS = {"relu": L.ReLU, "sigmoid": L.Sigmoid, "tanh": L.Tanh, "leaky_relu": L.LeakyReLU,
               "prelu": L.PReLU}


def mlp(sizes, activation="relu", flatten=True, **model_kwargs):
    """A multi-layer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` (logits out).

    Parameters
    ----------
    sizes : sequence of int, e.g. (784, 400, 100, 10)
    activation : name in ``ACTIVATIONS`` used after every hidden layer
    flatten : put a Flatten() first so image batches (N, C, H, W) can be fed directly
    **model_kwargs : backend, dtype, seed for :class:`Sequential`
    """
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {sizes}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    layers = [L.Flatten()] if flatten else []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(L.Dense(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(layers, **model_kwargs)
