"""A trace as read from its file, before validation: canonical column names, source field names for messages."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from harness.errors import InputError


@dataclass
class Raw:
    """Columns renamed to the canonical names but not yet typed or checked."""

    frame: pl.DataFrame
    path: Path
    fmt: str
    fields: dict[str, str]               # canonical column -> the field name the user sees in their file
    where: Callable[[int], str]           # 0-based row -> "line N" / "row N" in the user's file
    block_size: int | None = None
    notes: list[str] = field(default_factory=list)

    def error(self, row: int | None, column: str | None, message: str) -> InputError:
        name = self.fields.get(column, column) if column else None
        return InputError(message, path=str(self.path), where=None if row is None else self.where(row), field=name)


def require_columns(columns: Iterable[str], required: Iterable[str], *, path: Path, fmt: str,
                    allowed: Iterable[str] | None = None, where: str | None = None) -> None:
    """Fail on the first missing column (suggesting a near-miss spelling), or on an unknown one when `allowed` is set."""
    present = list(columns)
    required = list(required)
    known = set(required) | set(allowed or ())
    unknown = [c for c in present if c not in known]
    for name in required:
        if name not in present:
            near = difflib.get_close_matches(name, unknown, n=1, cutoff=0.6)
            hint = f" (found '{near[0]}': misspelt?)" if near else f" (columns found: {', '.join(present) or 'none'})"
            raise InputError(f"missing required {fmt} column{hint}", path=str(path), where=where, field=name)
    if allowed is not None and unknown:
        near = difflib.get_close_matches(unknown[0], sorted(known - set(present)), n=1, cutoff=0.6)
        hint = f"; did you mean '{near[0]}'?" if near else f"; allowed: {', '.join(sorted(known))}"
        raise InputError(f"unknown {fmt} column{hint}", path=str(path), where=where, field=unknown[0])
