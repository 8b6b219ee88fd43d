"""The ``fastnn`` command line: ``fastnn train ...`` and ``fastnn bench ...``.

Errors in the arguments or the data are printed as one line on stderr (no traceback) and the
command exits with status 2.
"""
import argparse
import os
import sys

import numpy as np

DATASETS = ("digits", "fashion-mnist", "mnist")
MODELS = ("mlp", "lenet5")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")


class UsageError(Exception):
    """A bad command-line argument."""


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing the usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def build_parser():
    parser = Parser(prog="fastnn", description="Train and benchmark small neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a model and write it, its history and learning curves")
    t.add_argument("--model", choices=MODELS, default="mlp")
    t.add_argument("--hidden", default=None,
                   help="hidden layer sizes of the MLP, comma separated (default 400,100; digits 100)")
    t.add_argument("--activation", default="relu")
    t.add_argument("--dataset", choices=DATASETS, default="digits")
    t.add_argument("--data-dir", default=None, help="folder of IDX files (fashion-mnist, mnist)")
    t.add_argument("--validation-size", type=int, default=10000,
                   help="last N training images held out for validation (IDX data sets)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default=None)
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/latest", help="folder for model.npz, history.csv/.json, curves.png")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("bench", help="time one training epoch on every available backend "
                       "(--matrix: the benchmark matrix, many cases against PyTorch)")
    b.add_argument("--model", choices=MODELS, default="mlp")
    b.add_argument("--batch-size", type=int, nargs="+", default=[32])
    b.add_argument("--dataset", choices=("fashion-mnist", "mnist"), default="fashion-mnist")
    b.add_argument("--data-dir", default=None)
    b.add_argument("--samples", type=int, default=None,
                   help="training images per epoch (default 50000; --matrix 10000, --quick 512)")
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--backends", nargs="+", default=None)
    b.add_argument("--no-torch", action="store_true")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--json", default=None, help="also write the results as JSON here")
    b.add_argument("--split", action="store_true",
                   help="also time one epoch layer by layer and print each layer's share")
    b.add_argument("--matrix", action="store_true",
                   help="run the benchmark matrix (benchmarks/matrix.py): models x optimizers x "
                   "batch sizes x dtypes x inference, each against PyTorch CPU")
    b.add_argument("--cases", nargs="+", default=None,
                   help="--matrix: only the cases whose name contains one of these (case-insensitive)")
    b.add_argument("--quick", action="store_true",
                   help="--matrix: a smoke run (512 images unless --samples, 1 round)")
    b.add_argument("--markdown", action="store_true", help="--matrix: print the tables as Markdown")
    b.add_argument("--torch-optim", choices=("default", "foreach", "fused"), default="default",
                   help="--matrix: PyTorch optimizer implementation where it has one (default: "
                   "PyTorch's default)")
    b.add_argument("--keep-denormals", action="store_true",
                   help="--matrix: leave denormal floats on (by default both contenders run with "
                   "denormals flushed to zero: PyTorch slows down up to 10x on them)")
    return parser


def load_data(name, data_dir, validation_size):
    """(train, validation, test) pairs of (x, y) for a data set name."""
    from . import datasets
    if name == "digits":
        (x, y), test = datasets.load_digits_split()
        n_val = len(x) // 5
        return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:]), test
    loader = datasets.load_fashion_mnist if name == "fashion-mnist" else datasets.load_mnist
    if name == "mnist" and data_dir is None:
        raise UsageError("--dataset mnist needs --data-dir, a folder holding the MNIST IDX files")
    (x, y), test = loader(data_dir)
    if not 0 < validation_size < len(x):
        raise UsageError(f"--validation-size must be between 1 and {len(x) - 1}, got {validation_size}")
    return (x[:-validation_size], y[:-validation_size]), (x[-validation_size:], y[-validation_size:]), test


def build_model(args, sample_shape, n_classes):
    from . import models
    kwargs = dict(backend=args.backend, dtype=args.dtype, seed=args.seed)
    if args.model == "lenet5":
        return models.lenet5(in_channels=sample_shape[0], image_size=sample_shape[1:],
                             num_classes=n_classes, **kwargs)
    default_hidden = "100" if args.dataset == "digits" else "400,100"
    try:
        hidden = [int(h) for h in (args.hidden or default_hidden).split(",") if h]
    except ValueError:
        raise UsageError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
    return models.mlp([int(np.prod(sample_shape))] + hidden + [n_classes],
                      activation=args.activation, **kwargs)


def train(args):
    from . import optim
    from .losses import CrossEntropyLoss

    train_set, val_set, test_set = load_data(args.dataset, args.data_dir, args.validation_size)
    n_classes = int(train_set[1].max()) + 1
    model = build_model(args, train_set[0].shape[1:], n_classes)
    opt = optim.get(args.optimizer, model.parameters(), lr=args.lr)
    print(f"fastnn: {args.model} on {args.dataset} ({len(train_set[0])} training, "
          f"{len(val_set[0])} validation images), backend {model.backend}, {opt!r}", flush=True)
    history = model.fit(*train_set, loss=CrossEntropyLoss(), optimizer=opt, epochs=args.epochs,
                        batch_size=args.batch_size, validation_data=val_set, seed=args.seed,
                        verbose=2 if args.quiet else 1)
    test = model.evaluate(*test_set)
    n_test = len(test_set[0])
    print(f"Test: {round(test['accuracy'] * n_test)} / {n_test}, accuracy {test['accuracy']:.4f}, "
          f"loss {test['loss']:.4f}; {np.mean(history.history['time']):.2f} s per epoch")
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.npz"), optimizer=opt)
    history.to_csv(os.path.join(args.out, "history.csv"))
    history.to_json(os.path.join(args.out, "history.json"))
    history.plot(os.path.join(args.out, "curves.png"))
    print(f"wrote model.npz, history.csv, history.json, curves.png to {args.out}")
    return 0


def load_benchmark(name):
    """The module ``benchmarks/<name>.py`` of the source checkout fastnn runs from (the
    benchmarks, with their PyTorch models, are not part of the installed library)."""
    import importlib.util
    from pathlib import Path
    key = f"fastnn_benchmarks.{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    if not path.is_file():
        raise UsageError(f"fastnn bench runs the benchmarks of a source checkout ({path} is "
                         "missing); clone the repository and install it with pip install -e .")
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def bench(args):
    if args.matrix:
        return load_benchmark("matrix").main(args)
    if args.samples is None:
        args.samples = 50000
    return load_benchmark("epoch").main(args)


def main(argv=None):
    """Entry point of the ``fastnn`` console script; returns the exit status."""
    from .errors import BackendUnavailableError
    try:
        args = build_parser().parse_args(argv)
        return {"train": train, "bench": bench}[args.command](args)
    except (UsageError, ValueError, FileNotFoundError, BackendUnavailableError, FloatingPointError) as exc:
        print(f"fastnn: error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
