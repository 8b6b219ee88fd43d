"""Issue 3's acceptance check on real data: the 784-400-100-10 MLP (ReLU, cross-entropy, SGD
lr 0.1, batch 32, seed 0) reaches >= 85.5% test accuracy on Fashion-MNIST after 5 epochs.

PyTorch with the same setup: 86.4-87.4% over 9 seeds. Trained on the first 50000 training
images, tested on the 10000 test images. Skipped when the Debian package
dataset-fashion-mnist is not installed (CI installs it).
"""
import pytest

import fastnn as fn
from support import FASHION_MNIST_DIR as DATA, HOST_BACKENDS, needs_fashion_mnist

pytestmark = [pytest.mark.slow, needs_fashion_mnist]


@pytest.mark.parametrize("backend_name", HOST_BACKENDS)
def test_mlp_reaches_85_5_percent_in_5_epochs(backend_name):
    (x, y), (x_test, y_test) = fn.datasets.load_fashion_mnist(DATA)
    model = fn.models.mlp((784, 400, 100, 10), backend=backend_name, seed=0)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    model.fit(x[:50000], y[:50000], loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=5,
              batch_size=32, seed=0, verbose=0)
    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    assert accuracy >= 0.855, f"test accuracy {accuracy:.4f} after 5 epochs on {backend_name}"
