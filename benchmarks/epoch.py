"""Whole-epoch benchmark: fastnn backends, the same epoch's GEMMs alone, and PyTorch, in one run.

Used by ``fastnn bench`` (which loads this file from the source checkout) and
``python benchmarks/epoch.py --batch-size 32 128 --threads 2``. Every contender trains the same
model on the same data in the same sample order with the same thread count; the figures that
mean something on a shared machine are the ratios printed at the end of each table.
"""
import collections
import json
import os
import platform
import sys
import time

import numpy as np

from fastnn import datasets, models, threads
from fastnn.backend import available_backends

MLP_SIZES = (784, 400, 100, 10)
SETTLE_SECONDS = 0.3   # pause before each timed epoch (see run)


def load_images(name, data_dir, samples):
    """(x, y) training images of a data set, the first ``samples`` of them."""
    if name == "digits":
        x, y = datasets.load_digits()
    elif name == "mnist":
        (x, y), _ = datasets.load_mnist(data_dir)
    else:
        (x, y), _ = datasets.load_fashion_mnist(data_dir)
    return x[:samples], y[:samples]


def build(model_name, backend, seed=0):
    if model_name == "mlp":
        return models.mlp(MLP_SIZES, backend=backend, seed=seed)
    return models.lenet5(backend=backend, seed=seed)


def fastnn_epoch(model_name, backend, x, y, batch_size, seed=0):
    """``epoch(r)``: the seconds of one training epoch (SGD lr 0.1, cross-entropy, shuffled with
    seed ``seed + r``) on a model compiled and allocated here, once."""
    from fastnn import optim
    model = build(model_name, backend, seed)
    opt = optim.SGD(model.parameters(), lr=0.1)
    model.fit(x[:2 * batch_size], y[:2 * batch_size], optimizer=opt, batch_size=batch_size,
              epochs=1, verbose=0, seed=seed)                           # compile, allocate

    def epoch(r):
        h = model.fit(x, y, optimizer=opt, epochs=1, batch_size=batch_size, verbose=0, seed=seed + r)
        return h.history["time"][0]

    return epoch


def step_gemms(rows, sizes=MLP_SIZES):
    """The GEMMs of one training step in the order the compiled epoch runs them.

    Each is (a, b, c, transa, transb, alpha, beta) over arrays shared the way training shares
    them (the layer output feeds the next layer, W is read forward and updated in place).
    """
    rng = np.random.default_rng(0)
    w = [rng.random((i, o), dtype=np.float32) * 0.01 for i, o in zip(sizes[:-1], sizes[1:])]
    acts = [rng.random((rows, s), dtype=np.float32) for s in sizes]       # x, then each output
    grads = [np.empty((rows, s), np.float32) for s in sizes]
    ops = [(acts[l], w[l], acts[l + 1], False, False, 1.0, 0.0) for l in range(len(w))]
    for l in range(len(w) - 1, -1, -1):
        if l > 0:
            ops.append((grads[l + 1], w[l], grads[l], False, True, 1.0, 0.0))      # dx = dz @ W.T
        ops.append((acts[l], grads[l + 1], w[l], True, False, -1e-9, 1.0))         # W -= lr x.T @ dz
    for g in grads:
        g[...] = rng.random(g.shape, dtype=np.float32)
    return ops


def epoch_gemm_shapes(n, batch_size, sizes=MLP_SIZES):
    """(M, N, K, count) of every GEMM in one MLP epoch."""
    steps, last = divmod(n, batch_size)
    shapes = []
    for rows, count in ((batch_size, steps), (last, 1 if last else 0)):
        for a, b, c, ta, tb, _, _ in (step_gemms(rows, sizes) if count else []):
            shapes.append((c.shape[0], c.shape[1], a.shape[0] if ta else a.shape[1], count))
    return shapes


