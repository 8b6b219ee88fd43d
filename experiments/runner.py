"""What every experiment shares: settings, data, networks, runs over seeds, and the report.

An experiment module builds :class:`Variant` objects, trains each with :func:`run_variants`
(once per seed and data set) and writes a :class:`Report`: a Markdown file with the results
table (final and best validation accuracy, mean +- standard deviation over the seeds, seconds
per epoch) beside the course texts' MNIST figures, and PNG plots made with matplotlib's Agg
canvas. Everything here uses fastnn's public API only (``import fastnn as fn``).
"""
import dataclasses
import datetime
import functools
import json
import os
import platform
from pathlib import Path
from typing import Callable, Optional

import numpy as np

import fastnn as fn

FULL = dict(epochs=30, train_size=50000, val_size=10000, seeds=(0, 1, 2))
"""The texts' budget: 30 epochs, 50 000 training and 10 000 validation images, three seeds."""

QUICK = dict(epochs=1, train_size=256, val_size=256, seeds=(0,))
"""``--quick``: a smoke run of every code path (one epoch on a few hundred images)."""


@dataclasses.dataclass
class Settings:
    """How to run the experiments (``fastnn experiment`` fills it from its options).

    out : folder; each experiment writes ``out/<name>/report.md``, its PNGs and ``runs.json``
    quick : smaller budget (``QUICK``) for smoke tests
    data_dir : folder of MNIST IDX files, or None (Fashion-MNIST only)
    backend, dtype : of every model
    epochs, train_size, val_size, seeds : None takes ``FULL`` or ``QUICK``
    batch_size : mini-batch size (the texts' 32)
    """

    out: str
    quick: bool = False
    data_dir: Optional[str] = None
    backend: Optional[str] = None
    dtype: str = "float32"
    epochs: Optional[int] = None
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    seeds: Optional[tuple] = None
    batch_size: int = 32

    def __post_init__(self):
        for key, value in (QUICK if self.quick else FULL).items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds or self.epochs < 1 or self.train_size < 1 or self.val_size < 1:
            raise ValueError("experiments need at least one seed, epoch, training and validation "
                             f"image; got seeds {self.seeds}, epochs {self.epochs}, sizes "
                             f"{self.train_size}/{self.val_size}")

    def model_kwargs(self, seed):
        """Keyword arguments of :class:`fastnn.Sequential` for a model of seed ``seed``."""
        return dict(backend=self.backend, dtype=self.dtype, seed=seed)


@dataclasses.dataclass
class Dataset:
    """One data set split for an experiment: images (N, 1, 28, 28) float32, labels (N,) int64."""

    name: str
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def standardize_per_image(x):
    """Each image shifted to mean 0 and scaled to standard deviation 1 (the texts' input
    normalisation); a constant image becomes all zeros.
    x : (N, ...) float -> float32 of the same shape."""
    x = np.asarray(x, dtype=np.float32)
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    return ((flat - mean) / np.where(std > 0, std, 1)).astype(np.float32).reshape(x.shape)


@functools.lru_cache(maxsize=2)
def _load(load, path):
    """``load(path)``, read once per process (every experiment of ``all`` uses the same files)."""
    return load(path)


def datasets(settings, train_size=None, standardize=True):
    """Fashion-MNIST, and MNIST when ``settings.data_dir`` is set, as :class:`Dataset` objects:
    the first ``train_size`` (default ``settings.train_size``) of the first 50 000 training
    images for training and the first ``settings.val_size`` of the last 10 000 for validation
    (the test sets stay untouched), each image standardised unless ``standardize`` is False."""
    train_size = settings.train_size if train_size is None else train_size
    sources = [("Fashion-MNIST", fn.datasets.load_fashion_mnist, None)]
    if settings.data_dir:
        sources.append(("MNIST", fn.datasets.load_mnist, settings.data_dir))
    out = []
    for name, load, path in sources:
        (x, y), _ = _load(load, path)
        x_train, y_train = x[:-10000][:train_size], y[:-10000][:train_size]
        x_val, y_val = x[-10000:][:settings.val_size], y[-10000:][:settings.val_size]
        if standardize:
            x_train, x_val = standardize_per_image(x_train), standardize_per_image(x_val)
        out.append(Dataset(name, x_train, y_train, x_val, y_val))
    return out


