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


def _rebin(grid: Grid, edges: np.ndarray) -> np.ndarray:
    centres = (np.arange(grid.values.size) + 0.5) * grid.cell_s
    return np.histogram(centres, bins=edges, weights=grid.values)[0]


def timeseries(result: SimResult, workload: Workload, buckets: int = BUCKETS) -> pl.DataFrame:
    req = workload.requests
    arrival = req.get_column("arrival_s").to_numpy().astype(np.float64)
    inp = req.get_column("input_tokens").to_numpy().astype(np.float64)
    out = req.get_column("output_tokens").to_numpy()
    start = float(arrival.min()) if arrival.size else 0.0
    end = max(result.end_s, start + 1e-9)
    edges = np.linspace(start, end, buckets + 1)
    width = edges[1] - edges[0]
    mid = (edges[:-1] + edges[1:]) / 2
    admitted = result.status != REJECTED    # queued for prefill counts the wait for decode KV too
    decoded = (result.status == COMPLETED) & (out > 1)
    nan = np.full(arrival.size, np.nan)

    def hist(times: np.ndarray, weights: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(times)
        return np.histogram(times[ok], bins=edges, weights=weights[ok])[0]

    prefill_queue = _count_at(np.where(admitted, arrival, nan), mid) - _count_at(result.prefill_start_s, mid)
    decode_queue = (_count_at(np.where(decoded, result.prefill_end_s, nan), mid)
                    - _count_at(result.decode_start_s, mid))
    running = _count_at(result.decode_start_s, mid) - _count_at(np.where(decoded, result.finish_s, nan), mid)
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
        "output_tokens_per_s": _rebin(result.output_tokens_grid, edges) / width,
        "prefill_queue": prefill_queue.astype(np.int64),
        "decode_queue": decode_queue.astype(np.int64),
        "running_batch": running.astype(np.int64),
        "kv_used_frac": kv_used / kv_capacity if kv_capacity else np.zeros(buckets),
        "cache_hit_ratio": pl.Series(hit, nan_to_null=True),
        "prefill_util": _rebin(result.prefill_busy_grid, edges) / (result.prefill_instances * width),
        "decode_util": _rebin(result.decode_busy_grid, edges) / (result.decode_instances * width),
    })
