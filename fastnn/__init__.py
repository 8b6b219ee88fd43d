"""fastnn: fast, readable neural-network training for MLPs and small CNNs.

>>> import fastnn as fn
>>> model = fn.Sequential([fn.Dense(64, 32), fn.ReLU(), fn.Dense(32, 10)], backend="numpy")
"""
__version__ = "0.1.0"

from . import (augment, backend, callbacks, datasets, ensemble, errors, executors, init,  # noqa: E402
               interop, losses, models, optim, progress, search, summary, threads)
from .backend import available_backends, get_backend  # noqa: E402
from .layers import (AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten,  # noqa: E402
                     LeakyReLU, LogSoftmax, MaxPool2D, Maxout, PReLU, ReLU, Sigmoid, Softmax,
                     Tanh)
from .layers import GRU, LSTM, RNN, Embedding, TimeDistributed  # noqa: E402
from .layers import (Conv1D, ConvTranspose2D, GlobalAvgPool2D, GlobalMaxPool2D,  # noqa: E402
                     LocallyConnected2D, LPPool2D, SeparableConv2D, TiledConv2D)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa: E402
from .model import Sequential  # noqa: E402
from .parameter import Parameter, unpickle_backend  # noqa: E402
from .threads import get_num_threads, set_num_threads  # noqa: E402
from .callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler,  # noqa: E402
                        ModelCheckpoint, WeightAveraging)
from .training import History  # noqa: E402
from . import curriculum, pretrain  # noqa: E402
from .sampling import sample  # noqa: E402

threads.apply_environment()

__all__ = [
    "Sequential", "Parameter", "unpickle_backend",
    "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Sigmoid", "Tanh", "ReLU", "LeakyReLU",
    "PReLU", "Softmax", "LogSoftmax", "Maxout", "Dropout", "BatchNorm",
    "RNN", "LSTM", "GRU", "Embedding", "TimeDistributed",
    "Conv1D", "ConvTranspose2D", "SeparableConv2D", "LocallyConnected2D", "TiledConv2D",
    "GlobalAvgPool2D", "GlobalMaxPool2D", "LPPool2D",
    "MSELoss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
    "Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler", "CSVLogger",
    "WeightAveraging", "History", "sample",
    "available_backends", "get_backend", "set_num_threads", "get_num_threads",
    "augment", "backend", "callbacks", "datasets", "ensemble", "errors", "init", "losses",
    "models", "optim", "threads", "executors", "search", "curriculum", "pretrain",
    "interop", "progress", "summary",
]
