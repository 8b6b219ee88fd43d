"""Greedy supervised pretraining (Goodfellow et al., *Deep Learning*, 8.7.4, figure 8.7;
Bengio et al. 2007): train a network with one hidden layer, keep its hidden layer, put the next
hidden layer and a new output layer on top, train again, and so on."""
from .model import Sequential


def greedy_layerwise(build, x, y, depth, epochs=1, fine_tune_epochs=0, freeze=True,
                     backend=None, dtype="float32", seed=0, **fit_kwargs):
    """Greedy layer-wise supervised pretraining, then optional fine-tuning of the whole net.

    Parameters
    ----------
    build : callable ``build(i) -> (block, head)``
        For stage ``i`` (0 .. depth - 1): ``block``, the list of layers of hidden block ``i``
        (e.g. ``[fn.Dense(100, 100), fn.ReLU()]``; its input is block ``i - 1``'s output, or
        ``x`` for i = 0), and ``head``, the output layers put on top of it for this stage
        (e.g. ``[fn.Dense(100, 10)]``). The heads of the earlier stages are dropped.
    x, y : training data, as for :meth:`Sequential.fit`
    depth : int >= 1, the number of hidden blocks
    epochs : int, the epochs of each stage
    fine_tune_epochs : int, default 0
        After the last stage, train every layer (none frozen) this many more epochs.
    freeze : bool, default True
        Freeze the kept blocks (``trainable = False``) while a stage trains the new block and
        its head (figure 8.7's scheme); False retrains the kept blocks too.
    backend, dtype, seed : as :class:`Sequential` (each stage's model uses them)
    **fit_kwargs : passed to every ``fit`` (loss, batch_size, lr, verbose, validation_data, ...);
        an optimizer must be given by name, as each stage builds its own.

    Returns
    -------
    (Sequential, list of History)
        The final model (the ``depth`` blocks with the last head) and one History per stage
        (and one for the fine-tuning when ``fine_tune_epochs`` > 0). The kept blocks are the
        same layer objects in every stage; their weights (and state, e.g. BatchNorm's) carry
        over from the stage that trained them.
    """
    if int(depth) != depth or depth < 1:
        raise ValueError(f"greedy_layerwise: depth must be an int >= 1, got {depth!r}")
    if not isinstance(fit_kwargs.get("optimizer", "sgd"), str):
        raise ValueError("greedy_layerwise: pass the optimizer by name (each stage builds its "
                         "own for its new parameters)")
    blocks, histories, model = [], [], None
    for i in range(int(depth)):
        block, head = build(i)
        kept = [layer for b in blocks for layer in b]
        saved = _weights(model, kept)
        blocks.append(list(block))
        model = Sequential(kept + blocks[-1] + list(head), backend=backend, dtype=dtype,
                           seed=None if seed is None else seed + i)
        _restore(model, saved)
        for layer in kept:
            layer.trainable = not freeze
        histories.append(model.fit(x, y, epochs=epochs, **fit_kwargs))
    for layer in model.layers:
        layer.trainable = True
    if fine_tune_epochs:
        histories.append(model.fit(x, y, epochs=fine_tune_epochs, **fit_kwargs))
    return model, histories


def _weights(model, layers):
    """{layer: ([parameter host copies], state arrays)} of ``layers`` in ``model``."""
    if model is None:
        return {}
    to_host = model.be.to_host
    return {id(layer): ([to_host(p.data).copy() for p in layer.params], layer.state_arrays())
            for layer in layers}


def _restore(model, saved):
    """Put the saved weights and state back into the layers of the new stage's model."""
    for layer in model.layers:
        if id(layer) in saved:
            values, state = saved[id(layer)]
            for p, v in zip(layer.params, values):
                model.be.copy_into(p.data, v)
            layer.load_state_arrays(state)
