"""Shrink per-request and per-bucket series to what a plot needs, so a report stays small at any trace size."""

from __future__ import annotations

import html
import math

import numpy as np
import polars as pl

CDF_POINTS = 1000       # per backend and metric; quantiles at even steps reproduce the curve to the pixel
SCATTER_POINTS = 2000   # per backend; every k-th request in arrival order, so the sample is deterministic
SERIES_POINTS = 600     # time buckets per series; more are averaged in groups


def text(value: object) -> str:
    """An outside string (trace, label, op name) made safe for plotly, which reads a few HTML tags in its text."""
    return html.escape(str(value), quote=True)


def compact(values: np.ndarray | list[float]) -> list[float | None]:
    """Floats rounded to 6 significant digits (JSON size), NaN and infinities as null."""
    out: list[float | None] = []
    for v in np.asarray(values, dtype=float).tolist():
        out.append(float(f"{v:.6g}") if math.isfinite(v) else None)
    return out


def cdf_points(values: np.ndarray, max_points: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, F(x)) of the empirical CDF of the finite values; at most `max_points` points, always min and max."""
    v = np.sort(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return v, v
    if n <= max_points:
        return v, np.arange(1, n + 1) / n
    probs = np.linspace(0.0, 1.0, max_points)
    return np.quantile(v, probs), probs


def sample_indices(n: int, max_points: int = SCATTER_POINTS) -> np.ndarray:
    """Evenly spaced row indices, all of them when n <= max_points."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def bucket_mean(frame: pl.DataFrame, max_rows: int = SERIES_POINTS) -> pl.DataFrame:
    """Average consecutive rows in groups so at most `max_rows` remain (a no-op for short series)."""
    if frame.height <= max_rows:
        return frame
    size = math.ceil(frame.height / max_rows)
    return (frame.with_row_index("_row").with_columns((pl.col("_row") // size).alias("_group"))
            .group_by("_group", maintain_order=True).agg(pl.exclude("_row", "_group").mean()).drop("_group"))
