"""Optional data sets and packages: where they are, and how a test skips without them."""
import importlib.util
import os

import pytest

FASHION_MNIST_DIR = os.environ.get("FASTNN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
"""Fashion-MNIST's IDX files (the dataset-fashion-mnist package, or $FASTNN_FASHION_MNIST_DIR)."""

needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR),
                                         reason="dataset-fashion-mnist not installed")


def torch_installed():
    """Whether PyTorch can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None
