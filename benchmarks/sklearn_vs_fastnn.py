"""fastnn.sklearn.MLPClassifier against scikit-learn's MLPClassifier: the same network, data
and hyper-parameters, time per epoch and test accuracy, both measured in this one run.

Defaults (issue 15): hidden (400, 100), ReLU, batch 32, 5 epochs on the first 20 000
Fashion-MNIST training images (flattened, float32 for both), tested on the 10 000 test
images, solvers sgd (lr 0.01, Nesterov momentum 0.9) and adam (lr 1e-3), alpha 1e-4,
shuffling on, tol 0 so that every epoch runs. The contenders take turns for ``--repeat``
rounds with different seeds, after one untimed warm-up fit each (kernels compiled or loaded,
GEMM choices measured); the time of an epoch is the fit's wall time over its epochs,
also given per 50 000 images.

    python benchmarks/sklearn_vs_fastnn.py [--samples 20000] [--epochs 5] [--repeat 2]
        [--solvers sgd adam] [--threads 2] [--json out.json]
"""
import argparse
import json
import time
import warnings

import numpy as np
from sklearn import neural_network
from sklearn.exceptions import ConvergenceWarning

import fastnn as fn
from fastnn import sklearn as fnsk

LR = {"sgd": 0.01, "adam": 1e-3}


def fit_one(cls, solver, seed, x, y, xt, yt, epochs, extra):
    est = cls(hidden_layer_sizes=(400, 100), solver=solver, batch_size=32, max_iter=epochs,
              learning_rate_init=LR[solver], tol=0.0, n_iter_no_change=epochs + 1,
              random_state=seed, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        est.fit(x, y)
        seconds = time.perf_counter() - start
    return {"epoch_s": seconds / est.n_iter_, "accuracy": float(est.score(xt, yt)),
            "loss": float(est.loss_), "epochs": int(est.n_iter_)}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--solvers", nargs="+", default=["sgd", "adam"], choices=sorted(LR))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backend", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    fn.set_num_threads(args.threads)
    (x, y), (xt, yt) = fn.datasets.load_fashion_mnist()
    x, y = x[:args.samples].reshape(args.samples, -1), y[:args.samples]
    xt = xt.reshape(len(xt), -1)
    contenders = {"scikit-learn": (neural_network.MLPClassifier, {}),
                  "fastnn.sklearn": (fnsk.MLPClassifier, {"backend": args.backend,
                                                          "n_threads": args.threads})}
    for cls, extra in contenders.values():      # compile / load kernels, measure GEMM choices
        for solver in args.solvers:
            fit_one(cls, solver, 0, x[:256], y[:256], xt[:256], yt[:256], 1, extra)
    rows = []
    for solver in args.solvers:
        runs = {name: [] for name in contenders}
        for seed in range(args.repeat):
            for name, (cls, extra) in contenders.items():
                runs[name].append(fit_one(cls, solver, seed, x, y, xt, yt, args.epochs, extra))
        for name, results in runs.items():
            rows.append({"solver": solver, "contender": name,
                         "best_epoch_s": min(r["epoch_s"] for r in results),
                         "accuracies": [r["accuracy"] for r in results],
                         "losses": [r["loss"] for r in results]})
        sk_s, fn_s = rows[-2]["best_epoch_s"], rows[-1]["best_epoch_s"]
        rows[-1]["speedup"] = sk_s / fn_s
    print(f"{args.samples} images, {args.epochs} epochs, batch 32, hidden (400, 100), "
          f"{args.threads} threads, best of {args.repeat} seeds")
    print(f"{'solver':6s} {'contender':15s} {'s/epoch':>8s} {'s/50k':>7s} {'accuracy per seed':30s} speed-up")
    for r in rows:
        per50k = r["best_epoch_s"] * 50000 / args.samples
        accs = " ".join(f"{a:.4f}" for a in r["accuracies"])
        speed = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        print(f"{r['solver']:6s} {r['contender']:15s} {r['best_epoch_s']:8.3f} {per50k:7.2f} "
              f"{accs:30s} {speed}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
