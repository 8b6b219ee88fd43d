"""LeNet-5 epoch on the fastnn "cpu" backend vs an idiomatic PyTorch CPU loop, with the split
of fastnn's time over layers and over the conv / pooling pieces (the direct convolution's
forward, weight and input gradients; max-pooling).

    python benchmarks/bench_conv.py                          # full epoch, 50000 images, 2 threads
    python benchmarks/bench_conv.py --images 10000 --threads 1

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
from conv_shapes import best_ms, conv_arrays, layer_times
from epoch import layer_split, split_lines   # benchmarks/epoch.py, beside this script
from fastnn.kernels.cpu import conv as cpu_conv, conv_direct
from fastnn.kernels.cpu.parallel import parts as _parts

LENET_CONVS = ((1, 6, 28, 2, False), (6, 16, 14, 0, True))   # (C, F, size, padding, needs dx)


def load(n_images):
    try:
        (x, y), _ = fn.datasets.load_fashion_mnist()
        name = "Fashion-MNIST"
    except (OSError, ValueError):
        x = np.random.default_rng(0).random((n_images, 1, 28, 28), dtype=np.float32)
        y = np.random.default_rng(1).integers(0, 10, n_images)
        name = "random 28x28 images (Fashion-MNIST not installed)"
    return x[:n_images], y[:n_images], name


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


def kernel_split(steps, batch=32):
    """Seconds per epoch of each piece of LeNet-5's conv and pooling work, each timed alone on
    the epoch's shapes with the same threads. Both convolutions have stride 1, so they run the
    direct kernels (:mod:`fastnn.kernels.cpu.conv_direct`): no im2col, GEMM or col2im."""
    fn.threads.use_pool("numba")              # as the cpu backend runs them
    rng = np.random.default_rng(0)
    parts = _parts(batch)
    pieces = collections.defaultdict(float)
    for c, f, hw, pad, need_dx in LENET_CONVS:
        a = conv_arrays(c, f, hw, 5, pad, batch, rng)
        x, w, b, y, dy, dz, dx, dw, db, pads = (a[key] for key in "x w b y dy dz dx dw db pads".split())
        relu = 1
        pieces["conv forward (pad, correlate, bias + ReLU)"] += best_ms(
            conv_direct.forward, x, w, b, y, pads, relu, parts)
        no_dx = best_ms(conv_direct.backward, x, w, y, dy, dz, None, dw, db, pads, relu, False, parts)
        pieces["conv backward: ReLU', weight and bias gradients"] += no_dx
        if need_dx:
            pieces["conv backward: input gradient (scatter, crop)"] += best_ms(
                conv_direct.backward, x, w, y, dy, dz, dx, dw, db, pads, relu, False, parts) - no_dx
        o = a["o"]
        pooled = np.empty((batch, f, o // 2, o // 2), np.float32)
        argmax = np.empty(pooled.shape, np.intp)
        pieces["max-pool forward"] += best_ms(cpu_conv.maxpool2d_forward, y, pooled, argmax, (2, 2), (2, 2), (0, 0, 0, 0))
        pieces["max-pool backward"] += best_ms(cpu_conv.maxpool2d_backward, argmax, pooled, y)
    return {k: v * steps / 1e3 for k, v in pieces.items()}


def path_comparison(threads_list, batch=32):
    """Microseconds per batch of LeNet-5's two convolutions (forward with bias + ReLU; backward
    with ReLU', weight, bias and, for the second layer, input gradients) through the direct
    kernels and through im2col + BLAS GEMM (the path strided convolutions take), each timed
    alone, both in this process."""
    rng = np.random.default_rng(0)
    rows = []
    for threads in threads_list:
        fn.set_num_threads(threads)
        fn.threads.use_pool("numba")
        for name, (c, f, hw, pad, need_dx) in zip(("conv1", "conv2"), LENET_CONVS):
            times, _ = layer_times(c, f, hw, 5, pad, batch, rng, need_dx)
            rows.append((threads, name, {key: 1e3 * ms for key, ms in times.items()}))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=50000)
    p.add_argument("--threads", type=int, default=2, help="fastnn and PyTorch threads")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    x, y, name = load(args.images)
    steps = -(-len(x) // 32)
    fn.set_num_threads(args.threads)
    print(f"LeNet-5, {len(x)} images of {name}, batch 32 ({steps} steps), float32, SGD lr 0.1")
    results = {"fastnn cpu": min(fastnn_epoch(x, y) for _ in range(args.repeats))}
    try:
        results[f"PyTorch {args.threads} thread(s)"] = min(torch_epoch(x, y, args.threads)
                                                           for _ in range(args.repeats))
    except ImportError:
        print("PyTorch is not installed: no comparison")
    base = results["fastnn cpu"]
    for key, sec in results.items():
        print(f"  {key:22s} {sec:7.2f} s per epoch  {1e3 * sec / steps:6.2f} ms per step  "
              f"{sec / base:5.2f}x fastnn's time")

    total, layers = layer_split("lenet5", "cpu", x, y, 32)
    print(f"\nfastnn cpu, one instrumented epoch: {total:.2f} s")
    print("  per layer (s per epoch):")
    print("\n".join(split_lines(total, layers)))
    print("  conv and pooling pieces, each timed alone on the epoch's shapes (s per epoch):")
    for key, sec in sorted(kernel_split(steps).items(), key=lambda kv: -kv[1]):
        print(f"    {key:48s} {sec:6.3f}  {100 * sec / total:5.1f} %")
    print("\nLeNet-5's convolutions per batch of 32, direct kernels against im2col + GEMM (us):")
    print("  threads layer  direct fwd  im2col fwd  direct bwd  im2col bwd")
    for threads, name, t in path_comparison(sorted({1, args.threads})):
        print(f"  {threads:7d} {name:5s} {t['direct fwd']:11.0f} {t['im2col fwd']:11.0f} "
              f"{t['direct bwd']:11.0f} {t['im2col bwd']:11.0f}")
    fn.set_num_threads(args.threads)


if __name__ == "__main__":
    main()
