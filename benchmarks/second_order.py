"""Loss against wall time and against gradient evaluations for SGD, Adam, L-BFGS, conjugate
gradients and Newton on the digits MLP (64-32-10 tanh, float64, the bundled digits' training
split), as the course texts compare the methods. One run on this machine; writes a PNG::

    python benchmarks/second_order.py [--seconds 8] [--backend cpu] [--out PNG]

A gradient evaluation is one pass over the whole training set: an epoch of mini-batch SGD or
Adam, one closure call of L-BFGS / CG, and for Newton one closure call or half a
Hessian-vector product (the R-operator costs about two gradients). The plotted loss is the
full training loss at each point, computed outside the timed region.
"""
import argparse
import json
import time

import numpy as np

import fastnn as fn


def make_model(backend):
    return fn.Sequential([fn.Flatten(), fn.Dense(64, 32), fn.Tanh(), fn.Dense(32, 10)],
                         backend=backend, dtype="float64", seed=0)


def full_loss(model, x, y):
    return model.evaluate(x, y, loss=fn.CrossEntropyLoss())["loss"]


def run_minibatch(make_opt, x, y, backend, seconds, batch_size=32):
    warm = make_model(backend)          # compiles and measures the GEMM shapes outside the clock
    warm.fit(x, y, optimizer=make_opt(warm.parameters()), batch_size=batch_size, verbose=0)
    model = make_model(backend)
    opt = make_opt(model.parameters())
    points, elapsed, passes = [(0.0, 0, full_loss(model, x, y))], 0.0, 0
    while elapsed < seconds:
        start = time.perf_counter()
        model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=1,
                  batch_size=batch_size, verbose=0, shuffle=True)
        elapsed += time.perf_counter() - start
        passes += 1
        points.append((elapsed, passes, full_loss(model, x, y)))
    return points


def run_closure(make_opt, x, y, backend, seconds, evaluations):
    model = make_model(backend)
    loss = fn.CrossEntropyLoss().bind(model.be)
    xd = model.be.to_device(model.check_inputs(x))
    yd = model.be.to_device(np.ascontiguousarray(y, dtype=np.int64))

    def closure():
        value = loss.compute(model.forward_batch(xd, training=True), yd)
        model.backward_batch(loss.grad, need_input_grad=False, accumulate=False)
        return value
    opt = make_opt(model, loss, x, y)
    closure()                           # compiles and measures the GEMM shapes outside the clock
    if isinstance(opt, fn.optim.Newton):
        opt.hvp(np.zeros(model.num_parameters()))
    points, elapsed = [(0.0, 0, full_loss(model, x, y))], 0.0
    while elapsed < seconds:
        start = time.perf_counter()
        opt.step(closure)
        elapsed += time.perf_counter() - start
        points.append((elapsed, evaluations(opt), full_loss(model, x, y)))
    return points


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time budget per method")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--out", default="benchmarks/second_order.png")
    args = parser.parse_args(argv)
    (x, y), _ = fn.datasets.load_digits_split()
    x = x.astype(np.float64)
    evals = lambda opt: opt.func_evals                                      # noqa: E731
    results = {
        "SGD (lr 0.1, momentum 0.9, batch 32)": run_minibatch(
            lambda p: fn.optim.SGD(p, lr=0.1, momentum=0.9), x, y, args.backend, args.seconds),
        "Adam (lr 1e-3, batch 32)": run_minibatch(
            lambda p: fn.optim.Adam(p, lr=1e-3), x, y, args.backend, args.seconds),
        "L-BFGS (strong Wolfe, full batch)": run_closure(
            lambda m, l, xx, yy: fn.optim.LBFGS(m.parameters(), max_iter=5,
                                                line_search_fn="strong_wolfe"),
            x, y, args.backend, args.seconds, evals),
        "CG (Polak-Ribiere, full batch)": run_closure(
            lambda m, l, xx, yy: fn.optim.ConjugateGradient(m.parameters(), max_iter=5),
            x, y, args.backend, args.seconds, evals),
        "Newton-CG (damping 1e-3, exact Hv, full batch)": run_closure(
            lambda m, l, xx, yy: fn.optim.Newton(
                m.parameters(), damping=1e-3, cg_max_iter=20,
                hvp=lambda v: m.hessian_vector_product(xx, yy, l, v, method="exact")),
            x, y, args.backend, args.seconds, lambda opt: opt.func_evals + 2 * opt.hvp_calls),
    }
    summary = {name: {"points": len(p) - 1, "seconds": round(p[-1][0], 2),
                      "gradient_evaluations": p[-1][1], "final_loss": p[-1][2],
                      "loss_after_1s": min(l for t, _, l in p if t <= 1.0)}
               for name, p in results.items()}
    print(json.dumps(summary, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, p in results.items():
        t, g, l = zip(*p)
        axes[0].semilogy(t, l, label=name)
        axes[1].semilogy(g, l, label=name)
    axes[0].set_xlabel("wall time (s)")
    axes[1].set_xlabel("gradient evaluations (full-data passes)")
    axes[1].set_xscale("symlog", linthresh=10)
    for ax in axes:
        ax.set_ylabel("training loss (cross-entropy)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"digits MLP 64-32-10 tanh, float64, {len(x)} samples, backend {args.backend}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
