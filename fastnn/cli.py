"""The ``fastnn`` command line: ``fastnn train ...``, ``fastnn bench ...`` and
``fastnn experiment NAME|all`` (the course texts' experiments, :mod:`fastnn.experiments`).

Errors in the arguments or the data are printed as one line on stderr (no traceback) and the
command exits with status 2.
"""
import argparse
import os
import sys

import numpy as np

DATASETS = ("digits", "fashion-mnist", "mnist")
MODELS = ("mlp", "lenet5")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adadelta")


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
    add_training_options(t)
    t.add_argument("--out", default="runs/latest", help="folder for model.npz, history.csv/.json, curves.png")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run whose checkpoint is PATH (OUT/checkpoint.npz is written "
                   "after every epoch) up to --epochs, exactly as if it had not stopped; the "
                   "model comes from the file, the other options must be those of that run")

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
    add_experiment_parser(sub)
    return parser


LOSSES = ("cross_entropy", "mse", "bce_with_logits", "nll")
OUTPUTS = ("auto", "none", "sigmoid", "softmax", "log_softmax")
AUTO_OUTPUT = {"mse": "sigmoid", "nll": "log_softmax"}


def add_training_options(t):
    """The options of ``train`` for what the course texts vary: cost, output units,
    initialisation, regularisation, optimizer options, input scaling, seeds, epoch line."""
    t.add_argument("--loss", choices=LOSSES, default="cross_entropy",
                   help="cost; mse and bce_with_logits take the integer labels one-hot")
    t.add_argument("--output", choices=OUTPUTS, default="auto",
                   help="layer after the last Dense (auto: sigmoid for mse, log_softmax for nll, "
                   "none otherwise)")
    t.add_argument("--init", default=None,
                   help="weight initialiser of every Dense layer of the MLP: a name of "
                   "fastnn.init (xavier, lecun, he, ...) or normal:STD (normal:1 is the texts' "
                   "normal(0, 1)); default: each layer's default for its activation")
    t.add_argument("--dropout", type=float, default=0.0, help="Dropout after every hidden layer")
    t.add_argument("--l2", type=float, default=0.0, help="L2 penalty (the optimizer's weight_decay)")
    t.add_argument("--lr-decay", type=float, default=None, metavar="GAMMA",
                   help="multiply the learning rate by GAMMA after every epoch")
    t.add_argument("--momentum", type=float, default=None, help="sgd, momentum, nesterov, rmsprop")
    t.add_argument("--betas", default=None, metavar="B1,B2", help="adam, adamw")
    t.add_argument("--alpha", type=float, default=None, help="rmsprop's decay rate")
    t.add_argument("--eps", type=float, default=None,
                   help="adagrad, rmsprop, adam, adamw, adadelta")
    t.add_argument("--standardize", choices=("none", "per-image"), default="none",
                   help="per-image: shift and scale each image to mean 0, standard deviation 1")
    t.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="train once per seed (into OUT/seed-S) and print the mean and spread")
    t.add_argument("--log-format", choices=("default", "thesis"), default="default",
                   help="thesis: the texts' line 'epoch: %%2d | acc: %%2.2f%%%% | loss: %%.5f' "
                   "(validation accuracy, training loss)")


def add_experiment_parser(sub):
    from .experiments import NAMES
    e = sub.add_parser("experiment", help="run a course-text experiment (or all) and write its "
                       "Markdown report with plots")
    e.add_argument("name", choices=NAMES + ("all",))
    e.add_argument("--quick", action="store_true",
                   help="smoke run: 1 epoch on 256 training / 256 validation images, seed 0")
    e.add_argument("--data-dir", default=None, help="folder of MNIST IDX files (also run on MNIST)")
    e.add_argument("--out", default="runs/experiments", help="folder for the reports")
    e.add_argument("--backend", choices=("numpy", "cpu", "cuda"), default=None)
    e.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    e.add_argument("--seeds", default=None, metavar="S1,S2,...", help="default 0,1,2 (--quick 0)")
    e.add_argument("--epochs", type=int, default=None, help="default 30 (--quick 1)")
    e.add_argument("--train-size", type=int, default=None, help="default 50000 (--quick 256)")
    e.add_argument("--val-size", type=int, default=None, help="default 10000 (--quick 256)")


