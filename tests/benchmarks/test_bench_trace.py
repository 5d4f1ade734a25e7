"""Loader speed and memory on a million requests: native Parquet < 2 s, Azure-style CSV < 4 s, < 500 MB peak.

The big files are generated in a tmp dir at benchmark time (never committed). Memory is the peak RSS of a fresh
process that imports the harness and loads + validates the file, so it is the whole cost a user pays.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from harness.trace import load_trace, save_trace, synthesize

N = 1_000_000
REPO = Path(__file__).resolve().parents[2]
# VmHWM (peak resident set of this process image), not ru_maxrss: on Linux the latter carries the forking parent's
# peak across exec, so it would measure pytest rather than the load.
_PEAK_RSS = """
import json, re, sys, time
from harness.trace import load_trace
t = time.perf_counter(); w = load_trace(sys.argv[1]); dt = time.perf_counter() - t
hwm_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"rows": len(w), "seconds": dt, "peak_rss_mb": hwm_kb / 1024}))
"""


@pytest.fixture(scope="module")
def native_parquet(tmp_path_factory) -> Path:
    workload = synthesize(N, rate=300.0, input="lognormal:1500:1.2", output="lognormal:250:1", seed=0)
    return save_trace(workload, tmp_path_factory.mktemp("bench") / "native_1m.parquet")


@pytest.fixture(scope="module")
def azure_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    start = np.datetime64("2023-11-16T18:00:00", "ns")
    offsets_ns = np.cumsum(rng.exponential(1e9 / 300.0, size=N)).astype("int64")
    stamps = pl.Series((start + offsets_ns.astype("timedelta64[ns]"))).dt.strftime("%Y-%m-%d %H:%M:%S%.f")
    frame = pl.DataFrame({"TIMESTAMP": stamps.str.slice(0, 27),  # 7 fractional digits, as Azure writes them
                          "ContextTokens": rng.integers(2, 8000, size=N),
                          "GeneratedTokens": rng.integers(1, 1000, size=N)})
    path = tmp_path_factory.mktemp("bench") / "azure_1m.csv"
    frame.write_csv(path)
    return path


def _fresh_process(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("fixture, limit_s", [("native_parquet", 2.0), ("azure_csv", 4.0)])
def test_load_and_validate_1m(benchmark, request, fixture, limit_s):
    path = request.getfixturevalue(fixture)
    workload = benchmark.pedantic(load_trace, args=(path,), rounds=3, iterations=1, warmup_rounds=1)
    assert len(workload) == N and workload.requests["arrival_s"].is_sorted()
    measured = _fresh_process(path)
    benchmark.extra_info.update(measured)
    print(f"\n{fixture}: {measured}")
    assert measured["peak_rss_mb"] < 500, measured
    if benchmark.stats is not None:  # only when benchmarks are enabled (--benchmark-enable / --benchmark-only)
        assert benchmark.stats.stats.median < limit_s, benchmark.stats.stats.median
    assert measured["seconds"] < limit_s, measured
