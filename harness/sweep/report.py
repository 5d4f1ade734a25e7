"""HTML report of a sweep (sweep.parquet + sweep.json) or a plan (plan.parquet + plan.json): a pure function of the
saved files. The page is the report package's (base template, styles, plotly.js embedded once, number formats);
only the sections here are new (templates/sweep.html.j2, templates/plan.html.j2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from harness.errors import InputError
from harness.hardware.units import parse_quantity
from harness.outputs import write_text_atomic
from harness.report.figures import colour, figure, layout
from harness.report.render import collect_figures, plotly_js_gzip_b64, script_json, template_env

MAX_ROWS = 500   # the all-points table stops here; the Parquet file has every row
SHOWN_METRICS = [("chips", "count"), ("output_tokens_per_s_per_chip", ""), ("input_tokens_per_s_per_chip", ""),
                 ("ttft_s_p99", ""), ("tpot_ms_p99", ""), ("slo_attainment", "frac"), ("goodput_req_per_s", ""),
                 ("cost_per_million_output_tokens", "usd"), ("cost_per_hour_usd", "usd"), ("slo_margin", "frac")]
# Column heads a person reads (with units); each head's title is the sweep.parquet column it shows.
METRIC_HEADS = {"chips": "chips", "output_tokens_per_s_per_chip": "out tok/s per chip",
                "input_tokens_per_s_per_chip": "in tok/s per chip", "ttft_s_p99": "p99 TTFT (s)",
                "tpot_ms_p99": "p99 TPOT (ms)", "slo_attainment": "SLO attainment",
                "goodput_req_per_s": "goodput (req/s)",
                "cost_per_million_output_tokens": "$ / 1M out tokens", "cost_per_hour_usd": "$ / hour",
                "slo_margin": "SLO margin"}


def _env() -> jinja2.Environment:
    return template_env(Path(__file__).with_name("templates"))


def _pareto(xs: list[float], ys: list[float]) -> list[int]:
    """Indices of points no other point beats (lower x and higher y), ordered by x."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front, best_y = [], float("-inf")
    for i in order:
        if ys[i] > best_y:
            front.append(i)
            best_y = ys[i]
    return front


def _hover(row: dict[str, Any], knobs: list[str]) -> str:
    parts = [f"point {row['point']} ({row['label']})"] + [f"{k}={row['knob:' + k]}" for k in knobs
                                                         if row.get("knob:" + k) is not None]
    return "<br>".join(parts)


def _pareto_figure(ok: pl.DataFrame, x: str, x_title: str, fig_id: str, title: str, knobs: list[str]) -> dict:
    data = []
    for i, label in enumerate(ok.get_column("label").unique(maintain_order=True).to_list()):
        rows = ok.filter((pl.col("label") == label) & pl.col(x).is_not_null()
                         & pl.col("output_tokens_per_s_per_chip").is_not_null()).to_dicts()
        if not rows:
            continue
        xs = [r[x] for r in rows]
        ys = [r["output_tokens_per_s_per_chip"] for r in rows]
        text = [_hover(r, knobs) for r in rows]
        data.append({"type": "scatter", "mode": "markers", "name": f"{label}", "x": xs, "y": ys, "text": text,
                     "marker": {"color": colour(i), "size": 8,
                                "symbol": ["circle" if r["meets_slo"] else "circle-open" for r in rows]},
                     "hovertemplate": "%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"})
        front = _pareto(xs, ys)
        data.append({"type": "scatter", "mode": "lines", "name": f"{label} Pareto front", "showlegend": False,
                     "x": [xs[j] for j in front], "y": [ys[j] for j in front], "hoverinfo": "skip",
                     "line": {"color": colour(i), "width": 1.5, "shape": "hv"}})
    return figure(fig_id, title, data, layout(x_title, "output tokens/s per chip"))


