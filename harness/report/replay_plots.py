"""Plots of a replay comparison, one builder per plot; every series is downsampled (see series.py)."""

from __future__ import annotations

from typing import Any

import polars as pl

from harness.report.figures import CATEGORY_PALETTE, colour, figure, layout
from harness.report.inputs import ReplayResults
from harness.report.series import bucket_mean, cdf_points, compact, sample_indices, text


def _completed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("status") == "completed")


def _cdf(res: ReplayResults, fig_id: str, column: str, title: str, x_title: str,
         slo: float | None) -> dict[str, Any]:
    data = []
    for i, b in enumerate(res.backends):
        x, y = cdf_points(_completed(b.requests).get_column(column).drop_nulls().to_numpy())
        data.append({"type": "scatter", "mode": "lines", "name": text(b.label), "x": compact(x), "y": compact(y),
                     "line": {"color": colour(i), "width": 2},
                     "hovertemplate": f"%{{x:.4g}} {text(x_title)}<br>%{{y:.1%}} of requests<extra>{text(b.label)}</extra>"})
    lay = layout(x_title, "fraction of completed requests", yaxis={"range": [0, 1.02], "tickformat": ".0%"})
    if slo is not None:
        lay["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": slo, "x1": slo, "y0": 0, "y1": 1,
                          "line": {"color": "#555", "dash": "dot", "width": 1}}]
        lay["annotations"] = [{"x": slo, "y": 0.02, "xref": "x", "yref": "paper", "text": "SLO", "showarrow": False,
                               "xanchor": "left", "font": {"size": 11, "color": "#555"}}]
    return figure(fig_id, title, data, lay)


# (id, title, y title, [(column, series name, dash)]): the over-time panels, read from timeseries.parquet.
_OVER_TIME = (
    ("ts_input", "Input throughput over time", "input tokens/s", [("input_tokens_per_s", "", "solid")]),
    ("ts_output", "Output throughput over time", "output tokens/s", [("output_tokens_per_s", "", "solid")]),
    ("ts_queue", "Queue depth over time", "requests waiting",
     [("prefill_queue", "prefill", "solid"), ("decode_queue", "decode", "dot")]),
    ("ts_batch", "Running decode batch over time", "requests in batch", [("running_batch", "", "solid")]),
    ("ts_kv", "KV memory in use over time", "fraction of KV capacity", [("kv_used_frac", "", "solid")]),
    ("ts_cache", "Context-cache hit ratio over time", "hit ratio (tokens)", [("cache_hit_ratio", "", "solid")]),
    ("ts_util", "Utilisation over time", "busy fraction",
     [("prefill_util", "prefill", "solid"), ("decode_util", "decode", "dot")]),
)


def _over_time(res: ReplayResults) -> list[dict[str, Any]]:
    figs = []
    series = [bucket_mean(b.timeseries.sort("t_s")) for b in res.backends]
    for fig_id, title, y_title, columns in _OVER_TIME:
        data = []
        for i, (b, ts) in enumerate(zip(res.backends, series, strict=True)):
            for col, suffix, dash in columns:
                name = text(b.label) + (f" · {suffix}" if suffix else "")
                data.append({"type": "scatter", "mode": "lines", "name": name,
                             "x": compact(ts.get_column("t_s").to_numpy()),
                             "y": compact(ts.get_column(col).cast(pl.Float64).to_numpy()),
                             "line": {"color": colour(i), "width": 1.6, "dash": dash}})
        # Every panel's quantity is a count, rate or fraction: the axis never goes below 0 (a run without cache
        # hits would otherwise show a hit ratio axis from -100%).
        yaxis = {"rangemode": "nonnegative"}
        if y_title.startswith(("fraction", "hit", "busy")):
            yaxis["tickformat"] = ".0%"
        figs.append(figure(fig_id, title, data, layout("time (s)", y_title, yaxis=yaxis)))
    return figs


