"""The cpu backend's SIMD GEMM (kernels/cpu/gemm_simd.py) against OpenBLAS on the products of
the MLP and LeNet-5's dense layers at batch 32, float32, in one process.

    python benchmarks/gemm_shapes.py [--threads 1 2]

"blas" is what the cpu backend used before: single-threaded OpenBLAS calls split over Numba's
threads (:func:`fastnn.kernels.cpu.parallel.pgemm`), with the workplace's OpenBLAS kernels.
Microseconds per product, the best of 3 rounds of about 20 ms each.
"""
import argparse

import numpy as np

import fastnn as fn
from conv_shapes import best_ms
from fastnn.kernels.cpu.gemm_simd import gemm_simd
from fastnn.kernels.cpu.parallel import pgemm

# (transa, M, N, K): forward x @ W and weight gradient x.T @ dz of the layers
SHAPES = [(False, 32, 400, 784), (True, 784, 400, 32), (False, 32, 100, 400), (True, 400, 100, 32),
          (False, 32, 120, 400), (True, 400, 120, 32), (False, 32, 10, 100)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    rng = np.random.default_rng(0)
    print("threads  product                      simd us   blas us  simd/blas")
    for threads in args.threads:
        fn.set_num_threads(threads)
        fn.threads.use_pool("numba")
        for transa, m, n, k in SHAPES:
            a = rng.standard_normal((k, m) if transa else (m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            c = np.zeros((m, n), np.float32)
            simd = 1e3 * best_ms(gemm_simd, transa, 1.0, a, b, 0.0, c, threads)
            blas = 1e3 * best_ms(pgemm, transa, False, 1.0, a, b, 0.0, c, threads)
            name = f"({m} x {k}) @ ({k} x {n})" + (" [a.T]" if transa else "")
            print(f"{threads:7d}  {name:28s} {simd:8.1f}  {blas:8.1f}  {simd / blas:9.2f}")


if __name__ == "__main__":
    main()