def gemm_epochs(n, batch_size):
    """``{mode: epoch(r)}``: the seconds the matrix products of one MLP epoch take alone through
    OpenBLAS (the library NumPy uses), step by step in the training order (so BLAS sees the same
    sequence of shapes). Two modes, the two ways to use the threads: OpenBLAS's own threads, and
    each product split over Numba's threads with single-threaded OpenBLAS
    (:func:`fastnn.kernels.cpu.parallel.pgemm`). The faster one is the GEMM-only baseline: what
    the epoch's arithmetic costs with a tuned BLAS. (The cpu backend's own epoch runs x @ W and
    x.T @ dz in its SIMD GEMM instead, so it can beat this baseline.)"""
    from numba import njit
    from numba.typed import List

    from fastnn.kernels.cpu.parallel import pgemm   # a benchmark may use a kernel module itself

    @njit
    def run(a, b, c, ta, tb, alpha, beta, steps, n_parts):
        for _ in range(steps):
            for i in range(len(a)):
                pgemm(ta[i], tb[i], alpha[i], a[i], b[i], beta[i], c[i], n_parts)

    def prepared(rows):
        ops = step_gemms(rows)
        lists = [List([op[i] for op in ops]) for i in range(3)]
        flags = [np.array([op[i] for op in ops]) for i in range(3, 7)]
        return lists + flags

    steps, last = divmod(n, batch_size)
    full = prepared(batch_size)
    tail = prepared(last) if last else None

    def mode(pool, n_parts):
        def epoch(r):
            threads.use_pool(pool)
            start = time.perf_counter()
            run(*full, steps, n_parts)
            if tail:
                run(*tail, 1, n_parts)
            return time.perf_counter() - start
        threads.use_pool(pool)
        for ops in (full, tail) if tail else (full,):
            run(*ops, 1, n_parts)                        # compile, one step
        return epoch

    return {"openblas threads": mode("blas", 1), "split over numba threads": mode("numba", threads.numba_threads())}


def epoch_flops(n, batch_size, sizes=MLP_SIZES):
    return sum(2 * m * n_ * k * count for m, n_, k, count in epoch_gemm_shapes(n, batch_size, sizes))


def sgemm_peak(size=1024, repeat=5):
    """GFLOP/s of a large square sgemm with OpenBLAS's threads at the thread setting (this
    machine's roofline)."""
    threads.use_pool("blas")
    a = np.random.rand(size, size).astype(np.float32)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)
    best = min(_timed(lambda: np.matmul(a, a, out=c)) for _ in range(repeat))
    return 2 * size ** 3 / best / 1e9


