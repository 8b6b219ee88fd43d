"""Cold-start cost: ``import fastnn`` + building the 784-400-100-10 MLP + one training batch,
in a fresh process each time (issue 4 asks for <= 2 s with Numba's cache warm).

    python benchmarks/startup.py            # runs it 3 times; the first run may fill the cache
"""
import subprocess
import sys

CHILD = """
import time; t0 = time.perf_counter()
import numpy as np
import fastnn as fn
t1 = time.perf_counter()
model = fn.models.mlp((784, 400, 100, 10), backend="cpu", seed=0)
x = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32)
model.fit(x, np.arange(32) % 10, optimizer="sgd", lr=0.1, epochs=1, batch_size=32, verbose=0)
t2 = time.perf_counter()
print(f"import {t1 - t0:.2f} s, build + one batch {t2 - t1:.2f} s, total {t2 - t0:.2f} s")
"""

if __name__ == "__main__":
    for run in range(3):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
        print(f"run {run + 1}: {out.stdout.strip()}")
