"""Extract NCCL rows of models/calibration/nccl.toml from Vidur's H100 network profiles (microsoft/vidur, MIT;
see NOTICE), ../shared/data/vidur-profiling/network/h100_dgx/, measured 2 KiB to 64 MiB in 8 KiB steps:

rows():     all_reduce.csv, inside one 8 x H100 DGX node over 2, 4 and 8 GPUs, at the measured sizes nearest a
            grid of factor sqrt(2), per GPU count: (ranks, size_bytes, time_us), the held-out table.
p2p_rows(): send_recv.csv, two GPUs of one node, at the measured sizes nearest a grid of factor 2:
            ("send_recv", size_bytes, time_us), the point-to-point rows of the nccl-h100-8 curve.
Times are medians.

Usage: python models/calibration/scripts/vidur_nccl.py [../shared/data/vidur-profiling] [p2p] > rows.toml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

RANKS = (2, 4, 8)
GRID = tuple(int(round(2048 * 2 ** (i / 2))) for i in range(31))  # 2 KiB ... 64 MiB


def _nearest(g: pl.DataFrame, column: str, grid: tuple[int, ...]) -> list[tuple[int, float]]:
    g = g.unique("size", keep="first").sort("size")
    sizes, ms = g["size"].to_numpy(), g[f"time_stats.{column}.median"].to_numpy()
    picked = sorted({int(np.argmin(np.abs(sizes - s))) for s in grid})
    return [(int(sizes[i]), round(float(ms[i]) * 1000.0, 2)) for i in picked]


def rows(root: Path) -> list[tuple]:
    d = pl.read_csv(root / "network" / "h100_dgx" / "all_reduce.csv")
    return [(n, size, us) for n in RANKS
            for size, us in _nearest(d.filter(pl.col("num_workers") == n), "all_reduce", GRID)]


def p2p_rows(root: Path) -> list[tuple]:
    d = pl.read_csv(root / "network" / "h100_dgx" / "send_recv.csv").filter(pl.col("devices_per_node") == 2)
    return [("send_recv", size, us) for size, us in _nearest(d, "send_recv", GRID[::2])]


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/vidur-profiling")
    for r in (p2p_rows if sys.argv[2:] == ["p2p"] else rows)(root):
        print("  [" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in r) + "],")
