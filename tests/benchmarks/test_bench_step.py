"""Step-time evaluation speed: the simulator must never be bound by it (target: >= 100,000 decode steps/s)."""

from __future__ import annotations

import numpy as np

from harness.step import decode_work, load_deployment, step_time_s
from harness.step.serving import build_serving_costs

N = 20_000


def test_bench_decode_step_serving(benchmark):
    """ServingCosts.decode_step_s at varying (batch, mean KV) compositions, one call each, as the simulator does."""
    costs = build_serving_costs("cloudmatrix384")
    rng = np.random.default_rng(0)
    batch = rng.uniform(1, costs.decode_batch_cap_per_chip, N).tolist()
    kv = rng.uniform(64, 32_000, N).tolist()
    f = costs.decode_step_s

    def run():
        for b, k in zip(batch, kv):
            f(b, k)

    benchmark(run)
    if benchmark.stats is not None:  # None under --benchmark-disable (the default run): then it is a smoke test
        per_s = N / benchmark.stats.stats.mean
        benchmark.extra_info["decode_steps_per_s"] = per_s
        assert per_s >= 100_000


def test_bench_decode_step_vectorised(benchmark):
    """The full op-graph schedule over many batch compositions at once (exact, no interpolation)."""
    dep = load_deployment("cm384-decode")
    rng = np.random.default_rng(1)
    b, k = rng.uniform(1, 192, N), rng.uniform(64, 32_000, N)
    out = benchmark(lambda: step_time_s(dep, decode_work(dep, b, k)))
    assert out.shape == (N,) and (out > 0).all()
    if benchmark.stats is not None:
        benchmark.extra_info["decode_steps_per_s"] = N / benchmark.stats.stats.mean
