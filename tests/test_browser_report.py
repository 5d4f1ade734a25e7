"""Real-browser test of the HTML report: headless Debian chromium loads it offline, every plot draws, nothing runs
that should not, and the console stays clean. A screenshot of each page lands in the test's temporary folder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import open_page

from harness.report import render_report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_report_sample import write_sample_results  # noqa: E402

pytestmark = pytest.mark.browser

HOSTILE = '<script>window.__pwned=1;alert(1)</script><img src=x onerror="window.__pwned=2">'




def _assert_all_plots_drew(driver) -> int:
    ids = driver.execute_script(
        "return JSON.parse(document.getElementById('figures').textContent).map(f => f.id)")
    assert ids, "the report has no plots"
    for fid in ids:
        marks = driver.execute_script(
            "const el = document.getElementById(arguments[0]);"
            "return el.querySelectorAll('svg.main-svg path, svg.main-svg rect, svg.main-svg .point').length", fid)
        drawn = driver.execute_script(
            "const el = document.getElementById(arguments[0]);"
            "return !!el.querySelector('svg.main-svg') && el.querySelector('.plot-container') !== null", fid)
        assert drawn and marks > 0, f"plot {fid} did not draw"
    return len(ids)


def _assert_no_network(driver) -> None:
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:') && !n.startsWith('blob:'))")
    assert fetched == [], f"the report fetched {fetched}"


def test_replay_report_draws_in_chromium_and_hostile_name_stays_text(browser, tmp_path: Path) -> None:
    results = write_sample_results(tmp_path / "results", n_requests=300, trace_name=HOSTILE,
                                   labels=["cloudmatrix384", HOSTILE.replace("/", "|")])
    page = render_report([results], tmp_path / "report.html")
    logs = open_page(browser, page, tmp_path / "replay.png")
    errors = [e for e in logs if e["level"] == "SEVERE"]
    assert errors == [], errors
    assert _assert_all_plots_drew(browser) >= 10
    _assert_no_network(browser)
    assert browser.execute_script("return window.__pwned === undefined")
    # The hostile name is shown, as text, in the title heading.
    h1 = browser.execute_script("return document.querySelector('h1').textContent")
    assert HOSTILE in h1
    assert (tmp_path / "replay.png").stat().st_size > 10_000



def _ops_result(path: Path) -> Path:
    """A real `bench ops replay` result of a small two-stream op graph (built in code, analysed by harness.ops)."""
    from harness.ops.analysis import analyse
    from harness.ops.graph import Op, OpGraph

    ops = []
    for layer in range(20):
        t = layer * 1e-3
        ops.append(Op(name="ampere_gemm", stream="7", duration_s=4e-4, category="gemm", start_s=t))
        ops.append(Op(name=HOSTILE, stream="7", duration_s=2e-4, category="attention", start_s=t + 4.5e-4))
        ops.append(Op(name="ncclAllReduce", stream="20", duration_s=3e-4, category="all_reduce", start_s=t + 6.6e-4,
                      deps=[len(ops) - 1]))
    graph = OpGraph(ops=ops, meta={"source": "two-stream.json", "format": "native"})
    path.write_text(json.dumps(analyse(graph, None, None)))
    return path


def test_combined_report_with_ops_and_validation_draws(browser, tmp_path: Path) -> None:
    results = write_sample_results(tmp_path / "results", n_requests=200)
    val = tmp_path / "validation.json"
    val.write_text(json.dumps([
        {"id": "decode tok/s per chip", "published": 1943.0, "predicted": 1810.0, "unit": "tok/s", "error_pct": -6.8},
        {"id": HOSTILE, "published": 50.0, "predicted": 61.0, "unit": "ms", "error_pct": 22.0}]))
    page = render_report([results, _ops_result(tmp_path / "ops.json"), val], tmp_path / "combined.html")
    logs = open_page(browser, page, tmp_path / "combined.png")
    assert [e for e in logs if e["level"] == "SEVERE"] == []
    assert _assert_all_plots_drew(browser) >= 14
    _assert_no_network(browser)
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.execute_script("return document.querySelectorAll('section').length") == 3


def test_report_of_a_real_small_replay_draws(browser, tmp_path: Path, repo_root: Path) -> None:
    """`bench replay --report` on 300 requests of the bundled Azure conversation trace, opened in chromium."""
    from click.testing import CliRunner

    from harness.cli import main

    trace = tmp_path / "<img src=x onerror=window.__pwned=1>.csv.gz"
    shutil.copy(repo_root / "traces" / "azure_conv_2023.csv.gz", trace)
    page = tmp_path / "replay.html"
    res = CliRunner().invoke(main, ["replay", str(trace), "--limit", "300", "--out", str(tmp_path / "out"),
                                    "--report", str(page), "--quiet"])
    assert res.exit_code == 0, res.output
    logs = open_page(browser, page, tmp_path / "real-replay.png")
    assert [e for e in logs if e["level"] == "SEVERE"] == []
    assert _assert_all_plots_drew(browser) >= 10
    _assert_no_network(browser)
    assert browser.execute_script("return window.__pwned === undefined")
    # Over-time axes never go below 0 (this trace has no cache hits: the hit-ratio axis once ran from -100%).
    lows = browser.execute_script("return [...document.querySelectorAll('[id*=\"-ts_\"]')]"
                                  ".map(el => [el.id, el._fullLayout.yaxis.range[0]])")
    assert len(lows) == 7 and all(low >= 0 for _, low in lows), lows
    # The op-category legend above the step bars leaves the four bars their room (they were squeezed to ~15 px).
    bars_px = browser.execute_script("return document.querySelector('[id$=\"-steps\"]')._fullLayout._size.h")
    assert bars_px >= 4 * 30, bars_px
