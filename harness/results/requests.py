"""The per-request results table (requests.parquet): one row per input request, in input order."""

from __future__ import annotations

import numpy as np
import polars as pl

from harness.sim.result import COMPLETED, REASONS, SimResult
from harness.trace.workload import Workload

def request_table(result: SimResult, workload: Workload) -> pl.DataFrame:
    req = workload.requests
    arrival = req.get_column("arrival_s").to_numpy()
    out = req.get_column("output_tokens").to_numpy()
    ttft = result.first_token_s - arrival
    e2e = result.finish_s - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot_ms = np.where(out > 1, (result.finish_s - result.first_token_s) / (out - 1) * 1e3, np.nan)
    status = np.where(result.status == COMPLETED, "completed", "rejected")
    reason = np.array(REASONS, dtype=object)[result.reason]

    def f(x: np.ndarray) -> pl.Series:  # NaN (never reached) becomes null
        return pl.Series(x, dtype=pl.Float64, nan_to_null=True)

    def i(x: np.ndarray) -> pl.Series:
        return pl.Series(np.where(x >= 0, x, 0), dtype=pl.Int32).scatter(np.flatnonzero(x < 0), None)

    return pl.DataFrame({
        "request_id": req.get_column("request_id"),
        "arrival_s": req.get_column("arrival_s"),
        "input_tokens": req.get_column("input_tokens"),
        "output_tokens": req.get_column("output_tokens"),
        "cached_tokens": result.cached_tokens,
        "prefill_instance": i(result.prefill_instance),
        "decode_instance": i(result.decode_instance),
        "prefill_start_s": f(result.prefill_start_s),
        "prefill_end_s": f(result.prefill_end_s),
        "first_token_s": f(result.first_token_s),
        "decode_start_s": f(result.decode_start_s),
        "finish_s": f(result.finish_s),
        "ttft_s": f(ttft),
        "tpot_ms": f(tpot_ms),
        "e2e_s": f(e2e),
        "status": pl.Series(status, dtype=pl.String),
        "reason": pl.Series(reason, dtype=pl.String).replace("", None),
    })
