"""`trace_stats`: the summary `bench trace info` prints (JSON-serialisable)."""

from __future__ import annotations

import polars as pl

from harness.trace.shape import mean_rate_req_s
from harness.trace.workload import Workload

PERCENTILES = (50, 90, 99)


def _lengths(col: pl.Series) -> dict[str, float | int]:
    out = {f"p{p}": int(col.quantile(p / 100, interpolation="nearest")) for p in PERCENTILES}
    return {**out, "mean": float(col.mean()), "min": int(col.min()), "max": int(col.max())}


def prefix_reuse(requests: pl.DataFrame) -> dict[str, float | int] | None:
    """Block reuse under an unbounded prefix cache, in arrival order.

    A request's block hits are the leading run of its blocks whose ids an earlier request already brought in (a
    prefix cache can reuse a prefix only up to its first unseen block); ratio = hits / all blocks.
    """
    blocks = requests.select(pl.int_range(pl.len()).alias("req"), "prefix_blocks").drop_nulls("prefix_blocks")
    flat = blocks.explode("prefix_blocks").drop_nulls("prefix_blocks")
    if flat.height == 0:
        return None
    flat = flat.with_columns(pl.col("req").min().over("prefix_blocks").alias("first_req"))
    hit = (pl.col("first_req") < pl.col("req")).cast(pl.Int8)
    flat = flat.with_columns(hit.cum_min().over("req").alias("prefix_hit"))
    total = flat.height
    hits = int(flat.get_column("prefix_hit").sum())
    return {"blocks_total": total, "blocks_unique": int(flat.get_column("prefix_blocks").n_unique()),
            "block_hits": hits, "block_hit_ratio": hits / total}


def trace_stats(workload: Workload) -> dict:
    requests = workload.requests
    arrival = requests.get_column("arrival_s")
    gaps = arrival.diff().drop_nulls()
    gap_mean = float(gaps.mean()) if gaps.len() else None
    stats: dict = {
        "name": workload.name,
        "format": workload.source_format,
        "path": workload.source_path,
        "requests": requests.height,
        "duration_s": float(arrival.max() - arrival.min()),
        "rate_req_s": mean_rate_req_s(requests),
        "inter_arrival_s": None if gap_mean is None else {
            "mean": gap_mean,
            **{f"p{p}": float(gaps.quantile(p / 100, interpolation="nearest")) for p in PERCENTILES},
            # Burstiness: 1 for Poisson arrivals, above 1 burstier, below 1 more regular.
            "cv": float(gaps.std(ddof=0) / gap_mean) if gap_mean > 0 else None,
        },
        "distinct_arrival_times": int(arrival.n_unique()),
        "input_tokens": _lengths(requests.get_column("input_tokens")),
        "output_tokens": _lengths(requests.get_column("output_tokens")),
        "block_size": workload.block_size,
        "prefix_reuse": prefix_reuse(requests) if workload.has_prefix_blocks else None,
        "sessions": int(requests.get_column("session_id").drop_nulls().n_unique()),
        "notes": list(workload.notes),
    }
    return stats
