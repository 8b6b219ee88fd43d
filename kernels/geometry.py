"""Index arithmetic of convolution and pooling, shared by the layers and every backend.

Written once here so the layers (which size the buffers) and the kernels (which fill them)
cannot disagree. Everything is plain Python on ints.

Kernel-level conventions (what the layers pass to ``be.conv2d_forward`` and friends):

* ``kernel``, ``stride`` are pairs ``(along H, along W)`` of positive ints;
* ``padding`` is a 4-tuple of zero-padding widths ``(top, bottom, left, right)``, so the
  asymmetric padding of ``padding="same"`` with an even kernel (the extra row / column goes at
  the bottom / right, as PyTorch) is expressed exactly;
* the output of an ``H x W`` plane has ``conv_output_size(H, kh, sh, top, bottom)`` rows and
  ``conv_output_size(W, kw, sw, left, right)`` columns (windows that would run past the padded
  image are dropped, PyTorch's ``ceil_mode=False``).
"""


def pair(value, name="value"):
    """``value`` as a pair of ints: ``3 -> (3, 3)``, ``(3, 5) -> (3, 5)``; ValueError otherwise."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        a, b = value
    else:
        a = b = value
    try:
        ia, ib = int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if ia != a or ib != b:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return ia, ib


def conv_output_size(size, kernel, stride, pad_before, pad_after):
    """Number of window positions along one axis: ``(size + pads - kernel) // stride + 1``.

    Returns 0 or less when the padded input is smaller than the kernel (no valid window).
    """
    return (size + pad_before + pad_after - kernel) // stride + 1


def resolve_padding(padding, kernel, stride=(1, 1)):
    """User padding -> kernel-level 4-tuple ``(top, bottom, left, right)``.

    padding : int, pair ``(ph, pw)`` (the same on both sides of each axis), 4-tuple
        ``(top, bottom, left, right)``, ``"valid"`` (no padding) or ``"same"`` (output as
        large as the input; stride 1 only; for an even kernel the extra zero row / column goes
        at the bottom / right, like PyTorch's ``padding="same"``).
    kernel, stride : pairs of ints.
    """
    kh, kw = kernel
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if tuple(stride) != (1, 1):
            raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride {tuple(stride)}")
        th, tw = kh - 1, kw - 1
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    if isinstance(padding, (list, tuple)) and len(padding) == 4:
        pads = tuple(int(p) for p in padding)
    else:
        ph, pw = pair(padding, "padding")
        pads = (ph, ph, pw, pw)
    if min(pads) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return pads


def output_hw(h, w, kernel, stride, pads):
    """``(OH, OW)`` of an ``h x w`` plane for kernel / stride pairs and 4-tuple ``pads``."""
    return (conv_output_size(h, kernel[0], stride[0], pads[0], pads[1]),
            conv_output_size(w, kernel[1], stride[1], pads[2], pads[3]))


def padding_config(padding):
    """A JSON-friendly form of a user padding argument (str, int or list)."""
    if isinstance(padding, str):
        return padding
    if isinstance(padding, (list, tuple)):
        return [int(p) for p in padding]
    return int(padding)
