"""Replay speed targets on the real cost model: the whole Azure conversation trace on two backends in under 5 s;
1M synthetic requests on one backend in under 60 s and 2 GB; wall time about linear in requests (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.results.slo import Slo
from harness.sim.replay import BackendPlan, build_costs, default_deployment, run_backend
from harness.sim.config import SimConfig
from harness.trace import load_trace

AZURE_LIMIT_S = 5.0
MILLION_LIMIT_S = 60.0
MILLION_RSS_BYTES = 2 * 2**30


def plan(backend: str, **config) -> BackendPlan:
    d = default_deployment(backend)
    return BackendPlan(backend, backend, d["prefill"], d["decode"],
                       SimConfig(prefill_instances=d["prefill_instances"], decode_instances=d["decode_instances"],
                                 **config))


@pytest.mark.slow   # about 4.4 s on an idle 2-core machine (tables built first: 0.25 s), kept out of the default run
def test_azure_conversation_on_two_backends(benchmark) -> None:
    workload = load_trace("azure-conv")
    assert len(workload) == 19_366
    plans = [plan("cloudmatrix384"), plan("h800-ib")]
    costs = [build_costs(p) for p in plans]

    def replay():
        t = time.perf_counter()
        outs = [run_backend(workload, p, c, Slo()) for p, c in zip(plans, costs)]
        return outs, time.perf_counter() - t

    outs, wall_s = benchmark.pedantic(replay, rounds=1, iterations=1)
    sim_s = sum(o.summary["simulated_duration_s"] for o in outs)
    benchmark.extra_info.update({"wall_s": wall_s, "simulated_s_per_wall_s": sim_s / wall_s})
    print(f"\nAzure conv x 2 backends: {wall_s:.2f} s wall, {sim_s / wall_s:,.0f} simulated s per wall s")
    assert all(o.summary["requests_completed"] == 19_366 for o in outs)
    assert wall_s < AZURE_LIMIT_S


# Run in a fresh interpreter so peak RSS is the replay's own.
_RUN = """
import json, resource, sys, time
from harness.trace.synth import synthesize
from harness.results.slo import Slo
sys.path.insert(0, sys.argv[3])
from test_bench_replay import plan
from harness.sim.replay import build_costs, run_backend
n, backend = int(sys.argv[1]), sys.argv[2]
p = plan(backend)
costs = build_costs(p)
w = synthesize(n, rate=float(sys.argv[4]), input="lognormal:1500:1.0", output="lognormal:250:1.0", seed=1)
t = time.perf_counter()
out = run_backend(w, p, costs, Slo())
dt = time.perf_counter() - t
print(json.dumps({"n": n, "seconds": dt, "simulated_s": out.summary["simulated_duration_s"],
                  "completed": out.summary["requests_completed"],
                  "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

# Near the CloudMatrix384 default deployment's capacity (6 x 16 prefill NPUs, one 160-NPU decode instance).
RATE_REQ_S = 250.0


def _replay(n: int, repo_root) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUN, str(n), "cloudmatrix384",
                          str(repo_root / "tests" / "benchmarks"), str(RATE_REQ_S)],
                         capture_output=True, text=True, cwd=repo_root, check=True)
    return json.loads(out.stdout)


@pytest.mark.slow
def test_one_million_requests_one_backend(benchmark, repo_root) -> None:
    result = benchmark.pedantic(lambda: _replay(1_000_000, repo_root), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(f"\n1M requests: {result['seconds']:.1f} s wall, peak RSS {result['maxrss_bytes'] / 2**20:.0f} MiB, "
          f"{result['simulated_s'] / result['seconds']:,.0f} simulated s per wall s")
    assert result["completed"] == 1_000_000
    assert result["seconds"] < MILLION_LIMIT_S
    assert result["maxrss_bytes"] < MILLION_RSS_BYTES


@pytest.mark.slow
def test_wall_time_grows_linearly(benchmark, repo_root) -> None:
    def sweep():
        return [_replay(n, repo_root) for n in (100_000, 300_000, 1_000_000)]

    runs = benchmark.pedantic(sweep, rounds=1, iterations=1)
    per_request_us = [r["seconds"] / r["n"] * 1e6 for r in runs]
    benchmark.extra_info["per_request_us"] = per_request_us
    print("\nwall us per request at 100k / 300k / 1M: " + " / ".join(f"{x:.1f}" for x in per_request_us))
    # Linear: the cost per request at 1M is within 1.5x of that at 100k.
    assert per_request_us[2] < 1.5 * per_request_us[0]
