"""Op-trace replay report: per-stream timelines recorded vs predicted, category breakdown, critical path and the
per-category error on the source hardware, read from a `bench ops replay --out` JSON (see harness/ops/result.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.report.figures import CATEGORY_PALETTE, colour, figure, layout
from harness.report.series import compact, text

# The timelines a result may hold, in the order the report shows them.
KINDS = ("recorded", "replayed", "source_predicted", "target_predicted")
GANTT_PIXELS = 1500  # intervals closer than span / GANTT_PIXELS merge: the plot cannot show them apart anyway


def merge_intervals(start: np.ndarray, end: np.ndarray, min_gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Union of [start, end) intervals, also joining ones separated by less than `min_gap`."""
    if start.size == 0:
        return start, end
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    new[1:] = s[1:] > reach[:-1] + min_gap
    idx = np.flatnonzero(new)
    return s[idx], np.append(reach[idx[1:] - 1], reach[-1])


def _kinds(doc: dict[str, Any]) -> list[str]:
    return [k for k in KINDS if doc.get(k)]


def _kind_label(doc: dict[str, Any], kind: str) -> str:
    hw = doc[kind].get("hardware")
    return kind.replace("_", " ") + (f" ({hw})" if hw else "")


def ops_model(res: Any) -> dict[str, Any]:
    doc = res.data
    kinds = _kinds(doc)
    summaries = [{"kind": k, "label": _kind_label(doc, k), **{f: doc[k].get(f) for f in
                  ("span_s", "sum_op_time_s", "busy_s", "overlap_ratio", "comm_overlap_ratio")},
                  "path_ops": doc[k]["critical_path"]["ops"], "path_wait_s": doc[k]["critical_path"]["wait_s"]}
                 for k in kinds]
    cats = sorted({c for k in kinds for c in doc[k]["per_category_s"]},
                  key=lambda c: -max(doc[k]["per_category_s"].get(c, 0.0) for k in kinds))
    mape = doc.get("mape_per_category") or {}
    categories = [{"category": c, "by_kind_s": [doc[k]["per_category_s"].get(c) for k in kinds],
                   "path_by_kind_s": [doc[k]["critical_path"]["per_category_s"].get(c) for k in kinds],
                   "mape": (mape.get(c) or {}).get("mape"), "mape_ops": (mape.get(c) or {}).get("ops")}
                  for c in cats]
    first = kinds[0] if kinds else None
    path_ops = (doc[first]["critical_path"].get("op_list") or []) if first else []
    longest = sorted(path_ops, key=lambda o: -(o["end_s"] - o["start_s"]))[:12]
    trace = doc["trace"]
    return {"name": Path(trace.get("path") or "op trace").name, "trace": trace, "kinds": kinds,
            "kind_labels": [_kind_label(doc, k) for k in kinds], "summaries": summaries, "categories": categories,
            "identity": doc.get("identity"), "has_mape": bool(mape),
            "unclassified": (doc.get("classification") or {}).get("unclassified", [])[:10],
            "unclassified_share": (doc.get("classification") or {}).get("unclassified_share"),
            "path_kind": _kind_label(doc, first) if first else None, "path_longest": longest,
            "downsampled": bool(doc.get("timelines_downsampled"))}


