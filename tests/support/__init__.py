"""What the tests share, once: ``from support import ...`` (pytest puts tests/ on sys.path, as
for conftest.py; fixtures stay in conftest.py).

* :mod:`support.backends` - the backends the suite runs on (``BACKENDS``, ``OTHER_BACKENDS``,
  ``HOST_BACKENDS``, ``SIMULATED``), ``host`` (a host copy of any backend array),
  ``host_callable`` (a device backend's kernels on host arrays), ``kernel_implementations``,
  ``missing_kernels``;
* :mod:`support.gradcheck` - gradients against float64 central differences (``numerical_grad``,
  ``check_layer_grad``, ``check_loss_grad``, ``check_model_grad``);
* :mod:`support.layers` - one forward and backward of a model on host copies, and a layer on a
  backend against the "numpy" backend (``assert_layer_matches_numpy``);
* :mod:`support.tolerances` - the per-dtype tolerances, one row per kind of comparison;
* :mod:`support.op_cases` - the table of op cases: every kernel op, its inputs and variants,
  run on any kernel namespace, and its comparison with the reference;
* :mod:`support.data` - the optional data sets and packages some tests need.
"""
from .backends import (BACKENDS, HOST_BACKENDS, OTHER_BACKENDS, REFERENCE_KERNELS, SIMULATED,
                       host, host_callable, kernel_implementations, missing_kernels)
from .data import FASHION_MNIST_DIR, needs_fashion_mnist, torch_installed
from .gradcheck import check_layer_grad, check_loss_grad, check_model_grad, numerical_grad
from .layers import as_list, assert_layer_matches_numpy, forward_backward
from .tolerances import GRADIENT, TOLERANCES, tolerance

__all__ = [
    "BACKENDS", "HOST_BACKENDS", "OTHER_BACKENDS", "REFERENCE_KERNELS", "SIMULATED", "host",
    "host_callable", "kernel_implementations", "missing_kernels",
    "FASHION_MNIST_DIR", "needs_fashion_mnist", "torch_installed",
    "check_layer_grad", "check_loss_grad", "check_model_grad", "numerical_grad",
    "as_list", "assert_layer_matches_numpy", "forward_backward",
    "GRADIENT", "TOLERANCES", "tolerance",
]
