"""One training epoch on a CUDA GPU: fastnn's "cuda" backend next to PyTorch CUDA (eager), in one run.

    python benchmarks/cuda_epoch.py                          # MLP at batch 32, 128, 1024; LeNet-5
    python benchmarks/cuda_epoch.py --batch-size 128 --samples 10000 --repeat 5 --json out.json

Models: the MLP 784-400-100-10 (ReLU) and, when ``fastnn.models.lenet5`` exists, LeNet-5; both
sides train the same architecture with SGD (lr 0.1) and cross-entropy on the same images
(Fashion-MNIST when installed, else random images of the same shape: the timing does not depend
on the pixels), held on the GPU and shuffled each epoch. Every figure is the best of
``--repeat`` epochs after a warm-up (kernel compilation, cuBLAS / cuDNN set-up, allocation).

* fastnn: the ``time`` that ``fit`` records for the epoch (the training loop, which takes each
  batch's loss and accuracy back to the host);
* PyTorch "per batch": the idiomatic loop that also takes each batch's loss and accuracy back
  with ``.item()`` (what fastnn's fit does); "per epoch": the same loop keeping them on the GPU
  and synchronising once at the end.

There is no device option: the script uses the current CUDA GPU, and exits with status 2 and a
message when there is none (Numba's CUDA simulator does not count).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

MLP_SIZES = (784, 400, 100, 10)


def no_gpu(reason):
    print(f"cuda_epoch.py: no CUDA GPU to benchmark on: {reason}", file=sys.stderr)
    sys.exit(2)


def check_gpu():
    """The GPU's name, or exit(2) with the reason when fastnn's cuda backend cannot run."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        no_gpu("NUMBA_ENABLE_CUDASIM is set (the simulator runs kernels in Python); unset it")
    import fastnn as fn
    try:
        fn.get_backend("cuda")
    except fn.errors.BackendUnavailableError as exc:
        no_gpu(str(exc))
    from numba import cuda
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def load_data(samples, data_dir=None):
    """(x float32 (N, 1, 28, 28), y int64 (N,), name of the data)."""
    import fastnn as fn
    try:
        (x, y), _ = fn.datasets.load_fashion_mnist(data_dir)
        return x[:samples], y[:samples].astype(np.int64), "Fashion-MNIST"
    except (OSError, ValueError):
        rng = np.random.default_rng(0)
        x = rng.random((samples, 1, 28, 28), dtype=np.float32)
        return x, rng.integers(0, 10, samples), "random images (Fashion-MNIST not installed)"


# ----------------------------------------------------------------------------- fastnn


def fastnn_model(name, seed=0):
    import fastnn as fn
    if name == "mlp":
        return fn.models.mlp(MLP_SIZES, backend="cuda", seed=seed)
    return fn.models.lenet5(backend="cuda", seed=seed)


def time_fastnn(name, x, y, batch_size, repeat):
    """Best-of-``repeat`` seconds of one fastnn epoch on the cuda backend."""
    import fastnn as fn
    model = fastnn_model(name)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    model.fit(x[:2 * batch_size + 1], y[:2 * batch_size + 1], optimizer=opt, epochs=1,
              batch_size=batch_size, verbose=0, seed=0)          # compile, allocate, last batch
    times = []
    for r in range(repeat):
        h = model.fit(x, y, optimizer=opt, epochs=1, batch_size=batch_size, verbose=0, seed=r)
        times.append(h.history["time"][0])
    return min(times)


# ----------------------------------------------------------------------------- PyTorch


def torch_cuda():
    """The torch module when it can use a CUDA GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def torch_model(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 100),
                             nn.ReLU(), nn.Linear(100, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def time_torch(torch, name, x, y, batch_size, repeat, per_batch):
    """Best-of-``repeat`` seconds of one PyTorch CUDA epoch (eager)."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = torch_model(torch, name).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)

    def epoch(order):
        total, correct = 0.0, 0
        total_t = torch.zeros((), device=dev)
        correct_t = torch.zeros((), dtype=torch.int64, device=dev)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            if per_batch:
                total += loss.item() * len(idx)
                correct += int((out.argmax(1) == yb).sum().item())
            else:
                total_t += loss.detach() * len(idx)
                correct_t += (out.argmax(1) == yb).sum()
        torch.cuda.synchronize()
        return total if per_batch else total_t.item()

    epoch(torch.arange(min(len(x), 2 * batch_size + 1), device=dev))   # warm-up
    times = []
    for _ in range(repeat):
        order = torch.randperm(len(x), device=dev)
        torch.cuda.synchronize()
        start = time.perf_counter()
        epoch(order)
        times.append(time.perf_counter() - start)
    return min(times)


# ----------------------------------------------------------------------------- main


def run(models, batch_sizes, samples, repeat, data_dir=None):
    gpu = check_gpu()
    x, y, data = load_data(samples, data_dir)
    torch = torch_cuda()
    results = []
    for name in models:
        for bs in batch_sizes:
            r = {"model": name, "batch_size": bs, "samples": len(x),
                 "fastnn-cuda": time_fastnn(name, x, y, bs, repeat)}
            if torch is not None:
                r["torch-per-batch"] = time_torch(torch, name, x, y, bs, repeat, per_batch=True)
                r["torch-per-epoch"] = time_torch(torch, name, x, y, bs, repeat, per_batch=False)
            results.append(r)
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    meta = {"gpu": gpu, "data": data, "python": platform.python_version(),
            "numba": __import__("numba").__version__,
            "torch": torch.__version__ if torch is not None else "not installed or no CUDA"}
    return meta, results


def table(meta, results):
    lines = [f"GPU {meta['gpu']}; {meta['data']}; numba {meta['numba']}, torch {meta['torch']}",
             "seconds per epoch (best of the repeats); ratio = fastnn / PyTorch per batch",
             f"{'model':8s} {'batch':>6s} {'samples':>8s} {'fastnn-cuda':>12s} "
             f"{'torch/batch':>12s} {'torch/epoch':>12s} {'ratio':>7s}"]
    for r in results:
        tb, te = r.get("torch-per-batch"), r.get("torch-per-epoch")
        cell = (lambda v: f"{v:12.3f}" if v is not None else f"{'-':>12s}")
        ratio = f"{r['fastnn-cuda'] / tb:7.2f}" if tb else f"{'-':>7s}"
        lines.append(f"{r['model']:8s} {r['batch_size']:6d} {r['samples']:8d} "
                     f"{r['fastnn-cuda']:12.3f} {cell(tb)} {cell(te)} {ratio}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 128, 1024])
    parser.add_argument("--models", nargs="+", default=None, choices=["mlp", "lenet5"],
                        help="default: mlp, and lenet5 when fastnn has it")
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    models = args.models
    if models is None:
        import fastnn as fn
        models = ["mlp"] + (["lenet5"] if hasattr(fn.models, "lenet5") else [])
    meta, results = run(models, args.batch_size, args.samples, args.repeat, args.data_dir)
    print(table(meta, results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