def _heatmaps(ok: pl.DataFrame, knobs: list[str]) -> list[dict]:
    """Per backend, the first two knobs that vary there: best throughput per chip and best p99 TPOT over the
    other knobs."""
    figs = []
    for label in ok.get_column("label").unique(maintain_order=True).to_list():
        rows = ok.filter(pl.col("label") == label)
        varying = [k for k in knobs if rows.get_column("knob:" + k).drop_nulls().n_unique() > 1]
        if len(varying) < 2:
            continue
        kx, ky = varying[:2]
        xs = sorted(rows.get_column("knob:" + kx).drop_nulls().unique().to_list(), key=_sort_key)
        ys = sorted(rows.get_column("knob:" + ky).drop_nulls().unique().to_list(), key=_sort_key)
        for metric, agg, name in (("output_tokens_per_s_per_chip", max, "output tokens/s per chip (best)"),
                                  ("tpot_ms_p99", min, "p99 TPOT ms (best)")):
            z = []
            for yv in ys:
                line = []
                for xv in xs:
                    vals = rows.filter((pl.col("knob:" + kx) == xv) & (pl.col("knob:" + ky) == yv)) \
                        .get_column(metric).drop_nulls().to_list()
                    line.append(agg(vals) if vals else None)
                z.append(line)
            fid = f"heat-{len(figs)}"
            figs.append(figure(fid, f"{label}: {name} over {kx} x {ky}",
                               [{"type": "heatmap", "x": [str(v) for v in xs], "y": [str(v) for v in ys], "z": z,
                                 "colorscale": "Viridis", "reversescale": metric == "tpot_ms_p99",
                                 "colorbar": {"title": {"text": metric}},
                                 "hovertemplate": f"{kx}=%{{x}}<br>{ky}=%{{y}}<br>%{{z:.4g}}<extra></extra>"}],
                               layout(kx, ky, xaxis={"type": "category"}, yaxis={"type": "category"})))
    return figs


def _sort_key(v: Any) -> tuple:
    """Numbers, then quantities by their value ("50 GB/s" before "135 GB/s"), then other text."""
    if isinstance(v, int | float):
        return (0, v, "")
    try:
        return (0, parse_quantity(str(v)), str(v))
    except ValueError:
        return (1, 0, str(v))


def best_per_backend(table: pl.DataFrame) -> list[dict[str, Any]]:
    """Per backend label: the point meeting the SLO that costs least per hour, then keeps the most headroom under the
    SLO, then the lowest $ per 1M output tokens. A sweep replays one trace at a fixed offered load, so equal-size
    deployments carry the same tokens; their $ per token and throughput per chip differ only by how long the last
    requests take to drain, which is noise, not a reason to prefer one."""
    out = []
    for label in table.get_column("label").unique(maintain_order=True).to_list():
        ok = table.filter((pl.col("label") == label) & pl.col("meets_slo"))
        if ok.height == 0:
            out.append({"label": label, "row": None})
            continue
        ok = ok.sort(["cost_per_hour_usd", "slo_margin", "cost_per_million_output_tokens", "point"],
                     descending=[False, True, False, False], nulls_last=True)
        out.append({"label": label, "row": ok.row(0, named=True)})
    return out


def _knobs(table: pl.DataFrame) -> list[str]:
    return [c.removeprefix("knob:") for c in table.columns if c.startswith("knob:")]


def _sweep_section(table: pl.DataFrame, meta: dict[str, Any], source: Path) -> tuple[dict, list[dict]]:
    knobs = _knobs(table)
    ok = table.filter(pl.col("status") == "ok")
    figs = {"pareto": [_pareto_figure(ok, "tpot_ms_p99", "p99 TPOT (ms)", "pareto-tpot",
                                      "Throughput per chip vs p99 TPOT (filled: meets the SLO)", knobs),
                       _pareto_figure(ok, "cost_per_million_output_tokens", "$ per 1M output tokens", "pareto-cost",
                                      "Throughput per chip vs cost (filled: meets the SLO)", knobs)],
            "heat": _heatmaps(ok, knobs)}
    model = {"meta": meta, "knobs": knobs, "metrics": SHOWN_METRICS, "heads": METRIC_HEADS,
             "best": best_per_backend(table),
             "rows": table.head(MAX_ROWS).to_dicts(), "total_rows": table.height,
             "failed": table.filter(pl.col("status") != "ok").select("point", "label", "error").to_dicts()}
    return {"kind": "sweep", "title": f"Sweep: {meta['name']}", "source": str(source), "model": model}, figs


