"""Reading Vidur's H100 operator profiles (microsoft/vidur, MIT; see NOTICE), shared by the extraction scripts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl


def profile_points(root: Path, model: str, tokens: tuple[int, ...], tp: tuple[int, ...]) -> Iterator[dict[str, Any]]:
    """The rows of compute/h100/<model>/mlp.csv at these token counts and TP degrees, by TP then tokens. The CSVs
    hold two profiling passes per (tokens, TP) point; the first is kept."""
    d = pl.read_csv(root / "compute" / "h100" / model / "mlp.csv")
    d = d.filter(pl.col("num_tokens").is_in(tokens) & pl.col("num_tensor_parallel_workers").is_in(tp))
    d = d.unique(["num_tokens", "num_tensor_parallel_workers"], keep="first", maintain_order=True).sort(
        ["num_tensor_parallel_workers", "num_tokens"])
    return d.iter_rows(named=True)
