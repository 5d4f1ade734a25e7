"""Fast benchmarks for the speed gate (`bench gate --speed`): the event loop on a real trace, and op-trace
parse + re-time. No absolute limits here: the gate compares them, normalised, with the committed baseline."""

from __future__ import annotations

from harness.results.slo import Slo
from harness.sim.config import SimConfig
from harness.sim.replay import BackendPlan, build_costs, default_deployment, run_backend
from harness.trace import load_trace, shape


def _plan(backend: str) -> BackendPlan:
    d = default_deployment(backend)
    return BackendPlan(backend, backend, d["prefill"], d["decode"],
                       SimConfig(prefill_instances=d["prefill_instances"], decode_instances=d["decode_instances"]))


def test_gate_replay_azure_two_backends(benchmark) -> None:
    """5,000 Azure conversation requests at 5x density on both default backends (cost model warm)."""
    workload = shape(load_trace("azure-conv"), limit=5_000, time_scale=0.2)
    plans = [_plan("cloudmatrix384"), _plan("h800-ib")]
    costs = [build_costs(p) for p in plans]
    for p, c in zip(plans, costs):   # warm the cost model's memo tables: the gate times the event loop
        run_backend(workload, p, c, Slo())
    outs = benchmark.pedantic(lambda: [run_backend(workload, p, c, Slo()) for p, c in zip(plans, costs)],
                              rounds=5, iterations=1)
    assert all(o.summary["requests_completed"] + o.summary["requests_rejected"] == 5_000 for o in outs)


def test_gate_ops_parse_and_retime(benchmark, shared_data) -> None:
    """The real DeepSeek H800 capture: streaming parse, identity replay, re-time on H800 and CloudMatrix384."""
    from harness.ops.analysis import analyse
    from harness.ops.load import load_op_trace
    from harness.ops.worktable import find_table

    path = shared_data / "deepseek-profile-data" / "train.json.gz"

    def run():
        g = load_op_trace(path)
        return analyse(g, "h800-ib", "cloudmatrix384", table=find_table(g, "deepseek-v3-train-ep64"))

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert abs(result["identity"]["error"]) < 0.01