def _timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def torch_epoch(model_name, x, y, batch_size, n_threads, seed=0, metrics=False):
    """``epoch(r)``: the seconds of one idiomatic PyTorch CPU epoch (the same model, data and
    thread count, shuffled with seed ``seed + r``), or None without torch.

    The plain loop (``metrics`` False) only trains: fewer operations than ``fit``, which also
    sums the loss and counts correct predictions every batch for its History. With ``metrics``
    the loop does that too (``loss.item()``, arg-max accuracy), as most training loops do.
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(n_threads)
    torch.manual_seed(seed)
    nn = torch.nn
    if model_name == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 100),
                            nn.ReLU(), nn.Linear(100, 10))
    else:
        net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                            nn.Linear(84, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(order):
        total, correct = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            out, target = net(xt[idx]), yt[idx]
            loss = loss_fn(out, target)
            loss.backward()
            opt.step()
            if metrics:
                total += loss.item() * len(idx)
                correct += int((out.argmax(1) == target).sum())
        return total, correct

    epoch(torch.arange(2 * batch_size))

    def timed_epoch(r):
        torch.set_num_threads(n_threads)
        order = torch.from_numpy(np.random.default_rng(seed + r).permutation(len(x)))
        return _timed(lambda: epoch(order))

    return timed_epoch


def run(model_name="mlp", batch_sizes=(32,), dataset="fashion-mnist", data_dir=None,
        samples=50000, repeat=3, backends=None, torch=True, n_threads=None,
        settle=SETTLE_SECONDS):
    """Time every contender; returns a list of result dicts (one per batch size).

    The contenders take turns, one epoch each per round, for ``repeat`` rounds, and each keeps
    its best epoch: a neighbour that loads the machine for a while slows every contender's
    epochs of that moment rather than all epochs of one contender. Before each epoch the
    benchmark sleeps ``settle`` seconds, so that the idle threads of the previous contender's
    pool (OpenBLAS's spin for about 0.1 s before they sleep) do not compete with this one's,
    as they never would in a program that trains with one framework.
    """
    if n_threads is not None:
        threads.set_num_threads(n_threads)
    n_threads = threads.get_num_threads()
    x, y = load_images(dataset, data_dir, samples)
    backends = backends or available_backends()
    results = []
    for bs in batch_sizes:
        r = {"model": model_name, "batch_size": bs, "samples": len(x), "threads": n_threads,
             "seconds": {}}
        epochs = {f"fastnn-{be}": fastnn_epoch(model_name, be, x, y, bs) for be in backends}
        if model_name == "mlp" and "cpu" in available_backends():
            epochs.update({f"gemm-only ({mode})": e for mode, e in gemm_epochs(len(x), bs).items()})
            r["gflop"] = epoch_flops(len(x), bs) / 1e9
        if torch:
            for name, metrics in (("pytorch", False), ("pytorch+metrics", True)):
                epoch = torch_epoch(model_name, x, y, bs, n_threads, metrics=metrics)
                if epoch is not None:
                    epochs[name] = epoch
        best = {name: np.inf for name in epochs}
        for i in range(repeat):
            for name, epoch in epochs.items():
                time.sleep(settle)
                best[name] = min(best[name], epoch(i))
        gemm = [t for name, t in best.items() if name.startswith("gemm-only (")]
        if gemm:
            best["gemm-only"] = min(gemm)
        r["seconds"] = best
        results.append(r)
    return results


def layer_split(model_name, backend, x, y, batch_size, seed=0):
    """One training epoch of ``backend`` run layer by layer (GenericEpoch, also for a dense
    stack that ``fit`` would compile whole) with a timer around every layer's forward and
    backward. Returns (total seconds, {(layer, "forward" | "backward"): seconds}); the rest of
    the total is the loss, the optimizer, batching and the loop."""
    from fastnn import losses, optim, training
    from fastnn.epochs import LoopEpoch
    model = build(model_name, backend, seed)
    loss = losses.CrossEntropyLoss().bind(model.be)
    opt = optim.SGD(model.parameters(), lr=0.1)
    spent = collections.defaultdict(float)
    for i, (layer, act) in enumerate(model.steps):
        name = f"{i:2d} {type(layer).__name__}"
        if act is not None:
            name += f"+{act.name.lower()}"

        # the model passes a fused step's act as one more argument: forward the arguments as given
        def forward(*args, f=layer.forward, name=name):
            start = time.perf_counter()
            out = f(*args)
            spent[(name, "forward")] += time.perf_counter() - start
            return out

        def backward(*args, f=layer.backward, name=name):
            start = time.perf_counter()
            out = f(*args)
            spent[(name, "backward")] += time.perf_counter() - start
            return out

        layer.forward, layer.backward = forward, backward
    xs, ys, labels = training.prepare_data(model, loss, x, y)
    warm = 2 * batch_size                                   # compile and allocate first
    LoopEpoch(model, loss, opt, xs[:warm], ys[:warm], None if labels is None else labels[:warm],
              batch_size).run(0, None, lambda b, total: None)
    spent.clear()
    epoch = LoopEpoch(model, loss, opt, xs, ys, labels, batch_size)
    start = time.perf_counter()
    epoch.run(0, np.random.default_rng(seed).permutation(len(xs)), lambda b, total: None)
    return time.perf_counter() - start, dict(spent)


def split_lines(total, spent):
    """The report of :func:`layer_split`: one line per layer and phase, then the rest."""
    lines = []
    for (layer, phase), sec in sorted(spent.items()):
        lines.append(f"    {layer:20s} {phase:8s} {sec:7.3f} s  {100 * sec / total:5.1f} %")
    rest = total - sum(spent.values())
    lines.append(f"    {'loss, optimizer, batching, loop':29s} {rest:7.3f} s  {100 * rest / total:5.1f} %")
    return lines


def report(results, peak):
    lines = [f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto-detect)')}"]
    for r in results:
        lines.append(f"\n{r['model']} epoch, batch {r['batch_size']}, {r['samples']} samples, "
                     f"{r['threads']} thread(s); sgemm peak {peak:.0f} GFLOP/s")
        secs = r["seconds"]
        width = max(map(len, secs))
        for name, t in secs.items():
            extra = f"  {r['gflop'] / t:6.1f} GFLOP/s" if "gflop" in r else ""
            lines.append(f"  {name:{width}s} {t:8.3f} s{extra}")
        cpu = secs.get("fastnn-cpu")
        for other in ("pytorch", "pytorch+metrics", "fastnn-numpy", "gemm-only"):
            if cpu and other in secs:
                lines.append(f"  fastnn-cpu / {other:15s} = {cpu / secs[other]:.2f}")
    return "\n".join(lines)


def main(args):
    results = run(args.model, args.batch_size, args.dataset, args.data_dir, args.samples,
                  args.repeat, args.backends, not args.no_torch, args.threads)
    peak = sgemm_peak()
    print(report(results, peak))
    if args.split:
        backends = args.backends or available_backends()
        backend = "cpu" if "cpu" in backends else backends[0]
        x, y = load_images(args.dataset, args.data_dir, args.samples)
        for bs in args.batch_size:
            total, spent = layer_split(args.model, backend, x, y, bs)
            print(f"\nfastnn-{backend}, batch {bs}: one epoch layer by layer with a timer around "
                  f"each layer, {total:.3f} s")
            print("\n".join(split_lines(total, spent)))
    if args.json:
        from fastnn.io import atomic_write_text
        meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                "sgemm_peak_gflops": peak, "cpus": os.cpu_count(),
                "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto")}
        atomic_write_text(args.json, json.dumps({"meta": meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    from fastnn.cli import main as cli_main
    sys.exit(cli_main(["bench"] + sys.argv[1:]))
