"""HTML reports rendered from saved results (replay folders, op-trace replay JSON, validation JSON)."""

from harness.report.inputs import load_results
from harness.report.render import render_html, render_replay_report, render_report

__all__ = ["load_results", "render_html", "render_replay_report", "render_report"]