def parse_seeds(text):
    """'0,1,2' -> (0, 1, 2); UsageError on anything else."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {text!r}") from None
    return seeds


def parse_init(text):
    """The initialiser of ``--init``: a fastnn.init name or ``normal:STD``; None stays None."""
    from . import init
    if text is None:
        return None
    if text.startswith("normal:"):
        try:
            return init.normal(std=float(text.split(":", 1)[1]))
        except ValueError:
            raise UsageError(f"--init normal:STD needs a number, got {text!r}") from None
    try:
        return init.get(text)
    except ValueError as exc:
        raise UsageError(f"--init: {exc}") from None


def standardize(splits, how):
    """The (x, y) pairs of ``splits`` with each image standardised when ``how`` is per-image."""
    if how == "none":
        return splits
    from .experiments.runner import standardize_per_image
    return tuple((standardize_per_image(x), y) for x, y in splits)


def make_optimizer(args, params):
    """The optimizer of ``--optimizer`` with ``--lr``, ``--l2`` and the options given."""
    from . import optim
    kwargs = {k: getattr(args, k) for k in ("momentum", "alpha", "eps")
              if getattr(args, k) is not None}
    if args.betas is not None:
        try:
            kwargs["betas"] = tuple(float(b) for b in args.betas.split(","))
        except ValueError:
            kwargs["betas"] = ()
        if len(kwargs["betas"]) != 2:
            raise UsageError(f"--betas must be two numbers B1,B2, got {args.betas!r}")
    if args.l2:
        kwargs["weight_decay"] = args.l2
    try:
        return optim.get(args.optimizer, params, lr=args.lr, **kwargs)
    except TypeError:
        given = ", ".join("--" + k.replace("weight_decay", "l2") for k in kwargs)
        raise UsageError(f"--optimizer {args.optimizer} does not take all of {given}") from None


def make_loss(args):
    from . import losses
    return losses.get(args.loss)


def thesis_line(epoch, logs):
    """The texts' epoch line ``epoch: %2d | acc: %2.2f%% | loss: %.5f``: validation accuracy
    (training accuracy without validation data) in percent, training loss."""
    acc = logs.get("val_accuracy", logs.get("accuracy", float("nan")))
    return "epoch: %2d | acc: %2.2f%% | loss: %.5f" % (epoch, 100 * acc, logs["loss"])


def extra_callbacks(args, opt):
    """Callbacks for ``--lr-decay`` and ``--log-format thesis``."""
    from .callbacks import Callback, LearningRateScheduler
    from .optim import ExponentialDecay

    class ThesisLog(Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(thesis_line(epoch, logs), flush=True)

    out = []
    if args.lr_decay is not None:
        out.append(LearningRateScheduler(ExponentialDecay(opt, args.lr_decay)))
    if args.log_format == "thesis":
        out.append(ThesisLog())
    return out


def train_seeds(args):
    """``train`` once, or once per seed of ``--seeds`` into OUT/seed-S with the mean and
    spread of the test accuracy printed at the end."""
    if args.seeds is None:
        return train(args)
    seeds, out, accuracies = parse_seeds(args.seeds), args.out, []
    for seed in seeds:
        args.seed, args.out = seed, os.path.join(out, f"seed-{seed}")
        train(args)
        accuracies.append(args.test["accuracy"])
    acc = 100 * np.array(accuracies)
    spread = (f" ± {acc.std(ddof=1):.2f} (min {acc.min():.2f}, max {acc.max():.2f})"
              if len(acc) > 1 else "")
    print(f"Seeds {args.seeds}: test accuracy {acc.mean():.2f}%{spread}")
    return 0


def experiment(args):
    from . import experiments
    settings = experiments.Settings(
        out=args.out, quick=args.quick, data_dir=args.data_dir, backend=args.backend,
        dtype=args.dtype, epochs=args.epochs, train_size=args.train_size, val_size=args.val_size,
        seeds=None if args.seeds is None else parse_seeds(args.seeds))
    for path in experiments.run(args.name, settings, log=lambda line: print(line, flush=True)):
        print(f"report: {path}")
    return 0


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
    output = AUTO_OUTPUT.get(args.loss) if args.output == "auto" else args.output
    if args.model == "lenet5":
        if args.init is not None or args.dropout or output not in (None, "none"):
            raise UsageError("--init, --dropout and --output apply to --model mlp only")
        return models.lenet5(in_channels=sample_shape[0], image_size=sample_shape[1:],
                             num_classes=n_classes, **kwargs)
    default_hidden = "100" if args.dataset == "digits" else "400,100"
    try:
        hidden = [int(h) for h in (args.hidden or default_hidden).split(",") if h]
    except ValueError:
        raise UsageError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
    from .experiments.runner import mlp
    return mlp([int(np.prod(sample_shape))] + hidden + [n_classes], activation=args.activation,
               init=parse_init(args.init), output=None if output == "none" else output,
               dropout=args.dropout, **kwargs)


def train(args):
    from .callbacks import ModelCheckpoint
    from .model import Sequential

    train_set, val_set, test_set = standardize(
        load_data(args.dataset, args.data_dir, args.validation_size), args.standardize)
    n_classes = int(train_set[1].max()) + 1
    if args.resume is None:
        model = build_model(args, train_set[0].shape[1:], n_classes)
    else:
        model = Sequential.load(args.resume, backend=args.backend)
        if model.training_state is None:
            raise UsageError(f"--resume {args.resume}: the file holds no training state "
                             "(write it with fastnn train, or ModelCheckpoint(optimizer=...))")
    opt = make_optimizer(args, model.parameters())
    initial_epoch = 0
    if args.resume is not None:
        model.load_optimizer_state(args.resume, opt)
        initial_epoch = model.training_state.epoch
        print(f"fastnn: resuming {args.resume} after epoch {initial_epoch}", flush=True)
    print(f"fastnn: {args.model} on {args.dataset} ({len(train_set[0])} training, "
          f"{len(val_set[0])} validation images), backend {model.backend}, {opt!r}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    checkpoint = ModelCheckpoint(os.path.join(args.out, "checkpoint.npz"), optimizer=opt)
    history = model.fit(*train_set, loss=make_loss(args), optimizer=opt, epochs=args.epochs,
                        batch_size=args.batch_size, validation_data=val_set, seed=args.seed,
                        verbose=0 if args.log_format == "thesis" else 2 if args.quiet else 1,
                        callbacks=[checkpoint] + extra_callbacks(args, opt),
                        initial_epoch=initial_epoch)
    test = args.test = model.evaluate(*test_set)
    n_test = len(test_set[0])
    print(f"Test: {round(test['accuracy'] * n_test)} / {n_test}, accuracy {test['accuracy']:.4f}, "
          f"loss {test['loss']:.4f}; {np.mean(history.history['time']):.2f} s per epoch")
    model.save(os.path.join(args.out, "model.npz"), optimizer=opt)
    history.to_csv(os.path.join(args.out, "history.csv"))
    history.to_json(os.path.join(args.out, "history.json"))
    history.plot(os.path.join(args.out, "curves.png"))
    print(f"wrote model.npz, checkpoint.npz, history.csv, history.json, curves.png to {args.out}")
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
        return {"train": train_seeds, "bench": bench, "experiment": experiment}[args.command](args)
    except (UsageError, ValueError, FileNotFoundError, BackendUnavailableError, FloatingPointError) as exc:
        print(f"fastnn: error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