def _utilisation(res: ReplayResults) -> dict[str, Any]:
    parts = sorted({k for b in res.backends for k in b.summary["utilisation"]},
                   key=lambda k: (["prefill", "decode", "cache"] + [k]).index(k))
    data = [{"type": "bar", "name": text(b.label), "x": [text(p) for p in parts],
             "y": [b.summary["utilisation"].get(p) for p in parts], "marker": {"color": colour(i)},
             "hovertemplate": "%{x}: %{y:.1%}<extra>" + text(b.label) + "</extra>"}
            for i, b in enumerate(res.backends)]
    return figure("util", "Prefill / decode / cache utilisation", data, layout("", "busy fraction of the run",
                                       barmode="group", yaxis={"tickformat": ".0%", "rangemode": "tozero"}))


def _scatter(res: ReplayResults) -> dict[str, Any]:
    data = []
    for i, b in enumerate(res.backends):
        done = _completed(b.requests).drop_nulls("ttft_s")
        idx = sample_indices(done.height)
        data.append({"type": "scatter", "mode": "markers", "name": text(b.label),
                     "x": compact(done.get_column("input_tokens").to_numpy()[idx]),
                     "y": compact(done.get_column("ttft_s").to_numpy()[idx]),
                     "marker": {"color": colour(i), "size": 4, "opacity": 0.55},
                     "hovertemplate": "%{x} input tokens<br>TTFT %{y:.4g} s<extra>" + text(b.label) + "</extra>"})
    shown = sum(len(d["x"]) for d in data)
    total = sum(_completed(b.requests).height for b in res.backends)
    title = "Input length vs TTFT" + (f" ({shown:,} of {total:,} requests shown)" if shown < total else "")
    return figure("scatter", title, data, layout("input tokens", "TTFT (s)", xaxis={"type": "log"},
                                          yaxis={"type": "log"}))


def _step_breakdown(res: ReplayResults) -> dict[str, Any]:
    """Busy time per op category of each phase's representative step, stacked, with the step's own time marked:
    ops on overlapping streams (two microbatches; compute beside communication) run at once, so the stack can
    reach past the step."""
    rows = [(b.label, phase, step["busy_s"]) for b in res.backends for phase, step in b.summary["step_breakdown"].items()]
    steps = [step["step_s"] for b in res.backends for step in b.summary["step_breakdown"].values()]
    totals: dict[str, float] = {}
    for _, _, cats in rows:
        for cat, sec in cats.items():
            totals[cat] = totals.get(cat, 0.0) + sec
    order = sorted(totals, key=lambda c: -totals[c])
    y = [f"{text(label)} · {text(phase)}" for label, phase, _ in rows]
    data = [{"type": "bar", "orientation": "h", "name": text(cat), "y": y,
             "x": [cats.get(cat, 0.0) * 1e3 for _, _, cats in rows],
             "marker": {"color": CATEGORY_PALETTE[k % len(CATEGORY_PALETTE)]},
             "hovertemplate": "%{y}<br>" + text(cat) + ": %{x:.4g} ms<extra></extra>"}
            for k, cat in enumerate(order)]
    data.append({"type": "scatter", "mode": "markers", "name": "step time", "y": y, "x": [t * 1e3 for t in steps],
                 "marker": {"symbol": "diamond", "size": 12, "color": "#111", "line": {"color": "#fff", "width": 1}},
                 "hovertemplate": "%{y}<br>step time: %{x:.4g} ms<extra></extra>"})
    # The legend (a dozen categories, about two to a row beside the long bar labels) sits above the bars: the
    # height grows with it, so the bars keep their room.
    lay = layout("ms (busy time per category, stacked; ◆ the step's time)", "", barmode="stack",
                 legend={"traceorder": "normal"}, height=max(260, 70 + 46 * len(rows)) + 20 * ((len(data) + 1) // 2),
                 yaxis={"autorange": "reversed", "automargin": True})
    return figure("steps", "Busy time per op category in one representative step (streams overlap)", data, lay)


def replay_figures(res: ReplayResults) -> dict[str, list[dict[str, Any]]]:
    """Figures grouped by the report section they belong to."""
    slo = res.run["slo"]
    return {
        "latency": [_cdf(res, "cdf_ttft", "ttft_s", "TTFT distribution", "TTFT (s)", slo.get("ttft_s")),
                    _cdf(res, "cdf_tpot", "tpot_ms", "TPOT distribution", "TPOT (ms)", slo.get("tpot_ms")),
                    _scatter(res)],
        "over_time": _over_time(res),
        "resources": [_utilisation(res), _step_breakdown(res)],
    }

