"""LeNet-5 epoch on the fastnn "cpu" backend vs an idiomatic PyTorch CPU loop, with the split
of fastnn's time over layers and over the conv / pooling kernels (im2col, GEMM, col2im ...).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_conv.py                # full epoch, 50000 images
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_conv.py --images 6400 --torch-threads 1 2

Both sides: LeNet-5 (fastnn.models.lenet5 / the same nn.Sequential), float32, batch 32, SGD
lr 0.1, shuffled Fashion-MNIST (the bundled digits if it is not installed), loss and accuracy
counted every batch. PyTorch indexes a random permutation of the tensors (a DataLoader over a
TensorDataset is slower still). Every figure is the best of ``--repeats`` runs, all in this
one process, so their ratios are comparable even on a shared machine.
"""
import argparse
import collections
import time

import numpy as np

import fastnn as fn
from fastnn.kernels.cpu import conv as cpu_conv


def load(n_images):
    try:
        (x, y), _ = fn.datasets.load_fashion_mnist()
        name = "Fashion-MNIST"
    except (OSError, ValueError):
        x = np.random.default_rng(0).random((n_images, 1, 28, 28), dtype=np.float32)
        y = np.random.default_rng(1).integers(0, 10, n_images)
        name = "random 28x28 images (Fashion-MNIST not installed)"
    return x[:n_images], y[:n_images], name


def ensure_cpu_conv_kernels():
    """Use kernels/cpu/conv.py on the cpu backend even where kernels/cpu/__init__.py does not
    export it yet (then the backend would run the NumPy reference for conv and pooling)."""
    be = fn.get_backend("cpu")
    missing = [k for k in cpu_conv.__all__ if getattr(be, k) is not getattr(cpu_conv, k)]
    for k in missing:
        setattr(be, k, getattr(cpu_conv, k))
    return missing


def fastnn_epoch(x, y, seed=0):
    model = fn.models.lenet5(backend="cpu", seed=seed)
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    model.fit(x[:320], y[:320], loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=1, verbose=0)  # warm-up
    start = time.perf_counter()
    model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=1, batch_size=32, seed=seed,
              verbose=0)
    return time.perf_counter() - start


def torch_epoch(x, y, threads, seed=0):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def run(n):
        perm = torch.randperm(n)
        total, correct = 0.0, 0
        for start in range(0, n, 32):
            idx = perm[start:start + 32]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        return total, correct

    run(320)                                                   # warm-up
    start = time.perf_counter()
    run(len(x))
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- the split

T = collections.defaultdict(float)


def _timed(key, f, *args):
    t = time.perf_counter()
    f(*args)
    T[key] += time.perf_counter() - t


def _conv_forward(x, w, b, out, stride, padding, cols):
    """cpu_conv.conv2d_forward with a timer around each step (checked equal below)."""
    n, f, oh, ow = out.shape
    kh, kw = w.shape[2:]
    _timed("conv im2col", cpu_conv._im2col, x, kh, kw, stride[0], stride[1], padding[0], padding[2],
           oh, ow, cols)
    out3 = out.reshape(n, f, oh * ow)
    _timed("conv GEMM (forward)", np.matmul, w.reshape(f, -1), cols, out3)
    _timed("conv bias / bias grad", cpu_conv._add_bias, out3, b)


def _conv_backward(x, w, dy, dx, dw, db, stride, padding, cols, dcols, accumulate=False):
    """cpu_conv.conv2d_backward with a timer around each step (checked equal below)."""
    n, f, oh, ow = dy.shape
    kh, kw = w.shape[2:]
    dy3 = dy.reshape(n, f, oh * ow)
    dw2 = dw.reshape(f, -1)
    beta = 1.0 if accumulate else 0.0
    _timed("conv GEMM (weight grad)", cpu_conv.weight_gradient, dy3, cols, dcols, dw2, accumulate)
    _timed("conv bias / bias grad", cpu_conv._bias_grad, dy3, db, beta)
    if dx is not None:
        _timed("conv GEMM (input grad)", np.matmul, w.reshape(f, -1).T, dy3, dcols)
        _timed("conv col2im", cpu_conv._col2im, dcols, kh, kw, stride[0], stride[1], padding[0],
               padding[2], oh, ow, dx)


def _maxpool_forward(*args):
    _timed("max-pool forward", cpu_conv.maxpool2d_forward, *args)


def _maxpool_backward(*args):
    _timed("max-pool backward", cpu_conv.maxpool2d_backward, *args)


