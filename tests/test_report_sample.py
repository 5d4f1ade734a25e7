"""A replay results folder in the simulator's output layout, with small realistic numbers, for the report tests.

`write_sample_results` is a test helper (imported by the other report tests); the tests here check that the sample
itself is well formed, so a drift between it and the loader shows up here first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

# (label, backend, chips per prefill instance, prefill instances, chips per decode instance, decode instances,
#  output tok/s per chip, cost per chip-hour): roughly the CloudMatrix-Infer paper and an SGLang H100 deployment.
_BACKENDS = [
    ("cloudmatrix384", "cloudmatrix384", 16, 6, 160, 1, 1943.0, 2.1),
    ("h100-ib", "h100-ib", 16, 4, 72, 2, 1850.0, 2.9),
]


def _deployment(name: str, chips: int, instances: int, parallelism: dict, precision: str) -> dict:
    return {"name": name, "chips_per_instance": chips, "instances": instances, "parallelism": parallelism,
            "precision": precision}


def write_sample_results(out: Path, *, n_requests: int = 400, trace_name: str = "azure-conv",
                         labels: list[str] | None = None, seed: int = 7, with_rejections: bool = True) -> Path:
    """Write run.json plus, per backend, summary.json, requests.parquet and timeseries.parquet under `out`."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    duration_s = max(10.0, n_requests / 5.0)
    arrival = np.sort(rng.uniform(0, duration_s, n_requests))
    inp = rng.lognormal(7.0, 0.8, n_requests).astype(np.int64) + 16
    outp = rng.lognormal(5.0, 0.7, n_requests).astype(np.int64) + 4
    backends = _BACKENDS if labels is None else [(lab, *_BACKENDS[i % 2][1:]) for i, lab in enumerate(labels)]
    run = {
        "harness_version": "0.1.0", "created_utc": "2025-06-01T12:00:00Z", "seed": seed,
        "trace": {"name": trace_name, "path": f"traces/{trace_name}.parquet", "sha256": "ab" * 32,
                  "format": "native", "requests": n_requests, "duration_s": duration_s,
                  "rate_req_s": n_requests / duration_s,
                  "input_tokens": {q: float(np.percentile(inp, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}
                  | {"mean": float(inp.mean())},
                  "output_tokens": {q: float(np.percentile(outp, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}
                  | {"mean": float(outp.mean())}},
        "slo": {"ttft_s": 2.0, "tpot_ms": 50.0, "percentile": 90},
        "comparison": "as-given", "options": {"router": "least-loaded"},
        "backends": [b[0] for b in backends],
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))
    for k, (label, backend, p_chips, p_inst, d_chips, d_inst, tok_s, cost) in enumerate(backends):
        d = out / label
        d.mkdir(exist_ok=True)
        speed = 1.0 + 0.25 * k
        rejected = np.zeros(n_requests, dtype=bool)
        if with_rejections:
            rejected[rng.choice(n_requests, size=max(1, n_requests // 50 * (k + 1)), replace=False)] = True
        reasons = np.where(rng.uniform(size=n_requests) < 0.7, "context too long", "kv capacity")
        ttft = (0.05 + inp / 9000.0 * speed) * rng.lognormal(0, 0.4, n_requests)
        tpot = 30.0 * speed * rng.lognormal(0, 0.15, n_requests)
        e2e = ttft + tpot * outp / 1000.0
        cached = (inp * rng.uniform(0, 0.6, n_requests)).astype(np.int64)
        done = ~rejected
        prefill_start = arrival + 0.01
        requests = pl.DataFrame({
            "request_id": [str(i) for i in range(n_requests)], "arrival_s": arrival,
            "input_tokens": inp, "output_tokens": outp, "cached_tokens": cached,
            "prefill_instance": rng.integers(0, p_inst, n_requests), "decode_instance": rng.integers(0, d_inst, n_requests),
            "prefill_start_s": prefill_start, "prefill_end_s": arrival + ttft * 0.9,
            "first_token_s": arrival + ttft, "finish_s": arrival + e2e,
            "ttft_s": ttft, "tpot_ms": tpot, "e2e_s": e2e,
            "status": np.where(done, "completed", "rejected"),
            "reason": [None if ok else str(r) for ok, r in zip(done, reasons, strict=True)],
        }).with_columns([pl.when(pl.col("status") == "rejected").then(None).otherwise(pl.col(c)).alias(c)
                         for c in ("prefill_start_s", "prefill_end_s", "first_token_s", "finish_s",
                                   "ttft_s", "tpot_ms", "e2e_s")])
        requests.write_parquet(d / "requests.parquet")
        t = np.linspace(0, duration_s, 200)
        wave = 0.6 + 0.4 * np.sin(t / duration_s * 6.28) ** 2
        pl.DataFrame({
            "t_s": t, "input_tokens_per_s": wave * inp.sum() / duration_s, "output_tokens_per_s": wave * outp.sum() / duration_s,
            "prefill_queue": (wave * 4 * speed).round(), "decode_queue": (wave * 2).round(),
            "running_batch": (wave * 96).round(), "kv_used_frac": 0.3 + 0.5 * wave, "cache_hit_ratio": 0.2 + 0.1 * wave,
            "prefill_util": 0.5 * wave, "decode_util": 0.8 * wave,
        }).write_parquet(d / "timeseries.parquet")
        by_reason: dict[str, int] = {}
        for r in requests.filter(pl.col("status") == "rejected").get_column("reason").to_list():
            by_reason[r] = by_reason.get(r, 0) + 1
        ok = requests.filter(pl.col("status") == "completed")

        def pct(col: str) -> dict[str, float]:
            v = ok.get_column(col).to_numpy()
            return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
                    "p99": float(np.percentile(v, 99)), "mean": float(v.mean())}

        chips = p_chips * p_inst + d_chips * d_inst
        summary = {
            "backend": backend, "label": label,
            "deployment": {
                "prefill": _deployment(f"{backend}-prefill", p_chips, p_inst, {"ep": p_chips * 2, "tp": 1}, "int8"),
                "decode": _deployment(f"{backend}-decode", d_chips, d_inst, {"ep": d_chips, "dp": d_chips}, "int8"),
            },
            "requests_total": n_requests, "requests_completed": int(done.sum()), "requests_rejected": int(rejected.sum()),
            "rejected_by_reason": by_reason, "chips": chips, "simulated_duration_s": float(duration_s + 5),
            "input_tokens_per_s_per_chip": float(inp[done].sum() / duration_s / chips),
            "output_tokens_per_s_per_chip": tok_s / speed,
            "ttft_s": pct("ttft_s"), "tpot_ms": pct("tpot_ms"), "e2e_s": pct("e2e_s"),
            "goodput_req_per_s": float(done.sum() / duration_s * 0.9 / speed), "slo_attainment": 0.93 - 0.1 * k,
            "cache_hit_token_ratio": float(cached[done].sum() / inp[done].sum()),
            "cost_per_million_output_tokens": cost / 3600 / (tok_s / speed) * 1e6, "cost_per_chip_hour_usd": cost,
            "step_breakdown": {
                "prefill": {"step_s": 0.17 * speed, "busy_s": {"attention": 0.08 * speed, "moe": 0.11 * speed,
                                                               "dispatch": 0.02, "combine": 0.02}},
                "decode": {"step_s": 0.03 * speed, "busy_s": {"attention": 0.012 * speed, "moe": 0.018,
                                                              "dispatch": 0.004 * speed, "combine": 0.004,
                                                              "other": 0.003}}},
            "utilisation": {"prefill": 0.55, "decode": 0.82 - 0.1 * k, "cache": 0.12},
            "phase_throughput": {"prefill_computed_tokens_per_busy_s_per_chip": 6688.0 / speed,
                                 "decode_output_tokens_per_busy_s_per_chip": tok_s / speed,
                                 "mean_decode_batch_per_chip": 60.0, "prefill_steps": 100, "decode_steps": 5000},
        }
        (d / "summary.json").write_text(json.dumps(summary, indent=2))
    return out


def test_sample_is_a_valid_replay_results_folder(tmp_path: Path) -> None:
    from harness.report.inputs import load_results

    res = load_results(write_sample_results(tmp_path / "r", n_requests=50))
    assert res.kind == "replay"
    assert [b.label for b in res.backends] == ["cloudmatrix384", "h100-ib"]
    assert all(b.requests.height == 50 for b in res.backends)