def _plan_section(table: pl.DataFrame, plan: dict[str, Any], source: Path) -> tuple[dict, list[dict]]:
    data = []
    n = len(plan["backends"])
    for i, b in enumerate(plan["backends"]):
        rows = table.filter(pl.col("label") == b["label"]).to_dicts()
        shift = (i - (n - 1) / 2) * 0.12   # backends side by side where they evaluated the same cell
        data.append({"type": "scatter", "mode": "markers", "name": b["label"],
                     "x": [r["knob:decode_instances"] + shift for r in rows],
                     "y": [r["knob:prefill_instances"] for r in rows],
                     "text": [f"{r['label']}: {r['knob:prefill_instances']} prefill + {r['knob:decode_instances']} "
                              f"decode, {'meets' if r['meets_slo'] else 'misses'} the SLO" for r in rows],
                     "marker": {"color": colour(i), "size": 11,
                                "symbol": ["circle" if r["meets_slo"] else "x" for r in rows]},
                     "hovertemplate": "%{text}<extra></extra>"})
        if b["winner"]:
            data.append({"type": "scatter", "mode": "markers", "name": f"{b['label']} winner",
                         "x": [b["winner"]["decode_instances"] + shift], "y": [b["winner"]["prefill_instances"]],
                         "marker": {"color": colour(i), "size": 22, "symbol": "star-open", "line": {"width": 2}},
                         "cliponaxis": False, "hoverinfo": "skip"})
    max_p = max((y for d in data for y in d["y"]), default=1)
    fig = figure("plan-cells", "Evaluated deployments (circle: meets the SLO; x: misses; star: winner)", data,
                 layout("decode instances", "prefill instances",
                        # Instance counts start at 1: the axes show the evaluated cells and no negative counts.
                        yaxis={"range": [0.5, max_p + 0.5], **({"dtick": 1} if max_p <= 20 else {})},
                        xaxis={"dtick": 1, "range": [0.5, plan["bounds"]["max_decode_instances"] + 0.5]},
                        height=max(320, 120 + 16 * min(max_p, 20))))
    model = {"plan": plan, "knobs": _knobs(table), "metrics": SHOWN_METRICS, "heads": METRIC_HEADS,
             "rows": table.head(MAX_ROWS).to_dicts(),
             "total_rows": table.height}
    return {"kind": "plan", "title": f"Plan: {plan['trace']['name']}", "source": str(source), "model": model}, \
        {"cells": [fig]}


def render_sweep_html(out_dir: str | Path) -> str:
    """The report of a `bench sweep` or `bench plan` output folder, as one HTML string."""
    out = Path(out_dir)
    if (out / "plan.json").is_file():
        kind, table_path, meta_path = "plan", out / "plan.parquet", out / "plan.json"
    else:
        kind, table_path, meta_path = "sweep", out / "sweep.parquet", out / "sweep.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        table = pl.read_parquet(table_path)
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"not a sweep or plan folder: {exc}", path=str(out)) from None
    section, groups = (_plan_section if kind == "plan" else _sweep_section)(table, meta, out)
    section["id"] = "s1"
    figures, section["plots"] = collect_figures(groups, "s1")
    return _env().get_template("report.html.j2").render(
        title=section["title"], sections=[section], figures_json=script_json(figures), plotly_b64=plotly_js_gzip_b64())


def is_sweep_folder(path: str | Path) -> bool:
    """A `bench sweep` or `bench plan` output folder (its sweep.json or plan.json)."""
    p = Path(path)
    return p.is_dir() and ((p / "sweep.json").is_file() or (p / "plan.json").is_file())


def render_sweep_report(out_dir: str | Path, out_path: str | Path) -> Path:
    write_text_atomic(out_path, render_sweep_html(out_dir))
    return Path(out_path)