def _check_profiled_kernels():
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3, 9, 9), (5, 3, 3, 3), (5,)))
    pads, outs = (1, 1, 1, 1), []
    for fwd, bwd in ((cpu_conv.conv2d_forward, cpu_conv.conv2d_backward), (_conv_forward, _conv_backward)):
        out, cols = np.empty((4, 5, 9, 9), np.float32), np.empty((4, 27, 81), np.float32)
        fwd(x, w, b, out, (1, 1), pads, cols)
        dx, dw, db, dcols = np.empty_like(x), np.empty_like(w), np.empty_like(b), np.empty_like(cols)
        bwd(x, w, out, dx, dw, db, (1, 1), pads, cols, dcols)
        outs.append((out, dx, dw, db))
    for a, c in zip(*outs):
        np.testing.assert_array_equal(a, c)
    T.clear()


def profile(x, y, seed=0):
    """One epoch with timers around every layer and every conv / pooling kernel."""
    _check_profiled_kernels()
    be = fn.get_backend("cpu")
    saved = {k: getattr(be, k) for k in ("conv2d_forward", "conv2d_backward", "maxpool2d_forward",
                                         "maxpool2d_backward")}
    be.conv2d_forward, be.conv2d_backward = _conv_forward, _conv_backward
    be.maxpool2d_forward, be.maxpool2d_backward = _maxpool_forward, _maxpool_backward
    model = fn.models.lenet5(backend="cpu", seed=seed)
    layer_time = collections.defaultdict(float)
    for i, layer in enumerate(model._steps):
        name = f"{i:2d} {type(layer).__name__}"

        def fw(be_, x_, training=False, f=layer.forward, name=name):
            t = time.perf_counter()
            r = f(be_, x_, training)
            layer_time[(name, "forward")] += time.perf_counter() - t
            return r

        def bw(be_, dy, need_dx=True, accumulate=False, f=layer.backward, name=name):
            t = time.perf_counter()
            r = f(be_, dy, need_dx, accumulate)
            layer_time[(name, "backward")] += time.perf_counter() - t
            return r

        layer.forward, layer.backward = fw, bw
    opt = fn.optim.SGD(model.parameters(), lr=0.1)
    try:
        model.fit(x[:320], y[:320], loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=1, verbose=0)
        T.clear()
        layer_time.clear()
        start = time.perf_counter()
        model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=1, batch_size=32,
                  seed=seed, verbose=0)
        total = time.perf_counter() - start
    finally:
        for k, v in saved.items():
            setattr(be, k, v)
    return total, dict(layer_time), dict(T)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=50000)
    p.add_argument("--torch-threads", type=int, nargs="+", default=[2])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    x, y, name = load(args.images)
    steps = -(-len(x) // 32)
    patched = ensure_cpu_conv_kernels()
    if patched:
        print(f"note: kernels/cpu/__init__.py does not export {', '.join(patched)}; using "
              "kernels/cpu/conv.py for them in this run")
    print(f"LeNet-5, {len(x)} images of {name}, batch 32 ({steps} steps), float32, SGD lr 0.1")
    results = {"fastnn cpu": min(fastnn_epoch(x, y) for _ in range(args.repeats))}
    try:
        for threads in args.torch_threads:
            results[f"PyTorch {threads} thread(s)"] = min(torch_epoch(x, y, threads)
                                                         for _ in range(args.repeats))
    except ImportError:
        print("PyTorch is not installed: no comparison")
    base = results["fastnn cpu"]
    for key, sec in results.items():
        print(f"  {key:22s} {sec:7.2f} s per epoch  {1e3 * sec / steps:6.2f} ms per step  "
              f"{sec / base:5.2f}x fastnn's time")

    total, layers, kernels = profile(x, y)
    print(f"\nfastnn cpu, one instrumented epoch: {total:.2f} s")
    print("  per layer (s per epoch):")
    for (layer, phase), sec in sorted(layers.items()):
        print(f"    {layer:14s} {phase:8s} {sec:6.3f}  {100 * sec / total:5.1f} %")
    print("  conv and pooling kernels (s per epoch):")
    for key, sec in sorted(kernels.items(), key=lambda kv: -kv[1]):
        print(f"    {key:38s} {sec:6.3f}  {100 * sec / total:5.1f} %")
    rest = total - sum(kernels.values())
    print(f"    {'everything else':38s} {rest:6.3f}  {100 * rest / total:5.1f} %  "
          "(dense layers, activations, loss, SGD, batching, Python)")


if __name__ == "__main__":
    main()
