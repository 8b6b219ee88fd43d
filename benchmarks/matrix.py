"""The benchmark matrix (issue 14 item 7): many fastnn cases, each against PyTorch CPU, in one run.

    fastnn bench --matrix [--samples 10000] [--repeat 3] [--threads 2] [--cases adam]
                          [--quick] [--json results.json] [--markdown]
    python benchmarks/matrix.py --threads 2 --quick          # the same, standalone

Every case is a model, an optimizer, a batch size, a dtype and a mode (one training epoch, or
``predict`` over the images), built twice from one description: once with fastnn's public API
and once as the equivalent ``torch.nn`` model. Both see the same images (Fashion-MNIST, the
first ``--samples`` training images) in the same order (fastnn's ``fit(seed=r)`` shuffles with
``np.random.default_rng(r).permutation(n)``, and the PyTorch loop uses that permutation), with
the same thread count. The two contenders of a case take turns, one epoch each per round, for
``--repeat`` rounds, and each keeps its best time; before every timed epoch the benchmark sleeps
0.3 s so that the other framework's idle pool threads have gone to sleep (as benchmarks/epoch.py
does, see its ``run``).

- fastnn training: ``model.fit(x, y, loss=CrossEntropyLoss(), optimizer=opt, epochs=1,
  batch_size=bs, verbose=0, seed=r)`` after a warm-up ``fit`` on two batches and the epoch's
  last partial batch (JIT compile, allocation); the time is ``History["time"]``, the training
  loop of the epoch (``fit``'s own wall time, setup included, is kept in the JSON as
  ``fit_seconds``).
- PyTorch training: the plain loop (``zero_grad``, forward, loss, ``backward``, ``step``),
  without the loss/accuracy bookkeeping ``fit`` does (so conservative for fastnn), optimizers
  with PyTorch's defaults (``--torch-optim fused|foreach`` picks those implementations where
  the optimizer has them).
- Inference: ``model.predict(x, batch_size=256)`` against ``net.eval()`` under
  ``torch.no_grad()`` in batches of 256 rows into one preallocated output.

The table gives, per case, both times, the ratio fastnn / PyTorch (below 1: fastnn is faster)
and, for the compute-bound cases, fastnn's GFLOP/s and its fraction of this machine's GEMM
peak (a large NumPy matmul of the case's dtype with OpenBLAS's threads at the thread setting,
as ``sgemm_peak`` in benchmarks/epoch.py); then the geometric mean of the ratios and the worst
case, and the optimizer-step table of benchmarks/bench_optim.py. FLOPs come from the model's
layers (:func:`flops_per_sample`; training counts 3x the forward pass).
"""
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

import fastnn as fn

SETTLE_SECONDS = 0.3          # pause before each timed epoch (see benchmarks/epoch.py run)
PREDICT_BATCH = 256           # rows per forward pass in inference, both contenders
QUICK_SAMPLES = 512
TRAIN_FLOPS_FACTOR = 3        # forward + input gradient + weight gradient


# -- the cases ---------------------------------------------------------------------------------

def mlp_arch(sizes=(784, 400, 100, 10), act="relu", dropout=0.0, batchnorm=False):
    """Layer description of an MLP (Flatten first): Dense [BatchNorm] act [Dropout] ..."""
    arch = [("flatten",)]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        arch.append(("dense", n_in, n_out))
        if i < len(sizes) - 2:
            if batchnorm:
                arch.append(("batchnorm", n_out))
            arch.append((act,))
            if dropout:
                arch.append(("dropout", dropout))
    return tuple(arch)


LENET5 = (("conv", 1, 6, 5, 2), ("relu",), ("maxpool", 2), ("conv", 6, 16, 5, 0), ("relu",),
          ("maxpool", 2), ("flatten",), ("dense", 400, 120), ("relu",), ("dense", 120, 84),
          ("relu",), ("dense", 84, 10))
CNN_32_64 = (("conv", 1, 32, 3, 1), ("relu",), ("maxpool", 2), ("conv", 32, 64, 3, 1), ("relu",),
             ("maxpool", 2), ("flatten",), ("dropout", 0.25), ("dense", 3136, 128), ("relu",),
             ("dropout", 0.5), ("dense", 128, 10))
SEPARABLE_CNN = (("conv", 1, 16, 3, 1), ("relu",), ("maxpool", 2), ("sepconv", 16, 32, 3, 1),
                 ("relu",), ("maxpool", 2), ("sepconv", 32, 64, 3, 1), ("relu",), ("gap",),
                 ("dense", 64, 10))