ACTIVATIONS = {"sigmoid": fn.Sigmoid, "tanh": fn.Tanh, "relu": fn.ReLU,
               "leaky_relu": fn.LeakyReLU, "prelu": fn.PReLU}


def mlp(sizes, activation="relu", init=None, output=None, dropout=0.0, maxout=0, **model_kwargs):
    """A multi-layer perceptron for images: Flatten, then Dense ``sizes[0] -> ... -> sizes[-1]``.

    Parameters
    ----------
    sizes : sequence of int, e.g. (784, 400, 100, 10)
    activation : name in ``ACTIVATIONS`` after every hidden Dense layer (ignored with maxout)
    init : weight initialiser (name or function of :mod:`fastnn.init`) of every Dense layer;
        None: each layer's default for the activation after it
    output : None (logits), "sigmoid", "softmax" or "log_softmax" after the last layer
    dropout : probability of a Dropout after every hidden activation (0: none)
    maxout : pieces of a Maxout unit per hidden unit (0: the plain activation); the hidden
        Dense layers then have ``maxout * size`` outputs
    **model_kwargs : backend, dtype, seed of :class:`fastnn.Sequential`
    """
    if activation not in ACTIVATIONS and not maxout:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    outputs = {None: None, "sigmoid": fn.Sigmoid, "softmax": fn.Softmax,
               "log_softmax": fn.LogSoftmax}
    if output not in outputs:
        raise ValueError(f"unknown output {output!r}; choose one of {list(outputs)}")
    layers = [fn.Flatten()]
    last = len(sizes) - 2
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == last:
            layers.append(fn.Dense(n_in, n_out, init=init))
            break
        layers.append(fn.Dense(n_in, n_out * (maxout or 1), init=init))
        layers.append(fn.Maxout(maxout) if maxout else ACTIVATIONS[activation]())
        if dropout:
            layers.append(fn.Dropout(dropout))
    if outputs[output] is not None:
        layers.append(outputs[output]())
    return fn.Sequential(layers, **model_kwargs)


@dataclasses.dataclass
class Variant:
    """One configuration an experiment compares.

    name : its row in the table; texts : the course texts' MNIST figure for it ("" if none)
    build : ``build(**model_kwargs) -> Sequential`` (a fresh model)
    loss : ``loss() -> Loss``; optimizer : ``optimizer(parameters) -> Optimizer``
    fit : further keyword arguments of ``fit`` (augment, ...)
    callbacks : ``callbacks(opt) -> list`` of callbacks for the fit
    train : ``train(variant, data, settings, seed) -> Run`` replacing the plain fit (bagging)
    epochs : the variant's own epoch budget (the texts' 20 for LeNet-5), or None
    """

    name: str
    build: Callable
    loss: Callable = fn.CrossEntropyLoss
    optimizer: Callable = lambda params: fn.optim.SGD(params, lr=0.1)
    texts: str = ""
    fit: dict = dataclasses.field(default_factory=dict)
    callbacks: Callable = lambda opt: []
    train: Optional[Callable] = None
    epochs: Optional[int] = None

    def epochs_for(self, settings):
        """The settings' epochs, capped at this variant's own budget when it has one."""
        return settings.epochs if self.epochs is None else min(settings.epochs, self.epochs)


