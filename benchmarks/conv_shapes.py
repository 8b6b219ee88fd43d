"""One convolution layer (with bias + ReLU) beyond LeNet: the cpu backend's direct stride-1
kernels against its im2col + GEMM path and PyTorch's conv2d, per batch, in one process.

    python benchmarks/conv_shapes.py [--threads 2] [--batch 32]

Forward is act(conv(x) + b); backward computes dz = dy * ReLU', the weight, bias and input
gradients (PyTorch: its forward + backward with autograd, so "fwd+bwd"). Milliseconds, the best
of 3 rounds of 5 calls each.
"""
import argparse
import time

import numpy as np

import fastnn as fn
from fastnn.kernels.cpu import conv as cpu_conv, conv_direct
from fastnn.kernels.cpu.parallel import parts as _parts

SHAPES = [(32, 64, 28, 3, 1), (16, 32, 28, 5, 2), (64, 64, 14, 3, 1), (3, 32, 32, 3, 1),
          (128, 128, 8, 3, 1)]            # (in channels, out channels, image size, kernel, padding)


def best_ms(f, *args, repeat=5):
    f(*args)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            f(*args)
        best = min(best, (time.perf_counter() - start) / repeat)
    return 1e3 * best


def fastnn_times(c, f, hw, k, pad, batch, rng):
    parts = _parts(batch)
    x = rng.standard_normal((batch, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((f, c, k, k)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    o = hw + 2 * pad - k + 1
    pads = (pad,) * 4
    y = np.empty((batch, f, o, o), np.float32)
    dy, dz, dx = rng.standard_normal(y.shape).astype(np.float32), np.empty_like(y), np.empty_like(x)
    dw, db = np.empty_like(w), np.empty_like(b)
    cols = np.empty((batch, c * k * k, o * o), np.float32)
    dcols = np.empty_like(cols)
    w2, y3 = w.reshape(f, -1), y.reshape(batch, f, -1)
    im2col_parts = min(parts, dcols.size // (c * k * k * o * o + f * c * k * k + f))
    return {
        "direct fwd": best_ms(conv_direct.forward, x, w, b, y, pads, 1, parts),
        "direct bwd": best_ms(conv_direct.backward, x, w, y, dy, dz, dx, dw, db, pads, 1, False,
                              parts),
        "im2col fwd": best_ms(cpu_conv._conv_forward, x, w2, b, y3, k, k, 1, 1, pad, pad, o, o,
                              cols, 1, parts),
        "im2col bwd": best_ms(cpu_conv._conv_backward, w2, y3, dy.reshape(y3.shape),
                              dz.reshape(y3.shape), 1, dx, dw.reshape(f, -1), db, 0.0, k, k, 1,
                              1, pad, pad, o, o, cols, dcols.reshape(-1), im2col_parts),
    }, (x, w, b, dy)


def torch_times(x, w, b, dy, pad, threads):
    import torch
    torch.set_num_threads(threads)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    dyt = torch.from_numpy(dy)

    def forward():
        with torch.no_grad():
            return torch.relu(torch.nn.functional.conv2d(xt, wt, bt, padding=pad))

    def forward_backward():
        torch.relu(torch.nn.functional.conv2d(xt, wt, bt, padding=pad)).backward(dyt)

    return {"torch fwd": best_ms(forward), "torch fwd+bwd": best_ms(forward_backward)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    fn.set_num_threads(args.threads)
    fn.threads.use_pool("numba")
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, float32, {args.threads} thread(s); milliseconds per batch")
    for c, f, hw, k, pad in SHAPES:
        t, arrays = fastnn_times(c, f, hw, k, pad, args.batch, rng)
        try:
            t.update(torch_times(*arrays, pad, args.threads))
        except ImportError:
            pass
        cells = "  ".join(f"{key} {ms:6.2f}" for key, ms in t.items())
        print(f"  {c:3d}->{f:3d} {hw:2d}x{hw:<2d} k{k}: {cells}")


if __name__ == "__main__":
    main()
