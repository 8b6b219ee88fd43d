"""Experiment ``timing``: seconds per training epoch of the experiments' models (the
784-400-100-10 ReLU MLP and LeNet-5, SGD lr 0.1, batch 32, float32) on every fastnn backend
that runs here (numpy, cpu, cuda on a GPU) and in PyTorch when it is installed (a plain
training loop on the same data, threads and batch size).
"""
import os
import time

import numpy as np

import fastnn as fn

from . import runner

TITLE = "Seconds per epoch: numpy, cpu, cuda and PyTorch"
BACKENDS = ("numpy", "cpu", "cuda")
FULL_IMAGES = 10000


def models():
    return {"MLP 784-400-100-10": lambda **kw: runner.mlp((784, 400, 100, 10), "relu", **kw),
            "LeNet-5": fn.models.lenet5}


def fastnn_seconds(build, backend, x, y, epochs, batch_size):
    """Mean training seconds of ``epochs`` epochs after one untimed warm-up epoch (Numba
    compilation, buffers); fit's own per-epoch clock, validation excluded."""
    model = build(backend=backend, seed=0)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    model.fit(x, y, optimizer=opt, epochs=1, batch_size=batch_size, seed=0, verbose=0)
    history = model.fit(x, y, optimizer=opt, epochs=epochs, batch_size=batch_size, verbose=0)
    return float(np.mean(history.history["time"]))


def torch_model(name, torch):
    nn = torch.nn
    if name.startswith("MLP"):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 100),
                             nn.ReLU(), nn.Linear(100, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def torch_seconds(name, x, y, epochs, batch_size):
    """Mean seconds of ``epochs`` shuffled SGD epochs of the PyTorch twin after one warm-up."""
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(fn.get_num_threads())
    net = torch_model(name, torch)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            loss(net(xt[idx]), yt[idx]).backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return float(np.mean(times[1:]))


def contenders():
    """(name, skip reason or None) of each fastnn backend, then PyTorch."""
    out = []
    for name in BACKENDS:
        reason = None
        if name == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            reason = "Numba's CUDA simulator (no GPU): its times mean nothing"
        else:
            try:
                fn.get_backend(name)
            except Exception as exc:        # any reason the backend cannot run here
                reason = f"unavailable: {str(exc).splitlines()[0]}"
        out.append((name, reason))
    try:
        import torch  # noqa: F401
        out.append(("PyTorch", None))
    except ImportError:
        out.append(("PyTorch", "not installed"))
    return out


def run(settings, log=print):
    report = runner.Report("timing", TITLE, settings, __doc__.strip())
    data = runner.datasets(settings)[0]
    n = min(len(data.x), settings.train_size if settings.quick else FULL_IMAGES)
    x, y = np.ascontiguousarray(data.x[:n]), data.y[:n]
    epochs = 1 if settings.quick else 3
    report.text(f"{n} {data.name} images, mean of {epochs} timed epochs after one warm-up, "
                f"{fn.get_num_threads()} threads.")
    rows, skipped = [], []
    for name, reason in contenders():
        if reason:
            skipped.append(f"{name}: {reason}")
            continue
        for model_name, build in models().items():
            if name == "PyTorch":
                seconds = torch_seconds(model_name, x, y, epochs, settings.batch_size)
            else:
                seconds = fastnn_seconds(build, name, x, y, epochs, settings.batch_size)
            log(f"  {model_name} on {name}: {seconds:.3f} s per epoch of {n} images")
            rows.append([model_name, name, f"{seconds:.4g}", f"{n / seconds:.0f}"])
    report.table(["model", "backend", "s / epoch", "images / s"], rows)
    if skipped:
        report.text("Not timed: " + "; ".join(skipped) + ".")
    return report.write()
