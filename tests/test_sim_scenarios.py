"""Scenarios on the real cost model: the simulator must reproduce the step model's own numbers where the answer is
known in closed form (one request on an idle system; steady decode at the paper's batch; a full prefix hit)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_sim_properties import workload

from harness.sim.config import SimConfig
from harness.sim.engine import KV_QUANTUM_TOKENS, simulate
from harness.sim.replay import BackendPlan, build_costs, default_deployment
from harness.sim.result import COMPLETED, STEP_COLUMNS
from harness.step.estimate import prefix_read_s


def costs_of(backend: str):
    d = default_deployment(backend)
    return build_costs(BackendPlan(backend, backend, d["prefill"], d["decode"], SimConfig()))


def quantised(kv: float) -> int:
    return int(kv / KV_QUANTUM_TOKENS + 0.5) * KV_QUANTUM_TOKENS


@pytest.mark.parametrize("backend", ["cloudmatrix384", "h800-ib"])
def test_single_request_on_idle_system_matches_the_step_model(backend: str) -> None:
    costs = costs_of(backend)
    inp, out = 2000, 40
    res = simulate(workload([3.0], [inp], [out]), costs, SimConfig(record_steps=True))
    prefill = costs.prefill_step_s(np.array([inp]), np.array([0]))
    assert res.first_token_s[0] == pytest.approx(3.0 + prefill, rel=1e-12)
    steps = pl.DataFrame(res.steps, schema=list(STEP_COLUMNS), orient="row").filter(pl.col("kind") == 1)
    # Decode starts once the KV has crossed the prefill-to-decode plane, then runs back-to-back steps of one
    # request, each as long as the step model says at that KV length on the one DP rank that holds it (every
    # rank's attention priced as that rank's: the step waits for it).
    assert steps["start_s"][0] == pytest.approx(res.first_token_s[0] + costs.kv_transfer_s(inp), rel=1e-12)
    ranks = costs.decode_dp_ranks
    assert ranks == {"cloudmatrix384": 320, "h800-ib": 144}[backend]
    expect = [costs.decode_step_s(1 / costs.decode_chips, quantised(kv * ranks)) for kv in steps["mean_kv_len"]]
    np.testing.assert_allclose((steps["end_s"] - steps["start_s"]).to_numpy(), expect, rtol=1e-12)
    assert res.finish_s[0] == pytest.approx(steps["end_s"][-1], rel=1e-12)
    if costs.mtp_draft_tokens == 0:
        assert steps.height == out - 1
    else:
        assert (out - 1) / (costs.mtp_draft_tokens + 1) <= steps.height <= out - 1


def test_steady_decode_at_the_papers_batch_reproduces_the_estimate() -> None:
    """CloudMatrix384 decode at 96 requests per NPU and KV length about 4,096 (the paper's operating point)."""
    costs = costs_of("cloudmatrix384")
    cap = costs.decode_batch_cap_per_chip * costs.decode_chips
    assert costs.decode_batch_cap_per_chip == 96
    n, inp, out = cap, 3096, 2000          # KV grows from 3,097 to 5,096 while decoding: 4,096 midway
    res = simulate(workload(np.zeros(n), np.full(n, inp), np.full(n, out)), costs,
                   SimConfig(prefill_instances=40, record_steps=True, seed=1))
    assert np.all(res.status == COMPLETED)
    steps = pl.DataFrame(res.steps, schema=list(STEP_COLUMNS), orient="row").filter(pl.col("kind") == 1)
    full = steps.filter((pl.col("batch") == cap) & ((pl.col("mean_kv_len") - 4096).abs() <= 64))
    assert full.height >= 30
    start, end = full["start_s"].min(), full["end_s"].max()
    grid = res.output_tokens_grid
    cells = np.arange(grid.values.size) * grid.cell_s
    window = (cells >= start) & (cells < end)
    measured = grid.values[window].sum() / (end - start) / costs.decode_chips
    tpot_s = costs.decode_step_s(96, 4096) / (1 + costs.mtp_accept)
    estimate = 96 / tpot_s                  # tokens/s per NPU = concurrent requests per NPU / TPOT
    assert measured == pytest.approx(estimate, rel=0.03)


def test_full_prefix_hit_skips_prefill_compute() -> None:
    costs = costs_of("cloudmatrix384")
    bs, inp = 512, 8192
    blocks = [list(range(16))] * 5
    w = workload([0.0, 10.0, 20.0, 30.0, 40.0], [inp] * 5, [2] * 5, blocks=blocks, block_size=bs)
    res = simulate(w, costs, SimConfig())
    assert list(res.cached_tokens) == [0] + [inp - 1] * 4
    assert res.computed_prefill_tokens == inp + 4          # one token each, for the logits
    ttft = res.first_token_s - np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    miss = costs.prefill_step_s(np.array([inp]), np.array([0]))
    # the prefix lands in one attention group, which reads all of it
    read = costs.prefill_read_s(inp - 1, 0, 0, (inp - 1, 0, 0))
    assert read == pytest.approx(prefix_read_s(costs.prefill, (inp - 1) * costs.prefill.dp), rel=1e-12)   # as estimated
    hit = costs.prefill_step_s(np.array([1]), np.array([inp - 1])) + read
    assert ttft[0] == pytest.approx(miss, rel=1e-12)
    np.testing.assert_allclose(ttft[1:], hit, rtol=1e-12)
    assert hit < miss
