"""The sweep table: one row per point (knob values, status, summary metrics, SLO verdict), sorted by point index.

Only what decides a point's result goes in the table (never wall time or worker ids), so the same sweep gives the
same table whatever executor and worker count ran it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from harness.outputs import atomic_path
from harness.results.slo import Slo

# column -> dotted path into summary.json
METRICS: dict[str, str] = {
    "chips": "chips",
    "prefill_instances": "deployment.prefill.instances",
    "decode_instances": "deployment.decode.instances",
    "prefill_chips_per_instance": "deployment.prefill.chips_per_instance",
    "decode_chips_per_instance": "deployment.decode.chips_per_instance",
    "requests_total": "requests_total",
    "requests_completed": "requests_completed",
    "requests_rejected": "requests_rejected",
    "simulated_duration_s": "simulated_duration_s",
    "input_tokens_per_s_per_chip": "input_tokens_per_s_per_chip",
    "output_tokens_per_s_per_chip": "output_tokens_per_s_per_chip",
    **{f"{m}_{q}": f"{m}.{q}" for m in ("ttft_s", "tpot_ms", "e2e_s") for q in ("p50", "p90", "p99", "mean")},
    "goodput_req_per_s": "goodput_req_per_s",
    "slo_attainment": "slo_attainment",
    "cache_hit_token_ratio": "cache_hit_token_ratio",
    "cost_per_million_output_tokens": "cost_per_million_output_tokens",
    "cost_per_chip_hour_usd": "cost_per_chip_hour_usd",
    "utilisation_prefill": "utilisation.prefill",
    "utilisation_decode": "utilisation.decode",
    "utilisation_cache": "utilisation.cache",
}
FLOAT_METRICS = {k for k in METRICS
                 if not k.endswith(("instances", "instance", "chips")) and not k.startswith("requests")}


def _get(d: dict[str, Any] | None, dotted: str) -> Any:
    for k in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def judge(summary: dict[str, Any] | None, slo: Slo) -> dict[str, Any]:
    """Does this point meet the SLO at the SLO's percentile? Rejected requests count as missing it, so at p99 at
    most 1% may be rejected. margin: the smaller relative slack of TTFT and TPOT (negative when missed)."""
    out = {"slo_ttft_s": None, "slo_tpot_ms": None, "meets_slo": False, "slo_margin": None}
    at = (summary or {}).get("slo_percentile")
    if not summary or not at or not summary.get("requests_completed"):
        return out
    q = at["percentile"] / 100.0
    rejected_ok = summary["requests_rejected"] <= (1.0 - q) * summary["requests_total"] + 1e-9
    slacks = []
    if at["ttft_s"] is not None:
        slacks.append((slo.ttft_s - at["ttft_s"]) / slo.ttft_s)
    if at["tpot_ms"] is not None:
        slacks.append((slo.tpot_ms - at["tpot_ms"]) / slo.tpot_ms)
    out.update(slo_ttft_s=at["ttft_s"], slo_tpot_ms=at["tpot_ms"], meets_slo=bool(at["met"] and rejected_ok),
               slo_margin=min(slacks) if slacks else None)
    return out


def build_table(points: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> pl.DataFrame:
    """One row per point in `points` (which must all have records), in index order."""
    knob_names: list[str] = []
    for p in points:
        knob_names += [k for k in p["knobs"] if k not in knob_names]
    rows = []
    for p in sorted(points, key=lambda p: p["index"]):
        r = records[p["id"]]
        s = r.get("summary")
        slo = Slo(**p["slo"])
        cost_h = (s["chips"] * s["cost_per_chip_hour_usd"]) if s else None
        rows.append({"point": p["index"], "point_id": p["id"], "trace": p["trace"]["name"], "label": p["label"],
                     "backend": p["backend"], "prefill": p["prefill"], "decode": p["decode"], "seed": p["seed"],
                     **{f"knob:{k}": p["knobs"].get(k) for k in knob_names},
                     "status": r["status"], "error": r.get("error"),
                     **{c: _get(s, path) for c, path in METRICS.items()}, "cost_per_hour_usd": cost_h,
                     **judge(s, slo)})
    schema_overrides = {c: pl.Float64 for c in FLOAT_METRICS | {"cost_per_hour_usd", "slo_ttft_s", "slo_tpot_ms",
                                                                 "slo_margin"}}
    schema_overrides.update({c: pl.Int64 for c in METRICS if c not in FLOAT_METRICS})
    schema_overrides.update({"error": pl.String})
    for k in knob_names:   # a knob may hold numbers for one backend and text for another: keep one type
        values = [p["knobs"].get(k) for p in points if p["knobs"].get(k) is not None]
        if len({type(v) for v in values}) > 1 and not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                           for v in values):
            for row in rows:
                row[f"knob:{k}"] = None if row[f"knob:{k}"] is None else str(row[f"knob:{k}"])
        elif values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values) and \
                any(isinstance(v, float) for v in values):
            schema_overrides[f"knob:{k}"] = pl.Float64
    return pl.DataFrame(rows, schema_overrides=schema_overrides, infer_schema_length=None)


def write_table(table: pl.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)
    return Path(path)


def write_json(value: Any, path: str | Path) -> Path:
    from harness.outputs import write_text_atomic
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
    return Path(path)
