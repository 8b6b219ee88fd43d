"""The course texts' experiments as runnable, plotted reports: ``fastnn experiment NAME|all``.

Each experiment is a module with ``TITLE`` and ``run(settings, log=print) -> path of its
report`` (``settings`` a :class:`~fastnn.experiments.runner.Settings`); :mod:`.runner` holds
what they share (data, networks, seeds, the Markdown report and its PNG plots). They use
fastnn's public API only. Measured results of the full runs: ``experiments/RESULTS.md``.
"""
from importlib import import_module

from .runner import Settings

NAMES = ("costs", "init", "activations", "optimizers", "regularization", "lenet5", "search",
         "timing")
"""The experiments, in the order ``fastnn experiment all`` runs them."""


def get(name):
    """The module of experiment ``name`` (ValueError naming the choices otherwise)."""
    if name not in NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(NAMES)} or all")
    return import_module(f".{name}", __name__)


def run(name, settings, log=print):
    """Run experiment ``name`` (or every one for "all"); returns the list of report paths."""
    names = NAMES if name == "all" else (name,)
    modules = [get(n) for n in names]
    paths = []
    for n, module in zip(names, modules):
        log(f"experiment {n}: {module.TITLE}")
        paths.append(module.run(settings, log))
        log(f"  wrote {paths[-1]}")
    return paths


__all__ = ["NAMES", "Settings", "get", "run"]
