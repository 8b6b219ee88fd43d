"""The adding problem (Hochreiter & Schmidhuber 1997): does a recurrent network carry two
numbers across T = 50 steps?

Each sequence has T steps of two inputs: a value drawn uniformly from [0, 1] and a marker that
is 1 at exactly two steps (one in each half) and 0 elsewhere; the target is the sum of the two
marked values. Always answering 1 (the mean) gives a mean squared error of 1/6 ~ 0.167; a
network that solves the task goes far below it. An LSTM and a plain tanh RNN of the same width
are trained the same way (Adam, clipping by global norm, the same data and seed) on the cpu
backend and their test errors printed; the LSTM should solve it and the tanh RNN should stay
near the 1/6 baseline, the vanishing gradient the course texts describe.

    python experiments/adding_problem.py [--steps 50] [--epochs 20] [--backend cpu]
"""
import argparse
import time

import numpy as np

import fastnn as fn

SOLVED = 0.05
"""Test mean squared error below which the task counts as solved (the baseline is 1/6)."""


def adding_data(n, steps, rng):
    """x (n, steps, 2) float32, y (n, 1): values, markers and the sums of the marked values."""
    values = rng.uniform(0, 1, (n, steps))
    first = rng.integers(0, steps // 2, n)
    second = rng.integers(steps // 2, steps, n)
    marks = np.zeros((n, steps))
    marks[np.arange(n), first] = marks[np.arange(n), second] = 1
    x = np.stack([values, marks], axis=2).astype(np.float32)
    return x, (values * marks).sum(axis=1, keepdims=True).astype(np.float32)


def train(cell, x, y, xt, yt, hidden, epochs, backend, seed):
    """Test mean squared error (plain, not halved) of ``cell`` after training, and seconds."""
    layer = fn.LSTM(2, hidden) if cell == "lstm" else fn.RNN(2, hidden, "tanh")
    model = fn.Sequential([layer, fn.Dense(hidden, 1)], backend=backend, seed=seed)
    opt = fn.optim.Adam(model.parameters(), lr=1e-3, clip_grad_norm=1.0)
    start = time.perf_counter()
    model.fit(x, y, loss=fn.MSELoss(), optimizer=opt, epochs=epochs, batch_size=64, seed=seed,
              verbose=0)
    seconds = time.perf_counter() - start
    return float(np.mean((model.predict(xt) - yt) ** 2)), seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    x, y = adding_data(args.train, args.steps, rng)
    xt, yt = adding_data(2000, args.steps, rng)
    print(f"adding problem, T = {args.steps}, {args.train} training sequences, "
          f"{args.hidden} units, {args.epochs} epochs; baseline MSE {np.mean((yt - 1) ** 2):.4f}")
    for cell in ("lstm", "rnn_tanh"):
        mse, seconds = train(cell, x, y, xt, yt, args.hidden, args.epochs, args.backend,
                             args.seed)
        verdict = "solved" if mse < SOLVED else "not solved"
        print(f"{cell:9s} test MSE {mse:.4f} ({verdict}, threshold {SOLVED}) in {seconds:.0f} s")


if __name__ == "__main__":
    main()
