"""Issue 20's speed and experiment checks, in one script (not a test):

1. a depthwise-separable CNN on Fashion-MNIST, one training epoch on the cpu backend against
   PyTorch CPU's (the same layers, SGD, batch size, thread count; best of ``--repeat``), the
   target being fastnn <= 0.8x PyTorch's seconds;
2. LeNet-5 against its separable, locally connected and global-average-pool-head variants
   (fastnn cpu): test accuracy, parameters and seconds per epoch in one table.

    python benchmarks/separable_cnn.py [--samples 6000] [--epochs 2] [--threads 2]
"""
import argparse
import platform
import time

import numpy as np

import fastnn as fn
from fastnn import datasets


def separable_fastnn(seed=0):
    return fn.Sequential([
        fn.Conv2D(1, 16, 3, padding=1), fn.ReLU(), fn.MaxPool2D(2),
        fn.SeparableConv2D(16, 32, 3, padding=1), fn.ReLU(), fn.MaxPool2D(2),
        fn.SeparableConv2D(32, 64, 3, padding=1), fn.ReLU(), fn.GlobalAvgPool2D(),
        fn.Dense(64, 10)], backend="cpu", seed=seed)


def separable_torch(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.Conv2d(16, 32, 1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.Conv2d(32, 64, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def lenet_variants():
    """name -> layers: LeNet-5 and the variants whose second convolution (or head) differs."""
    def stem():
        return [fn.Conv2D(1, 6, 5, padding=2), fn.Tanh(), fn.AvgPool2D(2)]

    def head(n_in):
        return [fn.Flatten(), fn.Dense(n_in, 120), fn.Tanh(), fn.Dense(120, 84), fn.Tanh(),
                fn.Dense(84, 10)]

    return {
        "lenet5": stem() + [fn.Conv2D(6, 16, 5), fn.Tanh(), fn.AvgPool2D(2)] + head(400),
        "separable": stem() + [fn.SeparableConv2D(6, 16, 5), fn.Tanh(), fn.AvgPool2D(2)]
        + head(400),
        "locally connected": stem() + [fn.LocallyConnected2D(6, 16, 5, input_size=(14, 14)),
                                       fn.Tanh(), fn.AvgPool2D(2)] + head(400),
        "global-avg-pool head": stem() + [fn.Conv2D(6, 16, 5), fn.Tanh(), fn.AvgPool2D(2),
                                          fn.Conv2D(16, 10, 3), fn.GlobalAvgPool2D()],
    }


def fastnn_epoch_seconds(model, x, y, batch_size, repeat, lr):
    opt = fn.optim.SGD(model.parameters(), lr=lr)
    model.fit(x[:2 * batch_size], y[:2 * batch_size], optimizer=opt, batch_size=batch_size,
              epochs=1, verbose=0, seed=0)                                  # compile, allocate
    times = []
    for r in range(repeat):
        h = model.fit(x, y, optimizer=opt, batch_size=batch_size, epochs=1, verbose=0, seed=r)
        times.append(h.history["time"][0])
    return min(times)


def torch_epoch_seconds(torch, net, x, y, batch_size, repeat, lr):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(order):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            out, target = net(xt[idx]), yt[idx]
            loss = loss_fn(out, target)
            loss.backward()
            opt.step()
            loss.item()                          # fastnn's fit reads the loss every batch too

    epoch(torch.arange(2 * batch_size))
    times = []
    for r in range(repeat):
        order = torch.from_numpy(np.random.default_rng(r).permutation(len(x)))
        start = time.perf_counter()
        epoch(order)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6000)
    ap.add_argument("--test-samples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs of the variant table")
    ap.add_argument("--repeat", type=int, default=2, help="timed epochs (best kept)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    fn.set_num_threads(args.threads)
    (x, y), (xt, yt) = datasets.load_fashion_mnist(args.data_dir)
    x, y, xt, yt = x[:args.samples], y[:args.samples], xt[:args.test_samples], yt[:args.test_samples]
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads; "
          f"{len(x)} training images, batch {args.batch_size}")

    import torch
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    ours = fastnn_epoch_seconds(separable_fastnn(), x, y, args.batch_size, args.repeat, 0.05)
    theirs = torch_epoch_seconds(torch, separable_torch(torch), x, y, args.batch_size,
                                 args.repeat, 0.05)
    print(f"\ndepthwise-separable CNN, one epoch: fastnn cpu {ours:.2f} s, PyTorch CPU "
          f"{theirs:.2f} s, ratio {ours / theirs:.2f} (target <= 0.8)")

    print(f"\n| model | test accuracy ({args.epochs} epochs) | parameters | s / epoch |")
    print("|---|---|---|---|")
    for name, layers in lenet_variants().items():
        model = fn.Sequential(layers, backend="cpu", seed=0)
        times = []
        for epoch in range(args.epochs):
            h = model.fit(x, y, optimizer="sgd", lr=0.05, batch_size=args.batch_size, epochs=1,
                          verbose=0, seed=epoch)
            times.append(h.history["time"][0])
        acc = model.evaluate(xt, yt)["accuracy"]
        print(f"| {name} | {acc:.4f} | {model.num_parameters()} | {min(times):.2f} |")


if __name__ == "__main__":
    main()
