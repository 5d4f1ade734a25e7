"""Sweep throughput: time proportional to points / workers, and the Ray executor's per-point overhead.

- test_sweep_64_points_scaling (slow): models/sweeps/sweep-azure-64.toml, 64 replays of the whole Azure conversation
  trace, with 1 and 2 local workers; asserts near-linear scaling (this machine has 2 cores) and equal tables.
- test_sweep_small_scaling: the same sweep on 300 requests (default run; checks equal tables, records timings).
- test_ray_overhead_per_point: tiny points run in-process vs as Ray tasks (both warm, one worker): the
  difference per point is what Ray adds (dispatch, argument and result transfer).
Timings go to the benchmark's extra_info (pytest --benchmark-enable --runslow -s tests/benchmarks/test_bench_sweep.py).
Measured here (2 cores, otherwise idle): 64 points, 1 worker 122.5 s (1.9 s per point), 2 workers 59.9 s (x2.0);
Ray adds about 1-2 ms per point once its workers are warm, and about 2-3 s to start a local cluster.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from harness.sweep.executors import open_executor
from harness.sweep.run import run_points, run_sweep
from harness.sweep.spec import expand, load_sweep

EXAMPLE = Path(__file__).resolve().parents[2] / "models" / "sweeps" / "sweep-azure-64.toml"


def _timed_sweep(sweep, out, jobs, executor="local"):
    started = time.perf_counter()
    table, meta = run_sweep(sweep, out, jobs=jobs, executor=executor, show_progress=False, report=False)
    assert meta["computed"] == meta["points"] == len(expand(sweep))
    return table, time.perf_counter() - started


def _scaling(benchmark, sweep, tmp_path):
    one, t1 = _timed_sweep(sweep, tmp_path / "j1", 1)
    results = {}

    def two():
        results["table"], results["wall_s"] = _timed_sweep(sweep, tmp_path / f"j2-{len(results)}", 2)

    benchmark.pedantic(two, rounds=1, iterations=1)
    assert_frame_equal(results["table"], one)
    n = one.height
    benchmark.extra_info.update(points=n, wall_s_1_worker=t1, wall_s_2_workers=results["wall_s"],
                                speedup=t1 / results["wall_s"], s_per_point_1_worker=t1 / n)
    print(f"\n{n} points: 1 worker {t1:.1f} s ({t1 / n:.2f} s/point), 2 workers {results['wall_s']:.1f} s, "
          f"speedup {t1 / results['wall_s']:.2f}")
    return t1 / results["wall_s"]


@pytest.mark.slow
def test_sweep_64_points_scaling(benchmark, tmp_path):
    load_before = os.getloadavg()[0]
    speedup = _scaling(benchmark, load_sweep(EXAMPLE), tmp_path)
    benchmark.extra_info.update(load_avg_before=load_before, load_avg_after=os.getloadavg()[0])
    # 2 workers on 2 idle cores: the pool's start-up is small next to 64 full-trace replays. Other work on the
    # machine takes cores from the 2-worker run only; the load averages say whether that happened.
    assert speedup > 1.5, (f"speedup {speedup:.2f}; load average before {load_before:.1f}, "
                           f"after {os.getloadavg()[0]:.1f}")


def test_sweep_small_scaling(benchmark, tmp_path):
    sweep = load_sweep(EXAMPLE)
    small = dataclasses.replace(sweep, traces=[dict(t, options={"limit": 300}) for t in sweep.traces],
                                grid={**sweep.grid, "batch_cap": [32, 96]})
    _scaling(benchmark, small, tmp_path)


def test_ray_overhead_per_point(benchmark, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'cmbench[ray]')")
    sweep = load_sweep(EXAMPLE)
    tiny = dataclasses.replace(sweep, traces=[dict(t, options={"limit": 20}) for t in sweep.traces],
                               grid={"prefill_instances": [1, 2, 3, 6], "batch_cap": [16, 32, 64, 96]})
    points = expand(tiny)
    warm = expand(dataclasses.replace(tiny, seed=99))   # other ids, same costs: warms caches in every worker
    with open_executor("local", 1) as ex:
        run_points(warm, tmp_path / "local-warm", ex, show_progress=False)
        started = time.perf_counter()
        run_points(points, tmp_path / "local", ex, show_progress=False)
        local_s = time.perf_counter() - started
    started = time.perf_counter()
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    except Exception as exc:
        pytest.skip(f"cannot start a local Ray cluster here: {exc}")
    start_s = time.perf_counter() - started
    timing = {}
    try:
        with open_executor("ray", 1) as ex:
            run_points(warm, tmp_path / "ray-warm", ex, show_progress=False)

            def on_ray():
                t = time.perf_counter()
                run_points(points, tmp_path / f"ray-{len(timing)}", ex, show_progress=False)
                timing["ray_s"] = time.perf_counter() - t

            benchmark.pedantic(on_ray, rounds=1, iterations=1)
    finally:
        ray.shutdown()
    n = len(points)
    overhead_ms = (timing["ray_s"] - local_s) / n * 1e3
    benchmark.extra_info.update(points=n, local_s=local_s, ray_s=timing["ray_s"], ray_start_s=start_s,
                                ray_overhead_ms_per_point=overhead_ms)
    print(f"\n{n} tiny points, 1 worker: in-process {local_s:.2f} s, Ray {timing['ray_s']:.2f} s "
          f"(+{overhead_ms:.0f} ms per point); Ray start {start_s:.1f} s")
