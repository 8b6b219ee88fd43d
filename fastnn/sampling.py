"""Character-level language modelling: the bundled text, its encoding, and free-running sampling.

The bundled text, ``fastnn/data/tinyshakespeare.txt``, is the first 150 KB of "tiny
shakespeare" (Andrej Karpathy's char-rnn, github.com/karpathy/char-rnn,
data/tinyshakespeare/input.txt): passages of Shakespeare's plays, which are in the public
domain. Train a model (e.g. :func:`fastnn.models.char_rnn`) with teacher forcing - the text's
characters as inputs, the same characters shifted one step as targets - then let
:func:`sample` feed the model its own outputs.
"""
from importlib import resources

import numpy as np

from .layers.recurrent import _Recurrent


def load_text():
    """The bundled public-domain text (see the module docstring) as one str."""
    return resources.files("fastnn").joinpath("data/tinyshakespeare.txt").read_text("utf-8")


def char_sequences(text, length, vocab=None):
    """Teacher-forcing data of a text: ``(x, y, vocab)`` with x (N, length) int64 character ids
    of consecutive, non-overlapping windows, y (N, length) the same windows one character on,
    and vocab the sorted characters (a str; the id of a character is its index)."""
    vocab = "".join(sorted(set(text))) if vocab is None else vocab
    ids = encode(text, vocab)
    n = (len(ids) - 1) // length
    if n < 1:
        raise ValueError(f"the text has {len(ids)} characters; windows of {length} need at "
                         f"least {length + 1}")
    x = ids[:n * length].reshape(n, length)
    y = ids[1:n * length + 1].reshape(n, length)
    return x, y, vocab


def encode(text, vocab):
    """Character ids (int64 array) of ``text`` under ``vocab``; ValueError for a character
    not in it."""
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted(set(text) - set(index))
    if missing:
        raise ValueError(f"characters {missing[:5]!r} are not in the vocabulary")
    return np.array([index[c] for c in text], dtype=np.int64)


def sample(model, start, length, temperature=1.0, seed=None, vocab=None):
    """Free running: ``length`` tokens drawn from the model, each fed back as the next input.

    Parameters
    ----------
    model : Sequential
        Maps ids (N, T) to logits (N, T, V) (or (N, V)); its recurrent layers must be
        one-directional. Their ``initial_state`` is used while sampling and restored after.
    start : str or sequence of int
        The prompt (at least one token), read first; a str needs ``vocab``.
    length : int
        Number of tokens to draw.
    temperature : float, default 1.0
        The logits are divided by it before the softmax; 0 takes the most likely token.
    seed : int or None
        Seeds the draws (``numpy.random.default_rng``).
    vocab : str or None
        The characters of the ids (as :func:`char_sequences` returns); with it and a str
        ``start`` the result is a str.

    Returns
    -------
    str (start as a str) or ndarray of shape (length,) int64: the drawn tokens only.
    """
    as_text = isinstance(start, str)
    if as_text and vocab is None:
        raise ValueError("sample: a str start needs the vocab its characters come from")
    ids = encode(start, vocab) if as_text else np.asarray(start, dtype=np.int64).ravel()
    if ids.size == 0:
        raise ValueError("sample: start needs at least one token")
    if temperature < 0:
        raise ValueError(f"sample: temperature must be >= 0, got {temperature}")
    rec = [layer for layer in model.layers if isinstance(layer, _Recurrent)]
    if any(layer.bidirectional for layer in rec):
        raise ValueError("sample: a bidirectional layer reads the future; free running needs "
                         "one-directional layers")
    rng, saved, drawn = np.random.default_rng(seed), [layer.initial_state for layer in rec], []
    try:
        for layer in rec:
            layer.initial_state = None
        logits = _last_logits(model, ids[None, :])
        for _ in range(int(length)):
            if temperature == 0:
                token = int(np.argmax(logits))
            else:
                z = logits / temperature
                p = np.exp(z - z.max())
                token = int(rng.choice(p.size, p=p / p.sum()))
            drawn.append(token)
            for layer in rec:
                layer.initial_state = layer.final_state(model.be)
            logits = _last_logits(model, np.array([[token]]))
    finally:
        for layer, state in zip(rec, saved):
            layer.initial_state = state
    drawn = np.array(drawn, dtype=np.int64)
    return "".join(vocab[i] for i in drawn) if as_text else drawn


def _last_logits(model, ids):
    """The logits (float64, (V,)) after the last token of the one sequence ``ids`` (1, T)."""
    out = model.be.to_host(model.forward(ids))
    return np.array(out[0, -1] if out.ndim == 3 else out[0], dtype=np.float64)