LSTM_128 = (("lstm", 28, 128), ("dense", 128, 10))     # sequential Fashion-MNIST: 28 steps of 28
MLP = mlp_arch()
WIDE_MLP = mlp_arch((784, 1024, 1024, 10))

# name -> (fastnn class name in fn.optim, PyTorch class name in torch.optim, keyword arguments);
# the keyword arguments mean the same in both (fastnn follows PyTorch's names and defaults)
OPTIMIZERS = {
    "sgd": ("SGD", "SGD", dict(lr=0.1)),
    "momentum": ("SGD", "SGD", dict(lr=0.05, momentum=0.9)),
    "nesterov": ("SGD", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "sgd-wd": ("SGD", "SGD", dict(lr=0.1, weight_decay=5e-4)),
    "adagrad": ("AdaGrad", "Adagrad", dict(lr=0.01)),
    "rmsprop": ("RMSProp", "RMSprop", dict(lr=1e-3)),
    "adam": ("Adam", "Adam", dict(lr=1e-3)),
    "amsgrad": ("Adam", "Adam", dict(lr=1e-3, amsgrad=True)),
    "adamw": ("AdamW", "AdamW", dict(lr=1e-3, weight_decay=0.01)),
}


@dataclass(frozen=True)
class Case:
    """One row of the matrix.

    arch: layer description (tuples, see :func:`build_fastnn` / :func:`build_torch`);
    builder: "mlp" / "lenet5" to build the fastnn model with fn.models (the description must be
    that model's), None for fn.Sequential from the description; mode: "train" or "predict";
    sequence: the images go in as (N, 28, 28) sequences (28 steps of 28 pixels);
    compute_bound: GFLOP/s and fraction of peak are reported (cases dominated by GEMM/conv
    arithmetic: wide layers, batches of 128 and more, the conv nets, inference).
    """
    name: str
    arch: tuple
    optimizer: str = "sgd"
    batch_size: int = 32
    dtype: str = "float32"
    mode: str = "train"
    compute_bound: bool = False
    sequence: bool = False        # each image as a sequence (N, 28, 28): 28 steps of 28 pixels
    builder: str = None
    builder_kwargs: dict = field(default_factory=dict, hash=False, compare=False)


CASES = (
    # the cases of issue 14
    Case("MLP SGD b32", MLP, builder="mlp"),
    Case("MLP Nesterov b32", MLP, "nesterov", builder="mlp"),
    Case("MLP tanh SGD b32", mlp_arch(act="tanh"), builder="mlp", builder_kwargs={"activation": "tanh"}),
    Case("MLP SGD b128", MLP, batch_size=128, compute_bound=True, builder="mlp"),
    Case("MLP SGD b1024", MLP, batch_size=1024, compute_bound=True, builder="mlp"),
    Case("MLP SGD b32 float64", MLP, dtype="float64", builder="mlp"),
    Case("MLP Adam b32", MLP, "adam", builder="mlp"),
    Case("MLP Dropout Adam b32", mlp_arch(dropout=0.2), "adam"),
    Case("MLP BatchNorm Adam b32", mlp_arch(batchnorm=True), "adam"),
    Case("wide MLP 1024-1024 Adam b128", WIDE_MLP, "adam", 128, compute_bound=True, builder="mlp"),
    Case("MLP RMSProp b32", MLP, "rmsprop", builder="mlp"),
    Case("MLP AdaGrad b32", MLP, "adagrad", builder="mlp"),
    Case("MLP AdamW b32", MLP, "adamw", builder="mlp"),
    Case("LeNet-5 SGD b32", LENET5, builder="lenet5"),
    Case("LeNet-5 Adam b128", LENET5, "adam", 128, compute_bound=True, builder="lenet5"),
    Case("CNN 32/64 Dropout Adam b128", CNN_32_64, "adam", 128, compute_bound=True),
    Case("predict MLP", MLP, batch_size=PREDICT_BATCH, mode="predict", compute_bound=True, builder="mlp"),
    Case("predict LeNet-5", LENET5, batch_size=PREDICT_BATCH, mode="predict", compute_bound=True,
         builder="lenet5"),
    # more: optimizers x regularisers x batch sizes x dtypes x models x inference
    Case("MLP momentum b32", MLP, "momentum", builder="mlp"),
    Case("MLP SGD weight decay b32", MLP, "sgd-wd", builder="mlp"),
    Case("MLP AMSGrad b32", MLP, "amsgrad", builder="mlp"),
    Case("MLP sigmoid SGD b32", mlp_arch(act="sigmoid"), builder="mlp",
         builder_kwargs={"activation": "sigmoid"}),
    Case("MLP Adam b128", MLP, "adam", 128, compute_bound=True, builder="mlp"),
    Case("MLP Adam b32 float64", MLP, "adam", dtype="float64", builder="mlp"),
    Case("MLP Dropout BatchNorm Adam b128", mlp_arch(dropout=0.2, batchnorm=True), "adam", 128),
    Case("LeNet-5 SGD b32 float64", LENET5, dtype="float64", builder="lenet5"),
    Case("CNN 32/64 SGD b32", CNN_32_64, "sgd", 32, compute_bound=True),
    Case("predict MLP float64", MLP, batch_size=PREDICT_BATCH, dtype="float64", mode="predict",
         compute_bound=True, builder="mlp"),
    Case("predict wide MLP", WIDE_MLP, batch_size=PREDICT_BATCH, mode="predict", compute_bound=True,
         builder="mlp"),
    Case("predict CNN 32/64", CNN_32_64, batch_size=PREDICT_BATCH, mode="predict", compute_bound=True),
    # layers added later (issues 16 and 20)
    Case("separable CNN SGD b64", SEPARABLE_CNN, "sgd", 64),
    Case("LSTM-128 Adam b128", LSTM_128, "adam", 128, sequence=True),
    Case("predict LSTM-128", LSTM_128, batch_size=PREDICT_BATCH, mode="predict", sequence=True),
)


def select(cases, patterns):
    """The cases whose name contains any of ``patterns`` (case-insensitive); all without."""
    if not patterns:
        return list(cases)
    pats = [p.lower() for p in patterns]
    return [c for c in cases if any(p in c.name.lower() for p in pats)]


# -- building both sides -----------------------------------------------------------------------

def _dense_sizes(arch):
    return [arch[i][1] for i in range(len(arch)) if arch[i][0] == "dense"] + \
           [[a for a in arch if a[0] == "dense"][-1][2]]


def build_fastnn(case, seed=0):
    """The case's fastnn model on the cpu backend (numpy where cpu is unavailable)."""
    backend = "cpu" if "cpu" in fn.available_backends() else "numpy"
    kwargs = dict(backend=backend, dtype=case.dtype, seed=seed)
    if case.builder == "mlp":
        return fn.models.mlp(_dense_sizes(case.arch), **case.builder_kwargs, **kwargs)
    if case.builder == "lenet5":
        return fn.models.lenet5(**case.builder_kwargs, **kwargs)
    make = {"flatten": lambda: fn.Flatten(), "relu": lambda: fn.ReLU(), "tanh": lambda: fn.Tanh(),
            "sigmoid": lambda: fn.Sigmoid(),
            "dense": lambda i, o: fn.Dense(i, o), "batchnorm": lambda n: fn.BatchNorm(n),
            "dropout": lambda p: fn.Dropout(p), "maxpool": lambda k: fn.MaxPool2D(k),
            "conv": lambda ci, co, k, pad: fn.Conv2D(ci, co, k, padding=pad),
            "sepconv": lambda ci, co, k, pad: fn.SeparableConv2D(ci, co, k, padding=pad),
            "gap": lambda: fn.GlobalAvgPool2D(), "lstm": lambda f, h: fn.LSTM(f, h)}
    return fn.Sequential([make[a[0]](*a[1:]) for a in case.arch], **kwargs)


def build_torch(case, seed=0):
    import torch
    nn = torch.nn
    torch.manual_seed(seed)
    make = {"flatten": nn.Flatten, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
            "dense": nn.Linear, "batchnorm": nn.BatchNorm1d, "dropout": nn.Dropout,
            "maxpool": nn.MaxPool2d,
            "conv": lambda ci, co, k, pad: nn.Conv2d(ci, co, k, padding=pad),
            "sepconv": lambda ci, co, k, pad: nn.Sequential(      # Keras's form, as fastnn's
                nn.Conv2d(ci, ci, k, padding=pad, groups=ci, bias=False), nn.Conv2d(ci, co, 1)),
            "gap": lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            "lstm": lambda f, h: _LastStep(nn.LSTM(f, h, batch_first=True))}
    net = nn.Sequential(*[make[a[0]](*a[1:]) for a in case.arch])
    return net.to(getattr(torch, case.dtype))


def _LastStep(rnn):
    """A torch module running ``rnn`` (batch first) and keeping its last step's output, as
    fastnn's recurrent layers do with ``return_sequences=False``."""
    import torch

    class LastStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0][:, -1]
    return LastStep()


