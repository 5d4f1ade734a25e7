"""Validation report: published vs predicted per row, the error per row and a summary of the fit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.report.figures import colour, figure, layout
from harness.report.inputs import ValidationResults
from harness.report.series import text

_CORE = ("id", "published", "predicted", "unit", "error_pct")
_TOLERANCE = ("tolerance_pct", "ok")   # shown as one readable column, not as two raw fields


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def fit_summary(errors_pct: list[float | None]) -> dict[str, Any]:
    """Summary statistics of the signed percentage errors (rows without an error are counted, not used)."""
    e = np.array([x for x in errors_pct if x is not None and math.isfinite(x)], dtype=float)
    out: dict[str, Any] = {"rows": len(errors_pct), "rows_with_error": int(e.size)}
    if e.size == 0:
        return out
    a = np.abs(e)
    return out | {
        "mean_abs_error_pct": float(a.mean()), "median_abs_error_pct": float(np.median(a)),
        "max_abs_error_pct": float(a.max()), "rms_error_pct": float(np.sqrt((e ** 2).mean())),
        "mean_signed_error_pct": float(e.mean()),
        "within_10_pct": float((a <= 10).mean()), "within_25_pct": float((a <= 25).mean()),
    }


def _worst(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the largest finite |error|, or None."""
    scored = [r for r in rows if r.get("error_pct") is not None and math.isfinite(r["error_pct"])]
    return max(scored, key=lambda r: abs(r["error_pct"]), default=None)


def table_of(row_id: str) -> str:
    """The table a row belongs to: its id's first two parts (`moe.cm384-ub.dispatch.ep8` -> `moe.cm384-ub`)."""
    return ".".join(str(row_id).split(".")[:2])


def by_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per table, in the rows' order: its rows, the kinds of check they are (in-sample, held out,
    end to end), the fit of their errors, the worst row, and how many are within their recorded tolerance (where
    rows carry one)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(table_of(r["id"]), []).append(r)
    out = []
    for name, sel in groups.items():
        worst = _worst(sel)
        judged = [r for r in sel if isinstance(r.get("ok"), bool)]
        kinds = dict.fromkeys(str(r["kind"]) for r in sel if r.get("kind"))
        out.append({"table": name, "kind": ", ".join(kinds), **fit_summary([r.get("error_pct") for r in sel]),
                    "worst_id": worst["id"] if worst else None,
                    "within_tolerance": sum(r["ok"] for r in judged) if judged else None})
    return out


def validation_model(res: ValidationResults) -> dict[str, Any]:
    extra = [k for k in dict.fromkeys(k for r in res.rows for k in r) if k not in _CORE + _TOLERANCE
             and all(_scalar(r.get(k)) for r in res.rows)]
    worst = _worst(res.rows)
    tolerance = any(isinstance(r.get("tolerance_pct"), int | float) and not isinstance(r.get("tolerance_pct"), bool)
                    and isinstance(r.get("ok"), bool) for r in res.rows)
    return {"rows": res.rows, "extra_columns": extra, "tolerance_column": tolerance,
            "summary": fit_summary([r.get("error_pct") for r in res.rows]), "tables": by_table(res.rows),
            "worst_id": worst["id"] if worst else None}


def validation_figures(res: ValidationResults) -> dict[str, list[dict[str, Any]]]:
    rows = [r for r in res.rows if r.get("error_pct") is not None]
    ids = [text(r["id"]) for r in rows]
    bars = {"type": "bar", "orientation": "h", "y": ids, "x": [r["error_pct"] for r in rows], "name": "error",
            "marker": {"color": ["#b3261e" if abs(r["error_pct"]) > 25 else "#e08a12" if abs(r["error_pct"]) > 10
                                 else "#2a9d4b" for r in rows]},
            "hovertemplate": "%{y}: %{x:+.1f}%<extra></extra>"}
    band = [{"type": "rect", "xref": "x", "yref": "paper", "x0": -10, "x1": 10, "y0": 0, "y1": 1,
             "fillcolor": "#2a9d4b", "opacity": 0.08, "line": {"width": 0}}]
    err = figure("errors", "Error per row: (predicted − published) / published", [bars], layout("error (%)", "",
                                          height=max(260, 80 + 24 * len(rows)), shapes=band, showlegend=False,
                                          yaxis={"autorange": "reversed", "automargin": True, "type": "category"}))
    units = list(dict.fromkeys(str(r.get("unit", "")) for r in res.rows))
    parity_data = []
    pos = [r for r in res.rows if isinstance(r.get("published"), int | float) and isinstance(r.get("predicted"), int | float)
           and r["published"] > 0 and r["predicted"] > 0]
    for i, unit in enumerate(units):
        sel = [r for r in pos if str(r.get("unit", "")) == unit]
        if sel:
            parity_data.append({"type": "scatter", "mode": "markers", "name": text(unit),
                                "x": [r["published"] for r in sel], "y": [r["predicted"] for r in sel],
                                "text": [text(r["id"]) for r in sel], "marker": {"color": colour(i), "size": 8},
                                "hovertemplate": "%{text}<br>published %{x:.4g}<br>predicted %{y:.4g}<extra></extra>"})
    if pos:
        lo = min(min(r["published"], r["predicted"]) for r in pos) / 1.5
        hi = max(max(r["published"], r["predicted"]) for r in pos) * 1.5
        parity_data.append({"type": "scatter", "mode": "lines", "name": "predicted = published", "x": [lo, hi],
                            "y": [lo, hi], "line": {"color": "#888", "dash": "dot", "width": 1}, "hoverinfo": "skip"})
    parity = figure("parity", "Predicted vs published (log–log, by unit)", parity_data, layout("published",
                                                  "predicted", xaxis={"type": "log"}, yaxis={"type": "log"}))
    return {"validation": [parity, err]}
