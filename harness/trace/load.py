"""`load_trace`: any supported file -> a validated, sorted Workload whose first request arrives at 0.0 s.

Order policy: rows are sorted by arrival time with a stable sort, so requests that share a timestamp keep their
file order (this is the tie-break for quantised traces such as Mooncake's, whose arrivals are rounded to ~3 s:
equal stamps stay equal and are served in file order; nothing is jittered). A file whose timestamps decrease is
sorted the same way and a note counts the rows that were out of order; with strict=True it is rejected instead,
naming the first such line. After sorting, every arrival is shifted so that the first request arrives at 0.0 s.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from harness.errors import InputError
from harness.trace import checks, formats
from harness.trace.bundled import resolve_trace_path
from harness.trace.shape import span_problem
from harness.trace.source import open_source
from harness.trace.workload import Workload, canonical


def load_trace(path: str | Path, fmt: str | None = None, *, strict: bool = False) -> Workload:
    """Load, validate and normalise a trace; raise InputError naming file, line and field on any bad input."""
    if fmt is not None and fmt not in formats.FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(formats.FORMATS)}", field="--format")
    resolved = resolve_trace_path(path)
    src = open_source(resolved)
    columns = formats.header_columns(src)
    chosen = fmt is not None
    fmt = fmt or formats.detect(src, columns)
    raw = formats.read(src, fmt, columns, chosen=chosen)
    frame, block_size = checks.validated(raw)
    if fmt == "native":
        checks.schema_check_head(raw, frame, block_size)
    notes = list(raw.notes)

    arrival = frame.get_column("arrival_s")
    earlier = arrival < arrival.cum_max().shift(1)
    n_earlier = int(earlier.sum())
    if n_earlier:
        first = int(earlier.arg_true()[0])
        if strict:
            raise raw.error(first, "arrival_s", f"arrives before an earlier row ({n_earlier:,} rows out of order; "
                            "without --strict they are sorted)")
        notes.append(f"sorted {n_earlier:,} rows whose timestamps go backwards (first at {raw.where(first)})")
        frame = frame.sort("arrival_s", maintain_order=True)
    frame = frame.with_columns(pl.col("arrival_s") - pl.col("arrival_s").first())
    problem = span_problem(frame)
    if problem is not None:
        raise InputError(f"{problem}; arrival times are in seconds", path=str(resolved), field="arrival_s")
    name = resolved.name.split(".")[0]
    return Workload(requests=canonical(frame), name=name, block_size=block_size, source_format=fmt,
                    source_path=str(resolved), notes=tuple(notes))
