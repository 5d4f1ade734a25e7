"""Turn loaded results into one self-contained HTML file: jinja2 (autoescaped) plus plotly.js embedded once.

plotly.min.js is about 4.8 MB, which alone would nearly fill the 5 MB budget, so it is embedded gzip-compressed and
base64-encoded (about 2 MB) and unpacked in the page with the browser's built-in DecompressionStream; the tables
need no script at all. Nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from harness.outputs import write_text_atomic
from harness.report.inputs import OpsResults, ReplayResults, Results, ValidationResults, load_results

_TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def plotly_js_gzip_b64() -> str:
    """plotly.min.js from the installed plotly package, gzip (mtime 0, so reports are byte-reproducible) + base64."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can close it or start markup."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, sort_keys=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def fmt_num(value: Any, unit: str = "") -> str:
    """A number as a person reads it in a table; the exact value goes in the cell's title and data-value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if unit == "verdict" and isinstance(value, bool):
        return "met" if value else "missed"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if unit == "frac":
        return f"{value * 100:.2f}%"
    if unit == "count" or (isinstance(value, int) and unit not in ("usd",)):
        return f"{int(value):,}"
    if unit == "usd":
        return f"${value:,.2f}" if abs(value) >= 100 else f"${value:.4g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def fmt_rel(value: float | None, unit: str = "") -> str:
    """A change against the baseline: relative (%), or for fractions the difference in percentage points."""
    if value is None:
        return "—"
    return f"{value * 100:+.1f} pp" if unit == "frac" else f"{value * 100:+.1f}%"


def rel_class(value: float | None, better: str) -> str:
    """'good' / 'bad' / '' for colouring a relative difference by whether higher or lower is better."""
    if value is None or better not in ("higher", "lower") or abs(value) < 0.005:
        return ""
    return "good" if (value > 0) == (better == "higher") else "bad"


def exact(value: Any) -> str:
    return "" if value is None else json.dumps(value)


@cache
def template_env(*extra_dirs: Path) -> jinja2.Environment:
    """The report's jinja2 environment (autoescaped, strict, with the number filters); templates in `extra_dirs`
    (e.g. the sweep report's) are found first, then the report's own base templates."""
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(d) for d in (*extra_dirs, _TEMPLATES)])
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(num=fmt_num, rel=fmt_rel, exact=exact,
                       pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str))
    env.globals.update(rel_class=rel_class)
    return env



def collect_figures(groups: dict[str, list[dict]], sid: str) -> tuple[list[dict], dict[str, list[dict[str, str]]]]:
    """Figures of one section with page-unique ids (for the embedded JSON), and per group the ids and titles the
    template lays out."""
    figures: list[dict] = []
    plots: dict[str, list[dict[str, str]]] = {}
    for group, figs in groups.items():
        plots[group] = []
        for fig in figs:
            fid = f"{sid}-{fig['id']}"
            figures.append({"id": fid, "data": fig["data"], "layout": fig["layout"]})
            plots[group].append({"id": fid, "title": fig["title"]})
    return figures, plots

def _section(res: Results, index: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(section for the template, its figures with page-unique ids)."""
    sid = f"s{index}"
    if isinstance(res, ReplayResults):
        from harness.report.replay_model import replay_model
        from harness.report.replay_plots import replay_figures

        model, groups = replay_model(res), replay_figures(res)
        title = f"Replay: {res.run['trace']['name']}"
    elif isinstance(res, ValidationResults):
        from harness.report.validation import validation_figures, validation_model

        model, groups = validation_model(res), validation_figures(res)
        title = "Validation: published vs predicted"
    elif isinstance(res, OpsResults):
        from harness.report.ops_model import ops_figures, ops_model

        model, groups = ops_model(res), ops_figures(res)
        title = f"Op-trace replay: {model['name']}"
    else:  # pragma: no cover - load_results returns only the kinds above
        raise TypeError(type(res))
    figures, plots = collect_figures(groups, sid)
    section = {"id": sid, "kind": res.kind, "title": title, "source": str(res.path), "model": model,
               "plots": plots}
    return section, figures


def render_html(results: list[Results]) -> str:
    """The report for these loaded results, as one HTML string. Pure: same results, same bytes."""
    sections, figures = [], []
    for i, res in enumerate(results, start=1):
        section, figs = _section(res, i)
        sections.append(section)
        figures.extend(figs)
    title = sections[0]["title"] if len(sections) == 1 else f"cmbench report: {len(sections)} results"
    return template_env().get_template("report.html.j2").render(
        title=title, sections=sections, figures_json=script_json(figures), plotly_b64=plotly_js_gzip_b64())


def render_report(paths: list[str | Path], out_path: str | Path) -> Path:
    """Load each saved result (kind detected from content), render one report, write it atomically to out_path."""
    results = [load_results(p) for p in paths]
    write_text_atomic(out_path, render_html(results))
    return Path(out_path)


def render_replay_report(results_dir: str | Path, out_path: str | Path) -> Path:
    """The report of one `bench replay --out` folder (what `bench replay --report FILE` calls)."""
    return render_report([results_dir], out_path)
