"""One convolution layer (with bias + ReLU) beyond LeNet: the cpu backend's direct stride-1
kernels against its im2col + GEMM path and PyTorch's conv2d, per batch, in one process.

    python benchmarks/conv_shapes.py [--threads 2] [--batch 32]

Forward is act(conv(x) + b); backward computes dz = dy * ReLU', the weight, bias and input
gradients (PyTorch: its forward + backward with autograd, so "fwd+bwd"). Milliseconds, the best
of 3 rounds of about 20 ms each.
"""
import argparse
import time

import numpy as np

import fastnn as fn
from fastnn.kernels.cpu import conv as cpu_conv, conv_direct
from fastnn.kernels.cpu.parallel import parts as _parts

SHAPES = [(32, 64, 28, 3, 1), (16, 32, 28, 5, 2), (64, 64, 14, 3, 1), (3, 32, 32, 3, 1),
          (128, 128, 8, 3, 1)]            # (in channels, out channels, image size, kernel, padding)


def best_ms(f, *args):
    """Milliseconds per call of f(*args): the best of 3 rounds of about 20 ms each (at least 5
    calls)."""
    start = time.perf_counter()
    f(*args)
    repeat = max(5, int(0.02 / max(time.perf_counter() - start, 1e-6)))
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            f(*args)
        best = min(best, (time.perf_counter() - start) / repeat)
    return 1e3 * best


def conv_arrays(c, f, hw, k, pad, batch, rng, need_dx=True):
    """Random float32 operands and buffers of one convolution layer (square images, stride 1)."""
    o = hw + 2 * pad - k + 1
    a = {"x": rng.standard_normal((batch, c, hw, hw)), "w": rng.standard_normal((f, c, k, k)),
         "b": rng.standard_normal(f), "dy": rng.standard_normal((batch, f, o, o))}
    a = {key: v.astype(np.float32) for key, v in a.items()}
    a.update(y=np.empty_like(a["dy"]), dz=np.empty_like(a["dy"]), dw=np.empty_like(a["w"]),
             db=np.empty_like(a["b"]), dx=np.empty_like(a["x"]) if need_dx else None,
             cols=np.empty((batch, c * k * k, o * o), np.float32), pads=(pad,) * 4, o=o, k=k)
    a["dcols"] = np.empty_like(a["cols"])
    return a


def layer_times(c, f, hw, k, pad, batch, rng, need_dx=True):
    """Milliseconds per batch of the layer's forward (bias + ReLU) and backward (with the
    input gradient unless ``need_dx`` is False) through the direct kernels and through
    im2col + GEMM, and the arrays used."""
    a = conv_arrays(c, f, hw, k, pad, batch, rng, need_dx)
    x, w, b, y, dy, dz, dx, dw, db = (a[key] for key in "x w b y dy dz dx dw db".split())
    o, cols, dcols, pads = a["o"], a["cols"], a["dcols"], a["pads"]
    parts = _parts(batch)
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
    }, a


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
        t, a = layer_times(c, f, hw, k, pad, args.batch, rng)
        try:
            t.update(torch_times(a["x"], a["w"], a["b"], a["dy"], pad, args.threads))
        except ImportError:
            pass
        cells = "  ".join(f"{key} {ms:6.2f}" for key, ms in t.items())
        print(f"  {c:3d}->{f:3d} {hw:2d}x{hw:<2d} k{k}: {cells}")


if __name__ == "__main__":
    main()