def _gantt(doc: dict[str, Any]) -> dict[str, Any]:
    timelines = doc["timelines"]
    kinds = [k for k in KINDS if k in timelines] + [k for k in timelines if k not in KINDS]
    streams = list(doc["trace"]["streams"])
    span = max((max(t["end_s"], default=0.0) for t in timelines.values()), default=0.0)
    gap = span / GANTT_PIXELS
    rows: list[str] = []
    data = []
    for i, kind in enumerate(kinds):
        t = timelines[kind]
        st, s0, s1 = np.array(t["stream"], dtype=object), np.array(t["start_s"], float), np.array(t["end_s"], float)
        xs: list[float | None] = []
        ys: list[str | None] = []
        for stream in streams:
            row = f"stream {text(stream)} · {text(kind.replace('_', ' '))}"
            rows.append(row)
            sel = st == stream
            a, b = merge_intervals(s0[sel], s1[sel], gap)
            for lo, hi in zip(compact(a * 1e3), compact(b * 1e3), strict=True):
                xs += [lo, hi, None]
                ys += [row, row, None]
        data.append({"type": "scatter", "mode": "lines", "name": text(kind.replace("_", " ")), "x": xs, "y": ys,
                     "line": {"color": colour(i), "width": 9}, "hoverinfo": "x+y", "connectgaps": False})
    # The critical path of the first summarised timeline, coloured by op category.
    kind = next(iter(_kinds(doc)), None)
    ops = (doc[kind]["critical_path"].get("op_list") or []) if kind else []
    if ops:
        row = f"critical path · {text(kind.replace('_', ' '))}"
        rows.insert(0, row)
        cats = list(dict.fromkeys(o["category"] for o in ops))
        for k, cat in enumerate(cats):
            xs, ys, names = [], [], []
            for o in ops:
                if o["category"] == cat:
                    xs += [o["start_s"] * 1e3, o["end_s"] * 1e3, None]
                    ys += [row, row, None]
                    names += [text(o["name"])[:120]] * 2 + [None]
            data.append({"type": "scatter", "mode": "lines", "name": f"path: {text(cat)}", "x": compact(xs),
                         "y": ys, "text": names, "hovertemplate": "%{text}<br>%{x:.4g} ms<extra></extra>",
                         "line": {"color": CATEGORY_PALETTE[k % len(CATEGORY_PALETTE)], "width": 9}})
    lay = layout("time (ms)", "", height=max(240, 90 + 26 * len(rows)), showlegend=True,
                 yaxis={"type": "category", "categoryorder": "array", "categoryarray": rows[::-1],
                        "automargin": True})
    return figure("gantt", "Per-stream timelines (busy intervals), recorded vs predicted", data, lay)


def _categories(doc: dict[str, Any], key: str, title: str, fig_id: str) -> dict[str, Any]:
    kinds = _kinds(doc)
    pick = (lambda k: doc[k]["per_category_s"]) if key == "ops" else (lambda k: doc[k]["critical_path"]["per_category_s"])
    cats = sorted({c for k in kinds for c in pick(k)}, key=lambda c: -max(pick(k).get(c, 0.0) for k in kinds))
    data = [{"type": "bar", "name": text(_kind_label(doc, k)), "x": [text(c) for c in cats],
             "y": [pick(k).get(c, 0.0) * 1e3 for c in cats], "marker": {"color": colour(i)},
             "hovertemplate": "%{x}: %{y:.4g} ms<extra>" + text(_kind_label(doc, k)) + "</extra>"}
            for i, k in enumerate(kinds)]
    return figure(fig_id, title, data, layout("", "ms (summed over ops)", barmode="group"))


def _mape(doc: dict[str, Any]) -> dict[str, Any]:
    mape = doc["mape_per_category"]
    cats = sorted(mape, key=lambda c: -mape[c]["mape"])
    data = [{"type": "bar", "x": [text(c) for c in cats], "y": [mape[c]["mape"] for c in cats],
             "text": [f"n={mape[c]['ops']}" for c in cats], "marker": {"color": colour(2)}, "name": "MAPE",
             "hovertemplate": "%{x}: %{y:.1%} (%{text})<extra></extra>"}]
    return figure("mape", "Per-category duration error on the source hardware (MAPE vs recorded)", data,
                  layout("", "mean absolute % error", yaxis={"tickformat": ".0%"}, showlegend=False))


def ops_figures(res: Any) -> dict[str, list[dict[str, Any]]]:
    doc = res.data
    figs = [_gantt(doc)]
    if _kinds(doc):
        figs.append(_categories(doc, "ops", "Op time by category", "cats"))
        figs.append(_categories(doc, "path", "Critical path by category", "path"))
    if doc.get("mape_per_category"):
        figs.append(_mape(doc))
    return {"ops": figs}
