"""Shared look of every plot: palette, fonts, margins. Figures are plain plotly.js dicts (data + layout)."""

from __future__ import annotations

from typing import Any

PALETTE = ("#c0392b", "#1f6fb4", "#2a9d4b", "#8e5bbf", "#e08a12", "#6b4f3a", "#d4559b", "#5f6b73")
CATEGORY_PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6",
                    "#9d755d", "#bab0ac")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def layout(x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    """The shared layout; the plot's title is an HTML heading above it (a plotly title would collide with a
    legend that wraps to two rows)."""
    base: dict[str, Any] = {
        "xaxis": {"title": {"text": x_title}, "gridcolor": "#e6e6e6", "zeroline": False},
        "yaxis": {"title": {"text": y_title}, "gridcolor": "#e6e6e6", "zeroline": False},
        "height": 320, "margin": {"l": 64, "r": 16, "t": 24, "b": 52},
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "xanchor": "left",
                   "font": {"size": 11}},
        "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12, "color": "#222"},
        "hovermode": "closest",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def figure(fig_id: str, title: str, data: list[dict[str, Any]], lay: dict[str, Any]) -> dict[str, Any]:
    """A plot: `title` is plain text (the template escapes it), `data`/`layout` go to Plotly.newPlot."""
    return {"id": fig_id, "title": title, "data": data, "layout": lay}
