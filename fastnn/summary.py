"""``model.summary(input_shape)``: each layer's output shape and parameter count, as Keras.

::

    Model: Sequential (backend 'cpu', float32)
    _________________________________________________________________
     Layer (type)                Output Shape              Param #
    =================================================================
     0 (Dense)                   (None, 64)                50,240
     ...
    =================================================================
    Total params: 50,890
    Trainable params: 50,890
    Non-trainable params: 0
    _________________________________________________________________

Non-trainable parameters are the non-trainable layer state (BatchNorm's running mean and
variance, as Keras counts them) and the parameters of layers with ``trainable = False``.
"""

WIDTHS = (28, 26, 12)


def known_input_shape(model, input_shape=None):
    """The per-sample input shape: ``input_shape``, else the one the model was last fitted or
    run with, else ``(in_features,)`` of a leading Dense; None when none is known."""
    if input_shape is not None:
        return tuple(int(d) for d in input_shape)
    if model._sample_shape is not None:
        return tuple(model._sample_shape)
    first = model.layers[0] if model.layers else None
    return (first.in_features,) if hasattr(first, "in_features") else None


def layer_rows(model, input_shape=None):
    """One ``(layer text, output shape or None, trainable count, non-trainable count)`` per
    layer; the output shapes are None when the input shape is not known. Raises ShapeError
    when a layer rejects the shape reaching it."""
    shape = known_input_shape(model, input_shape)
    rows = []
    for i, layer in enumerate(model.layers):
        if shape is not None:
            layer.check_input(shape)
            shape = layer.output_shape(shape)
        count = sum(p.size for p in layer.params)
        state = sum(a.size for a in layer.state_arrays().values())
        trainable = getattr(layer, "trainable", True)
        rows.append((f"{i} ({type(layer).__name__})", shape, count if trainable else 0,
                     state + (0 if trainable else count)))
    return rows


def _cell(text, width):
    text = str(text)
    return text if len(text) < width else text[:width - 2] + "… "


def summary_text(model, input_shape=None):
    """The table :func:`summary` prints, as a string."""
    rows = layer_rows(model, input_shape)
    line = "_" * sum(WIDTHS)
    out = [f"Model: Sequential (backend {model.backend!r}, {model.dtype.name})", line,
           " " + "".join(_cell(h, w).ljust(w) for h, w in
                         zip(("Layer (type)", "Output Shape", "Param #"), WIDTHS)).rstrip(),
           "=" * sum(WIDTHS)]
    for text, shape, trainable, frozen in rows:
        shape_text = "?" if shape is None else str((None,) + tuple(shape))
        cells = (text, shape_text, f"{trainable + frozen:,}")
        out.append(" " + "".join(_cell(c, w).ljust(w) for c, w in zip(cells, WIDTHS)).rstrip())
    trainable = sum(r[2] for r in rows)
    frozen = sum(r[3] for r in rows)
    out += ["=" * sum(WIDTHS), f"Total params: {trainable + frozen:,}",
            f"Trainable params: {trainable:,}", f"Non-trainable params: {frozen:,}", line]
    if rows and rows[0][1] is None:
        out.append("(output shapes unknown: pass input_shape, the shape of one sample)")
    return "\n".join(out)


def summary(model, input_shape=None, print_fn=print):
    """Print the summary table of ``model`` with ``print_fn`` (see the module docstring).

    Parameters
    ----------
    input_shape : tuple of int or None
        Shape of one sample, e.g. ``(1, 28, 28)``; None: the shape the model was fitted or run
        with (or a leading Dense's ``(in_features,)``), else the shapes show as "?".
    print_fn : callable taking one string, default print
    """
    print_fn(summary_text(model, input_shape))
