"""Op-trace replay report: per-stream timelines recorded vs predicted, category breakdown, critical path and the
per-category error on the source hardware, read from a `bench ops replay --out` JSON (see harness/ops/result.py)."""

from __future__ import annotations

from collections.abc import Callable
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


def _path_label(doc: dict[str, Any], kind: str) -> str:
    # A recording names no dependencies: its critical path is the identity replay's.
    return "identity replay of the recording" if kind == "recorded" else _kind_label(doc, kind)


def _path_ops(doc: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """The first summarised timeline and its critical path's ops (the path the report shows)."""
    first = next(iter(_kinds(doc)), None)
    return first, (doc[first]["critical_path"].get("op_list") or []) if first else []


def _by_largest(kinds: list[str], per_category: Callable[[str], dict[str, float]]) -> list[str]:
    """The categories of these timelines, largest (over the timelines) first."""
    cats = {c for k in kinds for c in per_category(k)}
    # Names sorted first: equal sizes then keep one order in every process (set order does not), so a report
    # rendered twice from the same results is byte-identical.
    return sorted(sorted(cats), key=lambda c: -max(per_category(k).get(c, 0.0) for k in kinds))


def ops_model(res: Any) -> dict[str, Any]:
    doc = res.data
    kinds = _kinds(doc)
    summaries = [{"kind": k, "label": _kind_label(doc, k),
                  **{f: doc[k].get(f) for f in ("span_s", "sum_op_time_s", "busy_s")},
                  # Results saved before the clamp hold rounding residues below 0 (shown as -0.0%)
                  **{f: max(doc[k][f], 0.0) if doc[k].get(f) is not None else None
                     for f in ("overlap_ratio", "comm_overlap_ratio")},
                  "path_ops": doc[k]["critical_path"]["ops"], "path_wait_s": doc[k]["critical_path"]["wait_s"]}
                 for k in kinds]
    cats = _by_largest(kinds, lambda k: doc[k]["per_category_s"])
    mape = doc.get("mape_per_category") or {}
    categories = [{"category": c, "by_kind_s": [doc[k]["per_category_s"].get(c) for k in kinds],
                   "path_by_kind_s": [doc[k]["critical_path"]["per_category_s"].get(c) for k in kinds],
                   "mape": (mape.get(c) or {}).get("mape"), "mape_ops": (mape.get(c) or {}).get("ops")}
                  for c in cats]
    first, path_ops = _path_ops(doc)
    longest = sorted(path_ops, key=lambda o: -(o["end_s"] - o["start_s"]))[:12]
    trace = doc["trace"]
    return {"name": Path(trace.get("path") or "op trace").name, "trace": trace, "kinds": kinds,
            "kind_labels": [_kind_label(doc, k) for k in kinds], "summaries": summaries, "categories": categories,
            "identity": doc.get("identity"), "has_mape": bool(mape),
            "unclassified": (doc.get("classification") or {}).get("unclassified", [])[:10],
            "unclassified_share": (doc.get("classification") or {}).get("unclassified_share"),
            "path_kind": _path_label(doc, first) if first else None, "path_longest": longest,
            "downsampled": bool(doc.get("timelines_downsampled"))}


def _bars(xs: list, ys: list, row: str, start_ms: np.ndarray, end_ms: np.ndarray) -> None:
    for lo, hi in zip(compact(start_ms), compact(end_ms), strict=True):
        xs += [lo, hi, None]
        ys += [row, row, None]


def _gantt(doc: dict[str, Any]) -> dict[str, Any]:
    """One row per (stream, timeline), busy intervals coloured by op category (by timeline when the result has no
    category column); the critical path of the first summarised timeline on top."""
    timelines = doc["timelines"]
    kinds = [k for k in KINDS if k in timelines] + [k for k in timelines if k not in KINDS]
    streams = list(doc["trace"]["streams"])
    span = max((max(t["end_s"], default=0.0) for t in timelines.values()), default=0.0)
    gap = span / GANTT_PIXELS
    path_kind, path_ops = _path_ops(doc)
    all_cats = sorted({c for t in timelines.values() for c in t.get("category", [])}
                      | {o["category"] for o in path_ops})
    cat_colour = {c: CATEGORY_PALETTE[k % len(CATEGORY_PALETTE)] for k, c in enumerate(all_cats)}
    rows = [f"stream {text(s)} · {text(k.replace('_', ' '))}" for s in streams for k in kinds]
    traces: dict[str, dict[str, Any]] = {}

    def trace_for(key: str, name: str, color: str) -> dict[str, Any]:
        if key not in traces:
            traces[key] = {"type": "scatter", "mode": "lines", "name": name, "x": [], "y": [], "legendgroup": key,
                           "line": {"color": color, "width": 9}, "hoverinfo": "x+y+name"}
        return traces[key]

    for i, kind in enumerate(kinds):
        t = timelines[kind]
        st = np.array(t["stream"], dtype=object)
        cat = np.array(t["category"], dtype=object) if "category" in t else None
        s0, s1 = np.array(t["start_s"], float) * 1e3, np.array(t["end_s"], float) * 1e3
        for stream in streams:
            row = f"stream {text(stream)} · {text(kind.replace('_', ' '))}"
            on_stream = st == stream
            groups = [(c, on_stream & (cat == c)) for c in all_cats] if cat is not None else [(None, on_stream)]
            for c, sel in groups:
                if not sel.any():
                    continue
                tr = (trace_for(c, text(c), cat_colour[c]) if c is not None
                      else trace_for(kind, text(kind.replace("_", " ")), colour(i)))
                a, b = merge_intervals(s0[sel], s1[sel], gap * 1e3)
                _bars(tr["x"], tr["y"], row, a, b)
    if path_ops:
        row = f"critical path · {text(_path_label(doc, path_kind))}"
        rows.insert(0, row)
        for o in path_ops:
            tr = trace_for(o["category"], text(o["category"]), cat_colour[o["category"]])
            _bars(tr["x"], tr["y"], row, np.array([o["start_s"] * 1e3]), np.array([o["end_s"] * 1e3]))
    lay = layout("time (ms)", "", height=max(240, 90 + 26 * len(rows)), showlegend=True,
                 yaxis={"type": "category", "categoryorder": "array", "categoryarray": rows[::-1],
                        "automargin": True})
    return figure("gantt", "Per-stream timelines (busy intervals by op category), recorded vs predicted",
                  list(traces.values()), lay)


def _categories(doc: dict[str, Any], key: str, title: str, fig_id: str) -> dict[str, Any]:
    kinds = _kinds(doc)
    pick = (lambda k: doc[k]["per_category_s"]) if key == "ops" else (lambda k: doc[k]["critical_path"]["per_category_s"])
    cats = _by_largest(kinds, pick)
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
