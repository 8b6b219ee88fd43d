"""Sequential Fashion-MNIST with an LSTM: fastnn's cpu backend against PyTorch on the CPU.

Each image is a sequence of 28 steps of 28 pixels; the model is LSTM(28, 128) then
Dense(128, 10), trained with Adam (lr 1e-3), batch 128, cross-entropy, the same way in both
libraries. One run, on ``--threads`` threads (2 by default):

* ``--time-epochs`` (1): seconds of one training epoch of each (after a short warm-up of both,
  so Numba's compilation and PyTorch's first-call set-up are not counted), and the ratio;
* ``--epochs`` (0 = skip): test accuracy after that many epochs, fastnn with seed 0 and PyTorch
  with each of ``--torch-seeds`` (its spread over seeds is the yardstick).

    python benchmarks/rnn_epoch.py [--data-dir DIR] [--threads 2] [--epochs 3] [--json]
"""
import argparse
import json
import os
import time

import numpy as np


def load(data_dir):
    import fastnn as fn
    (x, y), (xt, yt) = fn.datasets.load_fashion_mnist(data_dir)
    return x.reshape(-1, 28, 28), y, xt.reshape(-1, 28, 28), yt


def fastnn_model(seed):
    import fastnn as fn
    return fn.Sequential([fn.LSTM(28, 128), fn.Dense(128, 10)], backend="cpu", seed=seed)


def fastnn_train(model, x, y, epochs, seed):
    import fastnn as fn
    opt = fn.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    model.fit(x, y, loss=fn.CrossEntropyLoss(), optimizer=opt, epochs=epochs, batch_size=128,
              shuffle=True, seed=seed, verbose=0)
    return time.perf_counter() - start


class TorchNet:
    def __init__(self, torch, seed):
        torch.manual_seed(seed)
        self.torch = torch
        self.lstm = torch.nn.LSTM(28, 128, batch_first=True)
        self.head = torch.nn.Linear(128, 10)
        self.params = list(self.lstm.parameters()) + list(self.head.parameters())

    def __call__(self, xb):
        _, (h, _) = self.lstm(xb)
        return self.head(h[0])


def torch_train(torch, net, x, y, epochs, seed):
    opt = torch.optim.Adam(net.params, lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(gen.permutation(len(x)))
        for i in range(0, len(x), 128):
            idx = order[i:i + 128]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def torch_accuracy(torch, net, x, y):
    with torch.no_grad():
        out = torch.cat([net(torch.from_numpy(x[i:i + 1000])) for i in range(0, len(x), 1000)])
    return float((out.argmax(1).numpy() == y).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-epochs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--torch-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    import fastnn as fn
    fn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    x, y, xt, yt = load(args.data_dir)
    result = {"threads": args.threads, "cpu": os.uname().machine}
    if args.time_epochs:
        fastnn_train(fastnn_model(0), x[:256], y[:256], 1, 0)            # warm-up (compiles)
        torch_train(torch, TorchNet(torch, 0), x[:256], y[:256], 1, 0)
        f = fastnn_train(fastnn_model(0), x, y, args.time_epochs, 0)
        t = torch_train(torch, TorchNet(torch, 0), x, y, args.time_epochs, 0)
        result.update(fastnn_epoch_s=f / args.time_epochs, torch_epoch_s=t / args.time_epochs,
                      ratio=f / t)
    if args.epochs:
        model = fastnn_model(0)
        fastnn_train(model, x, y, args.epochs, 0)
        result["fastnn_accuracy"] = model.evaluate(xt, yt)["accuracy"]
        accs = []
        for seed in args.torch_seeds:
            net = TorchNet(torch, seed)
            torch_train(torch, net, x, y, args.epochs, seed)
            accs.append(torch_accuracy(torch, net, xt, yt))
        result.update(torch_accuracies=accs, epochs=args.epochs)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
