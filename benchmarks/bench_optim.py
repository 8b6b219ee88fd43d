"""One optimizer step over the MLP's parameters: every fastnn optimizer against PyTorch's Adam.

    python3 -m pytest benchmarks/bench_optim.py --benchmark-only -q     # pytest-benchmark group
    python3 benchmarks/bench_optim.py [--threads 2]                     # the plain table

The buffer is the 784-400-100-10 MLP's (weights and biases: 355 110 float32 values), built by
``fn.models.mlp(MLP_SIZES, backend="cpu").parameters()`` with random gradients, so the fused
path runs over the model's one flat buffer as in training. PyTorch's ``Adam(fused=True)`` and
``Adam(foreach=True)`` step one tensor of the same size. Issue 14's target: every fastnn step
at most the time of PyTorch's fused Adam. :func:`step_table` gives the same figures without
pytest (benchmarks/matrix.py appends them to the matrix).
"""
import sys
import time

import numpy as np

import fastnn as fn

try:
    import pytest
except ImportError:            # step_table works without pytest (used by matrix.py)
    pytest = None

MLP_SIZES = (784, 400, 100, 10)

# name -> (fn.optim class name, keyword arguments)
FASTNN_STEPS = {
    "SGD": ("SGD", dict(lr=0.01)),
    "SGD momentum": ("SGD", dict(lr=0.01, momentum=0.9)),
    "SGD Nesterov": ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True)),
    "SGD weight_decay+l1": ("SGD", dict(lr=0.01, weight_decay=1e-4, l1=1e-5)),
    "AdaGrad": ("AdaGrad", dict(lr=0.01)),
    "RMSProp": ("RMSProp", dict(lr=1e-3)),
    "RMSProp centered+momentum": ("RMSProp", dict(lr=1e-3, centered=True, momentum=0.9)),
    "Adam": ("Adam", dict(lr=1e-3)),
    "AMSGrad": ("Adam", dict(lr=1e-3, amsgrad=True)),
    "AdamW": ("AdamW", dict(lr=1e-3, weight_decay=0.01)),
}
TORCH_STEPS = {"torch Adam fused": {"fused": True}, "torch Adam foreach": {"foreach": True}}
REFERENCE = "torch Adam fused"


def _backend():
    return "cpu" if "cpu" in fn.available_backends() else "numpy"


def fastnn_step(name, seed=0):
    """(step, n): ``step()`` runs one step of optimizer ``name`` over a fresh MLP's parameters
    (gradients random, small); n is the parameter count."""
    cls, kwargs = FASTNN_STEPS[name]
    model = fn.models.mlp(MLP_SIZES, backend=_backend(), seed=seed)
    params = model.parameters()
    rng = np.random.default_rng(seed)
    for p in params:
        p.grad[...] = rng.standard_normal(p.grad.shape).astype(p.grad.dtype) * 1e-2
    opt = getattr(fn.optim, cls)(params, **kwargs)
    opt.step()                                         # compile, allocate state
    return opt.step, sum(p.size for p in params)


def torch_step(name, n, seed=0):
    """``step()`` of PyTorch Adam (implementation of ``name``) over one tensor of n float32
    values, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(n, generator=g))
    p.grad = torch.randn(n, generator=g) * 1e-2
    opt = torch.optim.Adam([p], lr=1e-3, **TORCH_STEPS[name])
    opt.step()
    return opt.step


def parameter_count():
    return sum(p.size for p in fn.models.mlp(MLP_SIZES, backend=_backend()).parameters())


def _best_us(step, repeat, number):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            step()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def step_table(n_threads=None, torch=True, repeat=20, number=5):
    """[{"optimizer", "us", "ratio"}]: best microseconds of one step (``repeat`` rounds of
    ``number`` steps, contenders taking turns each round) and the ratio to PyTorch's fused Adam
    (None without torch)."""
    if n_threads is not None:
        fn.set_num_threads(n_threads)
    n_threads = fn.get_num_threads()
    steps = {}
    n = None
    for name in FASTNN_STEPS:
        steps[name], n = fastnn_step(name)
    if torch:
        try:
            import torch as _torch
            _torch.set_num_threads(n_threads)
        except ImportError:
            pass
        for name in TORCH_STEPS:
            s = torch_step(name, n)
            if s is not None:
                steps[name] = s
    best = {name: np.inf for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            best[name] = min(best[name], _best_us(step, 1, number))
    ref = best.get(REFERENCE)
    return [{"optimizer": name, "us": us, "ratio": us / ref if ref else None, "parameters": n,
             "threads": n_threads, "fastnn": name in FASTNN_STEPS} for name, us in best.items()]


def format_step_table(rows, markdown=False):
    """"optimizer step us, fastnn / torch fused Adam" as a plain (or Markdown) table."""
    n = rows[0]["parameters"] if rows else 0
    title = (f"one optimizer step over {n} float32 parameters (the MLP's), {rows[0]['threads'] if rows else '?'} "
             f"thread(s): microseconds, and the ratio to {REFERENCE}")
    lines = [title, ""]
    if markdown:
        lines += ["| optimizer | step us | / torch fused Adam |", "|:--|--:|--:|"]
        lines += [f"| {r['optimizer']} | {r['us']:.0f} | {'-' if r['ratio'] is None else format(r['ratio'], '.2f')} |"
                  for r in rows]
    else:
        width = max(len(r["optimizer"]) for r in rows) if rows else 10
        lines += [f"  {r['optimizer']:{width}s} {r['us']:9.0f} us  "
                  f"{'' if r['ratio'] is None else format(r['ratio'], '6.2f')}" for r in rows]
        worst = max((r for r in rows if r["fastnn"] and r["ratio"] is not None),
                    key=lambda r: r["ratio"], default=None)
        if worst:
            lines.append(f"  slowest fastnn step: {worst['optimizer']}, {worst['ratio']:.2f}x {REFERENCE}")
    return "\n".join(lines)


if pytest is not None:
    def _torch_installed():
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return True

    @pytest.mark.benchmark(group="optimizer-step")
    @pytest.mark.parametrize("name", list(FASTNN_STEPS))
    def test_fastnn_step(benchmark, name):
        step, _ = fastnn_step(name)
        benchmark(step)

    @pytest.mark.benchmark(group="optimizer-step")
    @pytest.mark.skipif(not _torch_installed(), reason="torch not installed")
    @pytest.mark.parametrize("name", list(TORCH_STEPS))
    def test_torch_step(benchmark, name):
        import torch
        torch.set_num_threads(fn.get_num_threads())
        benchmark(torch_step(name, parameter_count()))


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    print(format_step_table(step_table(a.threads, not a.no_torch), markdown=a.markdown))
    sys.exit(0)
