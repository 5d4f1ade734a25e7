"""Calibration benchmark: a fixed mix of the harness's kinds of work (heap event loop, numpy, polars).

The speed gate divides every benchmark by this one, measured in the same run, so a slower or busier machine moves
both alike and only a real regression in the harness moves the ratio.
"""

import heapq

import numpy as np
import polars as pl


def _calibration_work() -> float:
    heap: list[tuple[float, int]] = []
    t = 0.0
    for i in range(20_000):  # an event loop's push/pop pattern
        heapq.heappush(heap, ((i * 7919) % 10_007 * 1e-3, i))
        if len(heap) > 64:
            t, _ = heapq.heappop(heap)
    x = np.arange(200_000, dtype=np.float64)  # vectorised cost arithmetic
    acc = float(np.sqrt(x * 1.5 + 2.0).sum())
    frame = pl.DataFrame({"k": np.arange(50_000) % 97, "v": np.arange(50_000, dtype=np.float64)})
    acc += float(frame.group_by("k").agg(pl.col("v").sum()).get_column("v").sum())  # columnar IO
    return t + acc


def test_calibration(benchmark):
    result = benchmark.pedantic(_calibration_work, rounds=15, iterations=1, warmup_rounds=2)
    assert result > 0