@dataclasses.dataclass
class Run:
    """One trained seed of one variant on one data set: its per-epoch ``history`` (fastnn's
    History keys), the final and best validation accuracy and the mean seconds per epoch."""

    variant: str
    dataset: str
    seed: int
    history: dict
    final: float
    best: float
    seconds_per_epoch: float

    @classmethod
    def from_history(cls, variant, dataset, seed, history, final=None):
        h = {k: [float(v) for v in values] for k, values in history.history.items()}
        val = h.get("val_accuracy", [float("nan")])
        return cls(variant, dataset, seed, h, val[-1] if final is None else final, max(val),
                   float(np.mean(h["time"])))


def fit_variant(variant, data, settings, seed):
    """Train ``variant`` once on ``data`` with ``seed``; returns its :class:`Run`, whose final
    accuracy is the trained model's on the validation set (after any restore of the best
    weights by early stopping)."""
    if variant.train is not None:
        return variant.train(variant, data, settings, seed)
    model = variant.build(**settings.model_kwargs(seed))
    opt = variant.optimizer(model.parameters())
    history = model.fit(data.x, data.y, loss=variant.loss(), optimizer=opt,
                        epochs=variant.epochs_for(settings), batch_size=settings.batch_size,
                        validation_data=(data.x_val, data.y_val), seed=seed, verbose=0,
                        callbacks=variant.callbacks(opt), **variant.fit)
    final = model.evaluate(data.x_val, data.y_val)["accuracy"]
    return Run.from_history(variant.name, data.name, seed, history, final)


def run_variants(variants, data_sets, settings, log=print):
    """Every variant on every data set for every seed of ``settings``; list of :class:`Run`."""
    runs = []
    for data in data_sets:
        for variant in variants:
            for seed in settings.seeds:
                run = fit_variant(variant, data, settings, seed)
                log(f"  {data.name} | {variant.name} | seed {seed}: final {run.final:.4f}, "
                    f"best {run.best:.4f}, {run.seconds_per_epoch:.2f} s/epoch")
                runs.append(run)
    return runs


def spread(values, scale=100.0, digits=2):
    """'mean +- std (min-max)' of ``values`` times ``scale`` ("mean" alone for one value)."""
    v = np.asarray(values, dtype=np.float64) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    f = f".{digits}f"
    return f"{v.mean():{f}} ± {v.std(ddof=1):{f}} ({v.min():{f}}–{v.max():{f}})"


def machine_line():
    """CPU model, cores, fastnn threads, Python / NumPy / fastnn versions, OPENBLAS_CORETYPE."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {fn.get_num_threads()} fastnn threads, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, fastnn {fn.__version__}, "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")


def group(runs):
    """Runs grouped by (data set, variant), in first-seen order: {(dataset, variant): [Run]}."""
    groups = {}
    for run in runs:
        groups.setdefault((run.dataset, run.variant), []).append(run)
    return groups


def series(run, key):
    """History ``key`` of ``run``, or ``key(history)`` for a function."""
    return key(run.history) if callable(key) else run.history[key]


def train_val_gap(history):
    """Training minus validation accuracy per epoch."""
    return np.subtract(history["accuracy"], history["val_accuracy"])


def mean_curve(runs, key):
    """(epochs, mean, min, max) over the runs of history ``key`` (a name or a function of the
    history, see :func:`series`), the runs cut to the shortest."""
    n = min(len(series(r, key)) for r in runs)
    values = np.array([series(r, key)[:n] for r in runs])
    return np.arange(1, n + 1), values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def figure(path, draw, panels=1, width=6.0, height=4.2):
    """Make a figure of ``panels`` axes side by side, ``draw(axes)`` on it, save it as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    draw(axes)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)


def curve_panel(ax, runs, key, ylabel, x="epoch", style="-"):
    """One line per variant of ``key`` per epoch (or against cumulative seconds with
    ``x="seconds"``), the mean over seeds with the min-max band shaded."""
    for (dataset, variant), rs in group(runs).items():
        if not callable(key) and not all(key in r.history for r in rs):
            continue
        epochs, mean, lo, hi = mean_curve(rs, key)
        xs = epochs if x == "epoch" else np.cumsum(mean_curve(rs, "time")[1])[:len(epochs)]
        line, = ax.plot(xs, mean, style, marker="o", markersize=3, label=variant)
        if len(rs) > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch" if x == "epoch" else "training seconds")
    ax.set_ylabel(ylabel)


