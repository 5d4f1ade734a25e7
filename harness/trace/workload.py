"""The one in-memory workload representation: a columnar table of requests (no Python object per request)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

# Canonical columns, always present in this order; optional ones are null where a format lacks them.
SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "arrival_s": pl.Float64(),       # seconds from the start of the trace, sorted ascending
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "session_id": pl.String(),
    "prefix_blocks": pl.List(pl.Int64()),  # content ids of the prompt's KV blocks, `block_size` tokens each
    "tenant": pl.String(),
    "model": pl.String(),
}


@dataclass(frozen=True)
class Workload:
    """A request trace after loading, validation and shaping. `requests` follows SCHEMA exactly."""

    requests: pl.DataFrame
    name: str
    block_size: int | None = None          # tokens per prefix block, when prefix_blocks is set
    source_format: str = "native"
    source_path: str | None = None
    notes: tuple[str, ...] = field(default=())  # warnings raised while loading (e.g. re-sorted rows)

    def __len__(self) -> int:
        return self.requests.height

    @property
    def has_prefix_blocks(self) -> bool:
        return self.requests.get_column("prefix_blocks").null_count() < self.requests.height


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Add missing optional columns as nulls, cast to SCHEMA and order the columns; ids default to the row index."""
    if "request_id" not in frame.columns or frame.get_column("request_id").null_count() == frame.height:
        frame = frame.with_columns(pl.int_range(0, frame.height, dtype=pl.Int64).cast(pl.String).alias("request_id"))
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in SCHEMA.items() if name not in frame.columns]
    if missing:
        frame = frame.with_columns(missing)
    return frame.select([pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])
