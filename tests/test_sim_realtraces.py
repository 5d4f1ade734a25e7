"""The bundled real traces replay on both default backends, compressed in time so the system is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results.slo import Slo
from harness.sim.config import SimConfig
from harness.sim.replay import BackendPlan, build_costs, default_deployment, run_backend
from harness.trace import load_trace, shape
from harness.trace.stats import prefix_reuse

BACKENDS = ["cloudmatrix384", "h800-ib"]


def replay(workload, backend: str):
    d = default_deployment(backend)
    plan = BackendPlan(backend, backend, d["prefill"], d["decode"],
                       SimConfig(prefill_instances=d["prefill_instances"], decode_instances=d["decode_instances"]))
    return run_backend(workload, plan, build_costs(plan), Slo())


def replay_loaded(trace: str, limit: int, rate: float, backend: str):
    """Replay the trace's first `limit` requests at `rate` req/s; every request is accounted for and one phase
    runs busy."""
    w = shape(load_trace(trace), limit=limit, rate=rate)
    out = replay(w, backend)
    s = out.summary
    assert s["requests_total"] == limit == s["requests_completed"] + s["requests_rejected"]
    assert max(s["utilisation"]["prefill"], s["utilisation"]["decode"]) > 0.3
    return w, out


@pytest.mark.parametrize("backend", BACKENDS)
def test_azure_conversation_under_load(backend: str) -> None:
    # About 100x the trace's own 5.5 req/s: both default deployments run busy.
    _, out = replay_loaded("azure-conv", 5000, 500.0, backend)
    s, table = out.summary, out.requests
    assert s["requests_rejected"] == 0          # every Azure request fits DeepSeek-R1's context
    assert s["ttft_s"]["p50"] > 0 and s["tpot_ms"]["p50"] > 0
    assert s["output_tokens_per_s_per_chip"] > 0
    assert table["finish_s"].is_not_null().all()
    assert s["cache_hit_token_ratio"] == 0.0    # no prefix information in this trace


@pytest.mark.parametrize("backend", BACKENDS)
def test_mooncake_conversation_reuses_prefixes_under_load(backend: str) -> None:
    w, out = replay_loaded("mooncake-conv", 2000, 40.0, backend)
    s, table = out.summary, out.requests
    # Hits are real and never exceed what an unbounded prefix cache could give (independent count on the trace).
    reuse = prefix_reuse(w.requests)
    cached = int(table["cached_tokens"].sum())
    assert 0 < cached <= reuse["block_hits"] * w.block_size
    assert 0 < s["cache_hit_token_ratio"] < 1
    done = table.filter(table["status"] == "completed")
    assert np.all(done["cached_tokens"].to_numpy() < done["input_tokens"].to_numpy())