def fastnn_optimizer(case, model):
    cls, _, kwargs = OPTIMIZERS[case.optimizer]
    return getattr(fn.optim, cls)(model.parameters(), **kwargs)


def torch_optimizer(case, net, impl="default"):
    import torch
    _, cls, kwargs = OPTIMIZERS[case.optimizer]
    cls = getattr(torch.optim, cls)
    if impl != "default":
        try:
            return cls(net.parameters(), **kwargs, **{impl: True})
        except (TypeError, RuntimeError, ValueError):
            pass                      # this optimizer has no such implementation on the CPU
    return cls(net.parameters(), **kwargs)


def torch_param_count(net):
    return sum(p.numel() for p in net.parameters())


def flops_per_sample(model, sample_shape, mode="train"):
    """Multiply-adds x 2 of one sample's forward pass through ``model``'s Dense and Conv2D
    layers (Dense 2*in*out, Conv2D 2*C*kh*kw*F*OH*OW; other layers are not counted), times
    :data:`TRAIN_FLOPS_FACTOR` for training. Shapes follow each layer's ``output_shape``."""
    shape, total = tuple(sample_shape), 0
    for layer in model.layers:
        out = layer.output_shape(shape)
        if isinstance(layer, fn.Dense):
            total += 2 * layer.in_features * layer.out_features
        elif isinstance(layer, fn.Conv2D):
            kh, kw = layer.kernel_size
            total += 2 * layer.in_channels * kh * kw * layer.out_channels * out[1] * out[2]
        shape = out
    assert shape == tuple(model.output_shape(sample_shape))
    return total * (TRAIN_FLOPS_FACTOR if mode == "train" else 1)


