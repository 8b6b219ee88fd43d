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


def lenet5(in_channels=1, image_size=(28, 28), num_classes=10, **model_kwargs):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, for 28x28 images (logits out).

    conv 5x5 (padding 2) in_channels->6, ReLU, max-pool 2, conv 5x5 6->16, ReLU, max-pool 2,
    Flatten, Dense 16*5*5=400 -> 120, ReLU, 120 -> 84, ReLU, 84 -> num_classes. Train with
    CrossEntropyLoss.

    Parameters
    ----------
    in_channels : int, default 1
    image_size : (H, W), default (28, 28); sizes the first Dense layer
    num_classes : int, default 10
    **model_kwargs : backend, dtype, seed for :class:`Sequential`
    """
    features = [L.Conv2D(in_channels, 6, 5, padding=2), L.ReLU(), L.MaxPool2D(2),
                L.Conv2D(6, 16, 5), L.ReLU(), L.MaxPool2D(2)]
    shape = (in_channels,) + tuple(image_size)
    for layer in features:             # (16, 5, 5) for 28x28 images
        try:
            layer.check_input(shape)
        except ValueError as exc:
            raise type(exc)(f"lenet5: image_size {tuple(image_size)} is too small ({exc})") from None
        shape = layer.output_shape(shape)
    layers = features + [L.Flatten(), L.Dense(16 * shape[1] * shape[2], 120), L.ReLU(),
                         L.Dense(120, 84), L.ReLU(), L.Dense(84, num_classes)]
    return Sequential(layers, **model_kwargs)


def char_rnn(vocab_size, embedding_dim=32, hidden_size=128, cell="lstm", num_layers=1,
             **model_kwargs):
    """A character-level language model: Embedding, ``num_layers`` recurrent layers of
    ``hidden_size`` units (every step's state), and a Dense per step to ``vocab_size`` logits:
    ids (N, T) -> logits (N, T, vocab_size). Train it with teacher forcing on
    :func:`fastnn.sampling.char_sequences` and CrossEntropyLoss (the mean over all N*T steps);
    draw text with :func:`fastnn.sample`.

    Parameters
    ----------
    vocab_size : int
    embedding_dim, hidden_size, num_layers : int
    cell : {"lstm", "gru", "rnn"}
    **model_kwargs : backend, dtype, seed for :class:`Sequential`
    """
    cells = {"lstm": L.LSTM, "gru": L.GRU, "rnn": L.RNN}
    if cell not in cells:
        raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(cells)}")
    layers = [L.Embedding(vocab_size, embedding_dim)]
    for k in range(num_layers):
        layers.append(cells[cell](embedding_dim if k == 0 else hidden_size, hidden_size,
                                  return_sequences=True))
    layers.append(L.TimeDistributed(L.Dense(hidden_size, vocab_size)))
    return Sequential(layers, **model_kwargs)
