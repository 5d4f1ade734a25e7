"""Extract the held-out NCCL all-reduce rows of models/calibration/nccl.toml from Vidur's H100 network profiles.

Reads ../shared/data/vidur-profiling/network/h100_dgx/all_reduce.csv (microsoft/vidur, MIT; see NOTICE): NCCL
all-reduce inside one 8 x H100 DGX node over 2, 4 and 8 GPUs, 2 KiB to 64 MiB in 8 KiB steps. Keeps the measured
size nearest to each point of a grid of factor sqrt(2) from 2 KiB to 64 MiB, per GPU count, and prints TOML rows
(ranks, size_bytes, time_us) of the median time.

Usage: python models/calibration/scripts/vidur_nccl.py [../shared/data/vidur-profiling] > rows.toml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

RANKS = (2, 4, 8)
GRID = tuple(int(round(2048 * 2 ** (i / 2))) for i in range(31))  # 2 KiB ... 64 MiB


def rows(root: Path) -> list[tuple]:
    d = pl.read_csv(root / "network" / "h100_dgx" / "all_reduce.csv")
    out = []
    for n in RANKS:
        g = d.filter(pl.col("num_workers") == n).unique("size", keep="first").sort("size")
        sizes, ms = g["size"].to_numpy(), g["time_stats.all_reduce.median"].to_numpy()
        picked = sorted({int(np.argmin(np.abs(sizes - s))) for s in GRID})
        out += [(n, int(sizes[i]), round(float(ms[i]) * 1000.0, 2)) for i in picked]
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/vidur-profiling")
    for n, size, us in rows(root):
        print(f"  [{n}, {size}, {us}],")
