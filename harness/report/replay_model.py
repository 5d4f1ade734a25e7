"""The replay report as data: header, headline table and rejections, taken verbatim from the saved results.

Pure functions of a loaded ReplayResults; numbers are copied, never recomputed, so the tables equal summary.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.report.inputs import ReplayResults


@dataclass(frozen=True)
class Metric:
    label: str
    key: tuple[str, ...]   # path into summary.json
    unit: str              # how the template formats it: "tok/s", "req/s", "frac", "s", "ms", "count", "usd"
    better: str            # "higher" or "lower": colours the relative difference
    optional: bool = False  # a row left out when no backend has the value


HEADLINE: tuple[Metric, ...] = (
    Metric("Input throughput per chip", ("input_tokens_per_s_per_chip",), "tok/s", "higher"),
    Metric("Output throughput per chip", ("output_tokens_per_s_per_chip",), "tok/s", "higher"),
    Metric("Goodput", ("goodput_req_per_s",), "req/s", "higher"),
    Metric("SLO attainment", ("slo_attainment",), "frac", "higher"),
    Metric("TTFT p50", ("ttft_s", "p50"), "s", "lower"),
    Metric("TTFT p90", ("ttft_s", "p90"), "s", "lower"),
    Metric("TTFT p99", ("ttft_s", "p99"), "s", "lower"),
    Metric("TPOT p50", ("tpot_ms", "p50"), "ms", "lower"),
    Metric("TPOT p90", ("tpot_ms", "p90"), "ms", "lower"),
    Metric("TPOT p99", ("tpot_ms", "p99"), "ms", "lower"),
    Metric("End-to-end p50", ("e2e_s", "p50"), "s", "lower"),
    Metric("End-to-end p90", ("e2e_s", "p90"), "s", "lower"),
    Metric("End-to-end p99", ("e2e_s", "p99"), "s", "lower"),
    Metric("Cache hit ratio (tokens)", ("cache_hit_token_ratio",), "frac", "higher"),
    Metric("Rejected requests", ("requests_rejected",), "count", "lower"),
    Metric("Cost per million output tokens", ("cost_per_million_output_tokens",), "usd", "lower"),
    Metric("Chips", ("chips",), "count", "none"),
    # While busy, per chip of the phase: comparable with published per-NPU / per-GPU phase throughputs.
    Metric("Prefill tokens per busy chip-second", ("phase_throughput", "prefill_computed_tokens_per_busy_s_per_chip"),
           "tok/s", "higher", optional=True),
    Metric("Decode tokens per busy chip-second", ("phase_throughput", "decode_output_tokens_per_busy_s_per_chip"),
           "tok/s", "higher", optional=True),
    Metric("Mean decode batch per chip", ("phase_throughput", "mean_decode_batch_per_chip"), "", "none",
           optional=True),
    # With --slo ...,percentile=P: whether the run meets both objectives at that percentile.
    Metric("SLO met at the percentile", ("slo_percentile", "met"), "verdict", "none", optional=True),
)


def _get(doc: dict[str, Any], key: tuple[str, ...]) -> Any:
    for part in key:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)  # type: ignore[assignment]
    return doc


def change(value: Any, base: Any, unit: str) -> float | None:
    """How a backend's value differs from the baseline's: for fractions (SLO attainment, cache hit ratio) the
    difference itself, in percentage points; for verdicts none; otherwise relative_diff."""
    if unit == "verdict":
        return None
    if unit == "frac":
        return None if value is None or base is None else value - base
    return relative_diff(value, base)


def relative_diff(value: float | None, base: float | None) -> float | None:
    """(value - base) / |base|, or None when either is missing, the base is zero or the ratio overflows."""
    if value is None or base is None or base == 0:
        return None
    rel = (value - base) / abs(base)
    return rel if math.isfinite(rel) else None


def _mtp_text(mtp: Any) -> str:
    if not isinstance(mtp, dict) or not mtp.get("draft_tokens"):
        return "off" if isinstance(mtp, dict) else ""
    return f"{mtp['draft_tokens']} draft, {mtp.get('accept', 0) * 100:.0f}% accepted"


def _parallelism_text(par: Any) -> str:
    if isinstance(par, dict):
        return ", ".join(f"{k.upper()}{v}" if isinstance(v, int) else f"{k}={v}" for k, v in par.items())
    return "" if par is None else str(par)


def header(res: ReplayResults) -> dict[str, Any]:
    run = res.run
    backends = []
    for b in res.backends:
        s = b.summary
        phases = [{"phase": phase, "name": d.get("name"), "chips_per_instance": d.get("chips_per_instance"),
                   "instances": d.get("instances"), "parallelism": _parallelism_text(d.get("parallelism")),
                   "precision": d.get("precision"), "mtp": _mtp_text(d.get("mtp"))}
                  for phase, d in s["deployment"].items()]
        price = s.get("cost_per_chip_hour_usd")
        backends.append({"label": b.label, "backend": s["backend"], "chips": s["chips"],
                         "cost_per_chip_hour_usd": price, "phases": phases,
                         "cost_per_hour_usd": None if price is None else price * s["chips"]})
    return {"trace": run["trace"], "slo": run["slo"], "seed": run["seed"], "notes": run.get("notes") or [],
            "comparison": run.get("comparison"), "options": run.get("options") or {},
            "harness_version": run["harness_version"], "created_utc": run["created_utc"], "backends": backends}


def headline(res: ReplayResults) -> dict[str, Any]:
    """One row per HEADLINE metric: the value per backend and, per backend after the first, its change vs the first."""
    labels = [b.label for b in res.backends]
    rows = []
    for m in HEADLINE:
        values = [_get(b.summary, m.key) for b in res.backends]
        if m.optional and all(v is None for v in values):
            continue
        rel = [change(v, values[0], m.unit) for v in values[1:]]
        rows.append({"metric": m.label, "unit": m.unit, "better": m.better, "by_backend": values, "rel": rel})
    return {"labels": labels, "baseline": labels[0], "rows": rows}


def rejections(res: ReplayResults) -> dict[str, Any]:
    """Rejected requests per reason (rows) and backend (columns), from each summary's rejected_by_reason."""
    reasons = sorted({r for b in res.backends for r in b.summary["rejected_by_reason"]})
    rows = [{"reason": r, "counts": [b.summary["rejected_by_reason"].get(r, 0) for b in res.backends]}
            for r in reasons]
    return {"labels": [b.label for b in res.backends], "rows": rows,
            "totals": [b.summary["requests_rejected"] for b in res.backends]}


def replay_model(res: ReplayResults) -> dict[str, Any]:
    return {"header": header(res), "headline": headline(res), "rejections": rejections(res)}
