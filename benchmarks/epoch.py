"""Whole-epoch benchmark (same as ``fastnn bench``): fastnn backends, the GEMMs alone and PyTorch.

    python benchmarks/epoch.py --batch-size 1 32 128 1024 --threads 2
    python benchmarks/epoch.py --model lenet5 --samples 10000
"""
import sys

from fastnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench"] + sys.argv[1:]))
