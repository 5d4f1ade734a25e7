"""summary.json for one backend: counts, throughput per chip, latency percentiles, goodput, cache, cost."""

from __future__ import annotations

import numpy as np
import polars as pl

from harness.results.slo import Slo
from harness.sim.result import SimResult

PERCENTILES = (50, 90, 99)


def distribution(values: pl.Series) -> dict[str, float | None]:
    """p50 / p90 / p99 / mean of the non-null values (linear interpolation), None when there are none."""
    v = values.drop_nulls().to_numpy()
    if v.size == 0:
        return {**{f"p{p}": None for p in PERCENTILES}, "mean": None}
    return {**{f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES}, "mean": float(v.mean())}


def slo_mask(slo: Slo) -> pl.Expr:
    """Completed requests meeting both TTFT and TPOT objectives (one-token requests have no TPOT)."""
    return ((pl.col("status") == "completed") & (pl.col("ttft_s") <= slo.ttft_s)
            & (pl.col("tpot_ms").is_null() | (pl.col("tpot_ms") <= slo.tpot_ms)))


def summarize(table: pl.DataFrame, result: SimResult, *, backend: str, label: str, deployment: dict,
              cost_per_chip_hour_usd: float, slo: Slo, trace_duration_s: float,
              step_breakdown: dict) -> dict:
    caps = result.caps
    completed = table.filter(pl.col("status") == "completed")
    rejected = table.filter(pl.col("status") == "rejected")
    prefill_chips = result.prefill_instances * caps.prefill_chips
    decode_chips = result.decode_instances * caps.decode_chips
    chips = prefill_chips + decode_chips
    start = float(table.get_column("arrival_s").min() or 0.0) if table.height else 0.0
    duration = max(result.end_s - start, 0.0)
    in_tokens = int(completed.get_column("input_tokens").sum())
    out_tokens = int(completed.get_column("output_tokens").sum())
    prefilled = table.filter(pl.col("prefill_end_s").is_not_null())
    cached = int(prefilled.get_column("cached_tokens").sum())
    prefilled_in = int(prefilled.get_column("input_tokens").sum())

    def per_s(x: float, denom: float) -> float:
        return x / denom if denom > 0 else 0.0

    good = int(table.select(slo_mask(slo).sum()).item())
    goodput_window = trace_duration_s if trace_duration_s > 0 else duration
    cost = chips * cost_per_chip_hour_usd * duration / 3600.0
    ttft, tpot, e2e = (distribution(completed.get_column(c)) for c in ("ttft_s", "tpot_ms", "e2e_s"))
    summary = {
        "backend": backend,
        "label": label,
        "deployment": deployment,
        "requests_total": table.height,
        "requests_completed": completed.height,
        "requests_rejected": rejected.height,
        "rejected_by_reason": {r: int(c) for r, c in
                               sorted(rejected.group_by("reason").len().iter_rows())},
        "chips": chips,
        "simulated_duration_s": duration,
        "input_tokens_total": in_tokens,
        "output_tokens_total": out_tokens,
        "input_tokens_per_s_per_chip": per_s(in_tokens, duration * chips),
        "output_tokens_per_s_per_chip": per_s(out_tokens, duration * chips),
        "ttft_s": ttft,
        "tpot_ms": tpot,
        "e2e_s": e2e,
        "goodput_req_per_s": per_s(good, goodput_window),
        "slo_attainment": per_s(good, table.height),
        "cache_hit_token_ratio": per_s(cached, prefilled_in),
        "cost_per_million_output_tokens": cost / (out_tokens / 1e6) if out_tokens else None,
        "cost_per_chip_hour_usd": cost_per_chip_hour_usd,
        "step_breakdown": step_breakdown,
        "utilisation": {
            "prefill": per_s(result.prefill_busy_s, result.prefill_instances * duration),
            "decode": per_s(result.decode_busy_s, result.decode_instances * duration),
            "cache": per_s(result.cache_busy_s, result.prefill_instances * duration),
        },
        # While busy, per chip of the phase: comparable with the paper's per-NPU prefill and decode throughputs.
        "phase_throughput": {
            "prefill_computed_tokens_per_busy_s_per_chip":
                per_s(result.computed_prefill_tokens, result.prefill_busy_s * caps.prefill_chips),
            "decode_output_tokens_per_busy_s_per_chip":
                per_s(out_tokens - completed.height, result.decode_busy_s * caps.decode_chips),
            "mean_decode_batch_per_chip": per_s(result.decode_batch_sum, result.decode_steps * caps.decode_chips),
            "mean_decode_kv_len": per_s(result.decode_kv_sum, result.decode_steps),
            # KV on the busiest attention DP rank over the mean rank's, averaged over decode steps (1: balanced);
            # decode steps wait for that rank
            "decode_dp_kv_imbalance": per_s(result.decode_busiest_kv_sum, result.decode_kv_sum),
            "prefill_steps": result.prefill_steps,
            "decode_steps": result.decode_steps,
        },
    }
    if slo.percentile is not None:
        q = slo.percentile / 100.0
        t = completed.get_column("ttft_s").drop_nulls()
        p = completed.get_column("tpot_ms").drop_nulls()
        ttft_q = float(t.quantile(q, interpolation="linear")) if t.len() else None
        tpot_q = float(p.quantile(q, interpolation="linear")) if p.len() else None
        summary["slo_percentile"] = {
            "percentile": slo.percentile, "ttft_s": ttft_q, "tpot_ms": tpot_q,
            "met": bool(ttft_q is not None and ttft_q <= slo.ttft_s and (tpot_q is None or tpot_q <= slo.tpot_ms)),
        }
    return summary

