"""`save_trace`: a Workload -> a native trace file (CSV / JSON Lines / Parquet by extension, optionally .gz), atomically."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import polars as pl

from harness.errors import InputError
from harness.outputs import atomic_path
from harness.trace.workload import Workload

NATIVE_SUFFIXES = (".csv", ".jsonl", ".parquet")


def native_container(path: str | Path) -> tuple[str, bool]:
    """("csv" | "jsonl" | "parquet", gzip?) from a file name such as trace.jsonl.gz; InputError otherwise."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in NATIVE_SUFFIXES + (".ndjson",):
        raise InputError(f"cannot tell the output format from the extension; use one of "
                         f"{', '.join(NATIVE_SUFFIXES)} (optionally + .gz)", path=str(path))
    return ("jsonl" if suffixes[-1] == ".ndjson" else suffixes[-1][1:]), compressed


def native_frame(workload: Workload, container: str) -> pl.DataFrame:
    """The columns a native file holds: required ones always, optional ones only where some row has a value."""
    frame = workload.requests
    keep = [c for c in frame.columns if c in ("request_id", "arrival_s", "input_tokens", "output_tokens")
            or frame.get_column(c).null_count() < frame.height]
    frame = frame.select(keep)
    if "prefix_blocks" in keep:
        frame = frame.with_columns(pl.lit(workload.block_size, dtype=pl.Int64).alias("block_size"))
        if container == "csv":  # CSV has no list type: space-separated ids, as the schema documents
            frame = frame.with_columns(pl.col("prefix_blocks").cast(pl.List(pl.String)).list.join(" "))
    return frame


def save_trace(workload: Workload, path: str | Path) -> Path:
    """Write `workload` as a native trace; nothing is left at `path` if writing fails."""
    path = Path(path)
    container, compressed = native_container(path)
    frame = native_frame(workload, container)
    buffer = io.BytesIO()
    if container == "csv":
        frame.write_csv(buffer)
    elif container == "jsonl":
        frame.write_ndjson(buffer)
    else:
        frame.write_parquet(buffer)
    data = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(data, mtime=0) if compressed else data)
    return path
