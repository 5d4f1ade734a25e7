"""The sweep and plan reports in headless chromium: every plot draws offline, a hostile backend label stays text."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import open_page

from harness.sweep.run import run_sweep
from harness.sweep.spec import load_sweep

pytestmark = pytest.mark.browser
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _open(driver, page: Path, shot: Path) -> None:
    """Load the report; every plot drew, nothing hostile ran, the console has no errors."""
    logs = open_page(driver, page, shot)
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
    ids = driver.execute_script("return JSON.parse(document.getElementById('figures').textContent).map(f => f.id)")
    assert ids
    for fid in ids:
        assert driver.execute_script("return !!document.getElementById(arguments[0]).querySelector('svg.main-svg')",
                                     fid), f"plot {fid} did not draw"
    assert driver.execute_script("return window.__pwned === undefined")


def test_sweep_report_draws_and_escapes(browser, tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f"""
[trace]
path = "azure-conv"
limit = 80
rate = 50.0
[grid]
prefill_instances = [1, 2]
batch_cap = [8, 64]
[[backend]]
backend = "cloudmatrix384"
label = '{HOSTILE}'
[[backend]]
backend = "h800-ib"
""", encoding="utf-8")
    run_sweep(load_sweep(sweep), tmp_path / "out", show_progress=False)
    _open(browser, tmp_path / "out" / "report.html", tmp_path / "sweep.png")
    assert HOSTILE in browser.find_element("css selector", "table.best").text


def test_plan_report_draws(browser, tmp_path):
    from harness.results.slo import parse_slo
    from harness.sweep.plan import Bounds, plan_deployments
    from harness.sweep.report import render_sweep_report
    from harness.sweep.spec import Backend, trace_ref

    backends = [Backend("cloudmatrix384", "cloudmatrix384", "cm384-prefill", "cm384-decode", {}),
                Backend("h800-ib", "h800-ib", "h800-prefill", "h800-decode", {})]
    plan_deployments(trace_ref("azure-conv", {"limit": 80, "rate": 50.0}), backends, parse_slo("ttft=2s"),
                     tmp_path / "plan", bounds=Bounds(3, 2))
    render_sweep_report(tmp_path / "plan", tmp_path / "plan" / "report.html")
    _open(browser, tmp_path / "plan" / "report.html", tmp_path / "plan.png")
    assert "cloudmatrix384" in browser.find_element("css selector", "table.winners").text
    # Instance counts start at 1: the prefill axis shows no 0 or negative counts.
    low = browser.execute_script("return document.querySelector('[id$=\"-plan-cells\"]')._fullLayout.yaxis.range[0]")
    assert 0 < low <= 1, low