# -- the contenders: callables epoch(r) -> seconds ---------------------------------------------

def fastnn_contender(case, x, y, seed=0):
    """(``epoch(r)``, info): the seconds of one epoch (or predict) of the case's fastnn model,
    compiled and allocated here; info says whether ``fit`` ran its compiled epoch."""
    model = build_fastnn(case, seed)
    info = {"parameters": sum(p.size for p in model.parameters())}
    if case.mode == "predict":
        model.predict(x[:2 * PREDICT_BATCH + len(x) % PREDICT_BATCH], batch_size=PREDICT_BATCH)

        def predict(r):
            start = time.perf_counter()
            model.predict(x, batch_size=PREDICT_BATCH)
            return time.perf_counter() - start
        return predict, info

    opt = fastnn_optimizer(case, model)
    loss = fn.CrossEntropyLoss()
    bs = case.batch_size
    warm = min(len(x), 2 * bs + len(x) % bs)           # two batches and the last partial one
    try:                                               # the compiled epoch, or why not
        model.fit(x[:warm], y[:warm], loss=loss, optimizer=opt, epochs=1, batch_size=bs,
                  verbose=0, seed=seed, compiled=True)
        info["path"] = "compiled"
    except (ValueError, TypeError) as exc:
        info["path"] = "loop"
        info["why_not_compiled"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        model.fit(x[:warm], y[:warm], loss=loss, optimizer=opt, epochs=1, batch_size=bs,
                  verbose=0, seed=seed)

    def epoch(r):
        start = time.perf_counter()
        h = model.fit(x, y, loss=loss, optimizer=opt, epochs=1, batch_size=bs, verbose=0, seed=r)
        wall = time.perf_counter() - start
        info["fit_seconds"] = min(info.get("fit_seconds", np.inf), wall)
        return h.history["time"][0]

    return epoch, info


def torch_contender(case, x, y, n_threads, seed=0, optim_impl="default"):
    """(``epoch(r)``, info) of the equivalent PyTorch CPU model, or (None, None) without torch."""
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(n_threads)
    net = build_torch(case, seed)
    info = {"parameters": torch_param_count(net)}
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    if case.mode == "predict":
        net.eval()
        with torch.no_grad():
            out = torch.empty((len(x),) + tuple(net(xt[:1]).shape[1:]), dtype=xt.dtype)

        def forward(n):
            net.eval()
            with torch.no_grad():
                for s in range(0, n, PREDICT_BATCH):
                    e = min(s + PREDICT_BATCH, n)
                    out[s:e] = net(xt[s:e])

        forward(min(len(x), 2 * PREDICT_BATCH + len(x) % PREDICT_BATCH))

        def predict(r):
            torch.set_num_threads(n_threads)
            start = time.perf_counter()
            forward(len(x))
            return time.perf_counter() - start
        return predict, info

    opt = torch_optimizer(case, net, optim_impl)
    info["optimizer"] = type(opt).__name__ + "".join(
        f" {k}" for k in ("fused", "foreach") if opt.defaults.get(k))
    loss_fn = torch.nn.CrossEntropyLoss()
    bs = case.batch_size

    def train(order):
        net.train()
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    warm = min(len(x), 2 * bs + len(x) % bs)
    train(torch.arange(warm))

    def epoch(r):
        torch.set_num_threads(n_threads)
        order = torch.from_numpy(np.random.default_rng(r).permutation(len(x)))
        start = time.perf_counter()
        train(order)
        return time.perf_counter() - start

    return epoch, info


# -- running and reporting ---------------------------------------------------------------------

def gemm_peak(dtype="float32", size=1024, repeat=5):
    """GFLOP/s of a large square matmul of ``dtype`` with OpenBLAS's threads at the thread
    setting (benchmarks/epoch.py ``sgemm_peak`` for any dtype)."""
    use_pool = getattr(fn.threads, "use_pool", None)
    if use_pool is not None:
        use_pool("blas")
    a = np.random.default_rng(0).random((size, size)).astype(dtype)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        np.matmul(a, a, out=c)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def load_data(samples, data_dir=None):
    (x, y), _ = fn.datasets.load_fashion_mnist(data_dir)
    return np.ascontiguousarray(x[:samples]), np.ascontiguousarray(y[:samples])


def run(cases=None, samples=10000, repeat=3, n_threads=None, torch=True, data_dir=None,
        settle=SETTLE_SECONDS, optim_impl="default", data=None, log=None):
    """Time every case; returns a list of row dicts (see :func:`make_row`).

    Per case the two contenders take turns, one epoch each per round, ``repeat`` rounds, best
    time kept (see benchmarks/epoch.py ``run`` for why). ``data`` is an optional (x, y) to use
    instead of loading Fashion-MNIST; ``log`` a callable taking one line of progress.
    """
    if n_threads is not None:
        fn.set_num_threads(n_threads)
    n_threads = fn.get_num_threads()
    x32, y = data if data is not None else load_data(samples, data_dir)
    x32, y = x32[:samples], y[:samples]
    rows = []
    for case in (CASES if cases is None else cases):
        x = x32 if case.dtype == "float32" else np.ascontiguousarray(x32, dtype=case.dtype)
        if case.sequence:
            x = x.reshape(len(x), x.shape[-2], x.shape[-1])
        contenders, infos = {}, {}
        try:
            contenders["fastnn"], infos["fastnn"] = fastnn_contender(case, x, y)
        except Exception as exc:      # a case fastnn cannot run is a row that says so
            infos["fastnn"] = {"error": _error(exc)}
        if torch:
            try:
                epoch, info = torch_contender(case, x, y, n_threads, optim_impl=optim_impl)
            except Exception as exc:
                epoch, infos["torch"] = None, {"error": _error(exc)}
            if epoch is not None:
                contenders["torch"], infos["torch"] = epoch, info
        best = {name: np.inf for name in contenders}
        for r in range(repeat):
            for name, epoch in contenders.items():
                time.sleep(settle)
                try:
                    best[name] = min(best[name], epoch(r))
                except Exception as exc:
                    infos[name]["error"] = _error(exc)
                    best[name] = np.nan
            contenders = {k: v for k, v in contenders.items() if not np.isnan(best[k])}
        try:
            flops = flops_per_sample(build_fastnn(case), x.shape[1:], case.mode) * len(x)
        except Exception:
            flops = 0
        rows.append(make_row(case, best.get("fastnn"), best.get("torch"), flops, len(x), infos))
        if log:
            log(format_row(rows[-1]))
    return rows


def _error(exc):
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _finite(t):
    return t is not None and np.isfinite(t)


def make_row(case, fastnn_s, torch_s, flops, samples, infos=None):
    """One row: times (None where missing), ratio fastnn/torch, GFLOP/s of fastnn."""
    fastnn_s = fastnn_s if _finite(fastnn_s) else None
    torch_s = torch_s if _finite(torch_s) else None
    return {"case": case.name, "mode": case.mode, "optimizer": case.optimizer if case.mode == "train" else None,
            "batch_size": case.batch_size, "dtype": case.dtype, "samples": samples,
            "compute_bound": case.compute_bound,
            "fastnn_s": fastnn_s, "torch_s": torch_s,
            "ratio": fastnn_s / torch_s if fastnn_s and torch_s else None,
            "gflop": flops / 1e9, "fastnn_gflops": flops / 1e9 / fastnn_s if fastnn_s and flops else None,
            "fastnn": (infos or {}).get("fastnn", {}), "torch": (infos or {}).get("torch", {})}


def summary(rows):
    """{"geomean": geometric mean of the ratios, "worst": (case, ratio) with the largest ratio,
    "best": likewise the smallest, "cases": how many ratios}; None values without ratios."""
    ratios = [(r["case"], r["ratio"]) for r in rows if r["ratio"] is not None]
    if not ratios:
        return {"geomean": None, "worst": None, "best": None, "cases": 0}
    geomean = math.exp(sum(math.log(v) for _, v in ratios) / len(ratios))
    return {"geomean": geomean, "worst": max(ratios, key=lambda cv: cv[1]),
            "best": min(ratios, key=lambda cv: cv[1]), "cases": len(ratios)}


def machine_info(n_threads=None):
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or platform.machine()
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    import numba
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable,
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
            "threads": n_threads if n_threads is not None else fn.get_num_threads(),
            "torch": torch_version, "fastnn": fn.__version__, "numpy": np.__version__,
            "numba": numba.__version__, "python": platform.python_version(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}


def machine_line(m):
    core = m["openblas_coretype"]
    return (f"CPU {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"OPENBLAS_CORETYPE={'set to ' + core if core else 'not set (OpenBLAS auto-detects)'}, "
            f"{m['threads']} thread(s), torch {m['torch'] or 'not installed'}, numpy {m['numpy']}, "
            f"numba {m['numba']}, Python {m['python']}"
            + (f"; denormals {m['denormals']}" if m.get("denormals") else "")
            + (f"; load average {m['loadavg'][0]:.2f} at the end" if m.get("loadavg") else ""))


def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _peak_for(row, peaks):
    return (peaks or {}).get(row["dtype"])


def table_rows(rows, peaks=None):
    head = ["case", "fastnn s", "torch s", "fastnn/torch", "GFLOP/s", "% of peak", "fastnn path"]
    body = []
    for r in rows:
        gf = r["fastnn_gflops"] if r["compute_bound"] else None
        peak = _peak_for(r, peaks)
        path = r["fastnn"].get("path", "predict" if r["mode"] == "predict" else "")
        if "error" in r["fastnn"]:
            path = "error: " + r["fastnn"]["error"]
        if "error" in r["torch"]:
            path += ("; " if path else "") + "torch error: " + r["torch"]["error"]
        body.append([r["case"], _fmt(r["fastnn_s"], ".3f"), _fmt(r["torch_s"], ".3f"),
                     _fmt(r["ratio"], ".2f"), _fmt(gf, ".1f"),
                     _fmt(100 * gf / peak if gf and peak else None, ".0f"), path])
    return head, body


def format_row(r):
    return (f"{r['case']:34s} fastnn {_fmt(r['fastnn_s'], '8.3f', '     -  ')} s  "
            f"torch {_fmt(r['torch_s'], '8.3f', '     -  ')} s  ratio {_fmt(r['ratio'], '.2f')}")


def report(rows, machine, peaks=None, markdown=False, optim_table=None, torch_optim="default"):
    """The text of the matrix: machine line, peaks, one row per case, geomean and worst case."""
    head, body = table_rows(rows, peaks)
    s = summary(rows)
    samples = sorted({r["samples"] for r in rows})
    lines = [machine_line(machine),
             f"{', '.join(map(str, samples))} Fashion-MNIST images per epoch; best of the rounds; "
             f"inference in batches of {PREDICT_BATCH} rows (both); GEMM peak "
             + ", ".join(f"{dt} {p:.0f} GFLOP/s" for dt, p in (peaks or {}).items())
             + ("" if torch_optim == "default" else f"; PyTorch optimizers {torch_optim} where they have it"),
             ""]
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(":--" if i in (0, len(head) - 1) else "--:" for i in range(len(head))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(head)]
        fmt = lambda row: "  ".join(c.ljust(w) if i in (0, len(head) - 1) else c.rjust(w)  # noqa: E731
                                    for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        lines.append(fmt(head))
        lines += [fmt(row) for row in body]
    lines.append("")
    if s["cases"]:
        lines.append(f"geometric mean of fastnn/torch over {s['cases']} cases: {s['geomean']:.2f}; "
                     f"worst case: {s['worst'][0]} {s['worst'][1]:.2f}; best: {s['best'][0]} {s['best'][1]:.2f}")
    else:
        lines.append("no PyTorch times (torch not installed or --no-torch): fastnn times only")
    why = {}
    for r in rows:
        if r["fastnn"].get("why_not_compiled"):
            why.setdefault(r["fastnn"]["why_not_compiled"], []).append(r["case"])
    if why:
        lines.append("training cases on the layer-by-layer loop (fit(compiled=True) said why):")
        lines += [f"  {', '.join(names)}: {reason}" for reason, names in why.items()]
    if optim_table:
        lines += ["", optim_table]
    return "\n".join(lines)


def atomic_write_json(path, obj):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".matrix-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _flush_denormals():
    """Flush denormal floats to zero on this thread (torch.set_flush_denormal: FTZ/DAZ), for both
    contenders, which run on it. With denormals kept, PyTorch's epochs of several cases (Adam,
    tanh, float64 LeNet-5) took 4-15x longer on this machine as its weights and moments
    underflow, which would flatter fastnn. True when it took effect."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.set_flush_denormal(True))


def main(args):
    """``fastnn bench --matrix``: args from fastnn.cli's bench parser (samples, repeat, threads,
    cases, quick, json, markdown, no_torch, data_dir, torch_optim)."""
    quick = getattr(args, "quick", False)
    samples = args.samples if args.samples is not None else (QUICK_SAMPLES if quick else 10000)
    repeat = 1 if quick else args.repeat
    cases = select(CASES, getattr(args, "cases", None))
    if not cases:
        print(f"no case matches {args.cases}; the cases are: " + "; ".join(c.name for c in CASES),
              file=sys.stderr)
        return 2
    with_torch = not args.no_torch
    flush = with_torch and not getattr(args, "keep_denormals", False)
    if flush:
        flush = _flush_denormals()
    log = (lambda line: print(line, file=sys.stderr, flush=True))
    rows = run(cases, samples, repeat, args.threads, with_torch, args.data_dir,
               optim_impl=getattr(args, "torch_optim", "default") or "default", log=log)
    n_threads = fn.get_num_threads()
    dtypes = sorted({r["dtype"] for r in rows if r["compute_bound"]}) or ["float32"]
    peaks = {dt: gemm_peak(dt) for dt in dtypes}
    fn.set_num_threads(n_threads)
    optim_rows, optim_text = None, None
    try:
        from fastnn.cli import load_benchmark
        bench_optim = load_benchmark("bench_optim")
        optim_rows = bench_optim.step_table(n_threads=n_threads, torch=with_torch,
                                            repeat=3 if quick else 20)
        optim_text = bench_optim.format_step_table(optim_rows, markdown=args.markdown)
    except Exception as exc:       # the step table is an extra; the matrix stands without it
        optim_text = f"(optimizer-step table failed: {type(exc).__name__}: {exc})"
    machine = machine_info(n_threads)
    machine["denormals"] = "flushed to zero (both contenders)" if flush else "kept"
    print(report(rows, machine, peaks, markdown=args.markdown, optim_table=optim_text,
                 torch_optim=getattr(args, "torch_optim", "default") or "default"))
    if args.json:
        atomic_write_json(args.json, {"machine": machine, "peaks_gflops": peaks, "samples": samples,
                                      "repeat": repeat, "settle_s": SETTLE_SECONDS,
                                      "predict_batch": PREDICT_BATCH, "rows": rows,
                                      "torch_optim": getattr(args, "torch_optim", "default"),
                                      "summary": summary(rows), "optimizer_step_us": optim_rows})
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fastnn.cli import main as cli_main
    sys.exit(cli_main(["bench", "--matrix"] + sys.argv[1:]))
