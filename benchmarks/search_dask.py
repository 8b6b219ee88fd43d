"""A 16-trial random search, sequential (one thread) against two local Dask workers (one
thread each): wall time, speed-up, and whether the two results tables are identical.

    python benchmarks/search_dask.py [--trials 16] [--train 10000] [--epochs 5] [--json]

Data: Fashion-MNIST (the first ``--train`` training images, the first 2000 test images for
validation), MLPs on the cpu backend, Adam with early stopping (patience 2). The cluster's start
and warm-up (both sides run a tiny search first) is timed apart from the search.
"""
import argparse
import json
import math
import time

import numpy as np

import fastnn as fn
from fastnn import search


def build(hidden, lr):
    model = fn.models.mlp([784, hidden, 10], backend="cpu", seed=0)
    return model, {"lr": lr}


SPACE = {"hidden": [64, 128, 256], "lr": search.loguniform(1e-4, 3e-2)}
VOLATILE = ("seconds", "worker")


def same_table(a, b):
    def norm(rows):
        return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in r.items() if k not in VOLATILE} for r in rows]
    return norm(a) == norm(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import distributed
    (x, y), (xt, yt) = fn.datasets.load_fashion_mnist()
    x, y = x[:args.train].reshape(args.train, -1), y[:args.train]
    xv, yv = xt[:2000].reshape(2000, -1), yt[:2000]
    kw = dict(n_iter=args.trials, validation_data=(xv, yv), epochs=args.epochs, batch_size=64,
              optimizer="adam", patience=2, seed=0)

    def warm_up(**executor):                     # load the compiled kernels, GEMM choices
        search.random_search(build, SPACE, (x[:256], y[:256]), n_iter=4, epochs=1,
                             validation_data=(xv[:64], yv[:64]), **executor)

    fn.set_num_threads(1)
    warm_up()
    start = time.perf_counter()
    seq = search.random_search(build, SPACE, (x, y), n_threads=1, **kw)
    t_seq = time.perf_counter() - start

    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        warm_up(executor=client)
        t_cluster = time.perf_counter() - start
        start = time.perf_counter()
        par = search.random_search(build, SPACE, (x, y), executor=client, **kw)
        t_par = time.perf_counter() - start

    out = {"trials": args.trials, "train": args.train, "epochs": args.epochs,
           "sequential_s": round(t_seq, 2), "dask_2_workers_s": round(t_par, 2),
           "cluster_start_s": round(t_cluster, 2), "speed_up": round(t_seq / t_par, 2),
           "identical_tables": same_table(seq.results, par.results),
           "best_params": seq.best_params, "best_score": seq.best_score,
           "epochs_run": [r["epochs"] for r in seq.results]}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>18}: {v}")


if __name__ == "__main__":
    main()
