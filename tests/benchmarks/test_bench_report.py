"""Speed and size target: render the report of a 20,000-request, two-backend comparison in under 5 s and 5 MB.

The results folder is written by the report tests' sample writer (the simulator's output layout)."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.report import render_report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from test_report_sample import write_sample_results  # noqa: E402

LIMIT_S = 5.0
LIMIT_BYTES = 5_000_000


def test_render_20k_request_comparison(benchmark, tmp_path: Path) -> None:
    results = write_sample_results(tmp_path / "run", n_requests=20_000)
    out = tmp_path / "report.html"
    benchmark.pedantic(render_report, args=([results], out), rounds=3, iterations=1, warmup_rounds=1)
    size = out.stat().st_size
    benchmark.extra_info["report_bytes"] = size
    assert size < LIMIT_BYTES
    if benchmark.stats is not None:  # None under --benchmark-disable
        assert benchmark.stats.stats.max < LIMIT_S
