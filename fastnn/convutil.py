"""Index arithmetic of convolution and pooling: :mod:`fastnn.kernels.geometry` (the old name)."""
from .kernels.geometry import (conv_output_size, output_hw, pair, padding_config,  # noqa: F401
                               resolve_padding)
