"""Layers: each knows its parameters, its output shape, and calls its backend's kernels.

One module per topic; every public name is re-exported here (``from fastnn.layers import
Dense``):

* :mod:`~fastnn.layers.base` - :class:`Layer` (the protocol), the :data:`LAYERS` registry,
  :func:`register`, helpers shared by layers;
* :mod:`~fastnn.layers.dense` - :class:`Dense`;
* :mod:`~fastnn.layers.activations` - :class:`Activation` and its subclasses, PReLU, Maxout;
* :mod:`~fastnn.layers.shape` - :class:`Flatten`;
* :mod:`~fastnn.layers.conv` - :class:`Conv2D`, :class:`MaxPool2D`, :class:`AvgPool2D`;
* :mod:`~fastnn.layers.conv_variants` - :class:`Conv1D`, :class:`ConvTranspose2D`,
  :class:`SeparableConv2D`, :class:`LocallyConnected2D`, :class:`TiledConv2D`;
* :mod:`~fastnn.layers.pooling` - :class:`GlobalAvgPool2D`, :class:`GlobalMaxPool2D`,
  :class:`LPPool2D`;
* :mod:`~fastnn.layers.regularization` - :class:`Dropout`, :class:`BatchNorm`;
* :mod:`~fastnn.layers.recurrent` - :class:`RNN`, :class:`LSTM`, :class:`GRU`;
* :mod:`~fastnn.layers.embedding` - :class:`Embedding`, :class:`TimeDistributed`.
"""
from .base import LAYERS, Layer, initial_weight_and_bias, initializer_config, register
from .activations import (Activation, LeakyReLU, LogSoftmax, Maxout, PReLU, ReLU, Sigmoid,
                          Softmax, Tanh)
from .conv import AvgPool2D, Conv2D, MaxPool2D
from .conv_variants import (Conv1D, ConvTranspose2D, LocallyConnected2D, SeparableConv2D,
                            TiledConv2D)
from .pooling import GlobalAvgPool2D, GlobalMaxPool2D, LPPool2D
from .dense import Dense
from .embedding import Embedding, TimeDistributed
from .recurrent import GRU, LSTM, RNN
from .regularization import BatchNorm, Dropout
from .shape import Flatten

__all__ = [
    "Layer", "LAYERS", "register", "initial_weight_and_bias", "initializer_config",
    "Dense", "Activation", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Softmax", "LogSoftmax",
    "PReLU", "Maxout", "Flatten", "Conv2D", "MaxPool2D", "AvgPool2D",
    "Conv1D", "ConvTranspose2D", "SeparableConv2D", "LocallyConnected2D", "TiledConv2D",
    "GlobalAvgPool2D", "GlobalMaxPool2D", "LPPool2D", "Dropout", "BatchNorm",
    "RNN", "LSTM", "GRU", "Embedding", "TimeDistributed",
]