class Report:
    """A Markdown report with tables and PNG plots, written to ``settings.out/<name>/``."""

    def __init__(self, name, title, settings, intro=""):
        self.name, self.settings = name, settings
        self.folder = Path(settings.out) / name
        self.folder.mkdir(parents=True, exist_ok=True)
        s = settings
        be = fn.get_backend(s.backend).NAME
        self.lines = [f"# {title}", "", intro, "",
                      f"- run: `fastnn experiment {name}{' --quick' if s.quick else ''}` on "
                      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
                      f"- backend {be}, {s.dtype}, batch {s.batch_size}, epochs {s.epochs}, "
                      f"{s.train_size} training / {s.val_size} validation images (the last "
                      "10 000 training images are the validation pool; test sets unused), "
                      f"seeds {', '.join(map(str, s.seeds))}",
                      f"- machine: {machine_line()}", ""]
        self.runs = []

    def text(self, markdown):
        self.lines += [markdown, ""]

    def table(self, headers, rows):
        self.lines.append("| " + " | ".join(headers) + " |")
        self.lines.append("|" + "---|" * len(headers))
        self.lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        self.lines.append("")

    def plot(self, filename, caption, draw, panels=1):
        """A PNG made by ``draw(axes)``, linked from the report."""
        figure(self.folder / filename, draw, panels)
        self.lines += [f"![{caption}]({filename})", "", f"*{caption}*", ""]

    def results(self, runs, texts=None, gap=False, tag=""):
        """The accuracy table of ``runs`` (validation accuracy in %, mean ± std (min–max)
        over seeds) with the texts' MNIST figures, and per data set a plot of validation
        accuracy and training loss per epoch per variant (``gap``: also train - validation
        accuracy), named ``<experiment>[_<tag>]_<data set>.png``."""
        self.runs += runs
        texts = texts or {}
        rows = []
        for (dataset, variant), rs in group(runs).items():
            train_acc = [r.history["accuracy"][-1] for r in rs if "accuracy" in r.history]
            rows.append([dataset, variant, len(rs), spread([r.final for r in rs]),
                         spread([r.best for r in rs]),
                         spread(train_acc) if train_acc else "",
                         f"{np.mean([r.seconds_per_epoch for r in rs]):.2f}",
                         texts.get(variant, "")])
        self.table(["data", "variant", "seeds", "final val acc %", "best val acc %",
                    "final train acc %", "s / epoch", "texts (MNIST)"], rows)
        for dataset in dict.fromkeys(r.dataset for r in runs):
            rs = [r for r in runs if r.dataset == dataset]
            slug = dataset.lower().replace("-", "_")

            def draw(axes, rs=rs):
                curve_panel(axes[0], rs, "val_accuracy", "validation accuracy")
                curve_panel(axes[1], rs, "loss", "training loss")
                axes[1].set_yscale("log")
                if gap:
                    curve_panel(axes[2], rs, train_val_gap, "train - validation accuracy")
                for ax in axes:
                    ax.set_title(dataset)
            name = f"{self.name}{'_' + tag if tag else ''}_{slug}.png"
            self.plot(name, f"{dataset}: validation accuracy and training loss per epoch (mean "
                      "over seeds, band: min-max)", draw, 3 if gap else 2)

    def write(self):
        """Write report.md and runs.json (every run's history); returns the report's path."""
        path = self.folder / "report.md"
        path.write_text("\n".join(self.lines).rstrip() + "\n")
        (self.folder / "runs.json").write_text(
            json.dumps([dataclasses.asdict(r) for r in self.runs], indent=1))
        return path
