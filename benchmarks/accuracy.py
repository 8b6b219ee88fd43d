"""Fashion-MNIST accuracy check of the reference setup, over several seeds.

MLP 784-400-100-10, ReLU, cross-entropy, SGD lr 0.1, batch 32, 5 epochs, float32; trained on
the first 50000 training images, tested on the 10000 test images.

    python benchmarks/accuracy.py --backend numpy --seeds 0 1 2
    python benchmarks/accuracy.py --model lenet5 --backend cpu --seeds 0
"""
import argparse
import time

import numpy as np

import fastnn as fn


def run(model_name, backend, seed, epochs=5, lr=0.1, batch_size=32, n_train=50000):
    (x, y), (xt, yt) = fn.datasets.load_fashion_mnist()
    if model_name == "mlp":
        model = fn.models.mlp((784, 400, 100, 10), backend=backend, seed=seed)
    else:
        model = fn.models.lenet5(backend=backend, seed=seed)
    opt = fn.optim.SGD(model.parameters(), lr=lr)
    start = time.perf_counter()
    history = model.fit(x[:n_train], y[:n_train], loss=fn.CrossEntropyLoss(), optimizer=opt,
                        epochs=epochs, batch_size=batch_size, seed=seed, verbose=0)
    total = time.perf_counter() - start
    acc = model.evaluate(xt, yt)["accuracy"]
    return acc, float(np.mean(history.history["time"])), total


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("mlp", "lenet5"), default="mlp")
    p.add_argument("--backend", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    accs = []
    for seed in args.seeds:
        acc, per_epoch, total = run(args.model, args.backend, seed, epochs=args.epochs)
        accs.append(acc)
        print(f"{args.model} backend={args.backend or fn.backend.default_backend()} seed={seed}: "
              f"test accuracy {acc:.4f}, {per_epoch:.2f} s per epoch ({total:.1f} s in all)", flush=True)
    print(f"mean test accuracy over seeds {args.seeds}: {np.mean(accs):.4f} "
          f"(min {np.min(accs):.4f}, max {np.max(accs):.4f})")


if __name__ == "__main__":
    main()
