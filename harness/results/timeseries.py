"""timeseries.parquet: the run in fixed time buckets (throughput, queues, batch, KV use, cache hits, utilisation)."""

from __future__ import annotations

import numpy as np
import polars as pl

from harness.sim.result import COMPLETED, REJECTED, Grid, SimResult
from harness.trace.workload import Workload

BUCKETS = 200


def _count_at(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    """How many of `times` (NaN ignored) are <= each t."""
    s = np.sort(times[~np.isnan(times)])
    return np.searchsorted(s, t, side="right")


def _sum_at(times: np.ndarray, weights: np.ndarray, t: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(times)
    order = np.argsort(times[ok], kind="stable")
    s, w = times[ok][order], np.concatenate([[0.0], np.cumsum(weights[ok][order], dtype=np.float64)])
    return w[np.searchsorted(s, t, side="right")]


def _rebin(grid: Grid, cell_s: float, cells_per_bucket: int, buckets: int) -> np.ndarray:
    """Whole grid cells (coarsened to cell_s) summed into each bucket (a bucket is a whole number of cells, so
    nothing straddles)."""
    cells = grid.coarsened_to(cell_s)
    values = np.zeros(buckets * cells_per_bucket)
    k = min(values.size, cells.size)
    values[:k] = cells[:k]
    values[-1] += cells[k:].sum()      # the instant the run ends may open one more cell
    return values.reshape(buckets, cells_per_bucket).sum(axis=1)


def timeseries(result: SimResult, workload: Workload, buckets: int = BUCKETS) -> pl.DataFrame:
    req = workload.requests
    arrival = req.get_column("arrival_s").to_numpy().astype(np.float64)
    inp = req.get_column("input_tokens").to_numpy().astype(np.float64)
    out = req.get_column("output_tokens").to_numpy()
    # Buckets from t=0 (the simulator's grids start there), each a whole number of the simulator's grid cells (of
    # the coarsest grid: a long run merges cells).
    grids = (result.output_tokens_grid, result.prefill_busy_grid, result.decode_busy_grid)
    cell_s = max(g.cell_s for g in grids)
    cells = max(int(np.ceil(result.end_s / cell_s)), 1)
    per = -(-cells // buckets)
    buckets = -(-cells // per)
    width = per * cell_s
    edges = np.arange(buckets + 1) * width
    mid = (edges[:-1] + edges[1:]) / 2
    admitted = result.status != REJECTED    # queued for prefill counts the wait for decode KV too
    decoded = (result.status == COMPLETED) & (out > 1)
    nan = np.full(arrival.size, np.nan)

    def hist(times: np.ndarray, weights: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(times)
        idx = np.minimum((times[ok] / width).astype(np.int64), buckets - 1)
        return np.bincount(idx, weights=weights[ok], minlength=buckets)

    prefill_queue = _count_at(np.where(admitted, arrival, nan), mid) - _count_at(result.prefill_start_s, mid)
    decode_started = _count_at(result.decode_start_s, mid)
    decode_queue = _count_at(np.where(decoded, result.prefill_end_s, nan), mid) - decode_started
    running = decode_started - _count_at(np.where(decoded, result.finish_s, nan), mid)
    kv = np.where(decoded, inp + out, 0.0)
    kv_capacity = result.decode_instances * result.caps.decode_kv_tokens
    kv_used = (_sum_at(np.where(decoded, result.reserve_s, nan), kv, mid)
               - _sum_at(np.where(decoded, result.finish_s, nan), kv, mid))
    cached_in = hist(result.prefill_start_s, result.cached_tokens.astype(np.float64))
    input_in = hist(result.prefill_start_s, inp)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = np.where(input_in > 0, cached_in / input_in, np.nan)
    return pl.DataFrame({
        "t_s": edges[:-1],
        "input_tokens_per_s": hist(result.prefill_end_s, inp) / width,
        "output_tokens_per_s": _rebin(result.output_tokens_grid, cell_s, per, buckets) / width,
        "prefill_queue": prefill_queue.astype(np.int64),
        "decode_queue": decode_queue.astype(np.int64),
        "running_batch": running.astype(np.int64),
        "kv_used_frac": kv_used / kv_capacity if kv_capacity else np.zeros(buckets),
        "cache_hit_ratio": pl.Series(hit, nan_to_null=True),
        "prefill_util": _rebin(result.prefill_busy_grid, cell_s, per, buckets) / (result.prefill_instances * width),
        "decode_util": _rebin(result.decode_busy_grid, cell_s, per, buckets) / (result.decode_instances * width),
    })
