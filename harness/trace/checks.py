"""Vectorised validation of a Raw trace, derived from the native record JSON Schema.

Validating a million records one by one with jsonschema takes minutes, so the schema's types, minimums, maximums and
required fields are turned into polars expressions here, and the first failing row is reported by its line. The
loader additionally runs jsonschema itself on the first rows of a native trace (see `schema_check_head`), so the
schema file stays the single source of truth for the record format.
"""

from __future__ import annotations

import functools
import json

import jsonschema
import polars as pl

from harness.paths import traces_dir
from harness.trace.raw import Raw

HEAD_ROWS_CHECKED_BY_JSONSCHEMA = 1000


@functools.cache
def record_schema() -> dict:
    return json.loads((traces_dir() / "schema" / "native-trace.schema.json").read_text(encoding="utf-8"))


def max_context_tokens() -> int:
    return int(record_schema()["x-max-context-tokens"])


def _first(mask: pl.Series) -> int | None:
    hits = mask.arg_true()
    return int(hits[0]) if hits.len() else None


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def typed_column(raw: Raw, name: str, kind: str) -> pl.Series:
    """Column `name` as Int64 ("integer") or Float64 ("number"); the first value that is not one is an error."""
    col = raw.frame.get_column(name)
    target = pl.Int64 if kind == "integer" else pl.Float64
    if col.dtype == pl.String:
        text = col.str.strip_chars()
        typed = text.cast(target, strict=False)
        bad = _first(typed.is_null() & text.is_not_null())
        if bad is not None:
            noun = "an integer" if kind == "integer" else "a number"
            raise raw.error(bad, name, f"not {noun}: {_shown(col[bad])}")
        col = typed
    elif col.dtype.is_float() and kind == "integer":
        bad = _first(col.is_not_null() & (col.is_nan() | col.is_infinite() | (col != col.floor())))
        if bad is not None:
            raise raw.error(bad, name, f"not an integer: {col[bad]}")
        col = _cast_in_range(raw, name, col, target)
    elif col.dtype.is_numeric() or col.dtype == pl.Null:
        col = _cast_in_range(raw, name, col, target)
    else:
        raise raw.error(None, name, f"has type {col.dtype}, expected {kind}")
    if kind == "number":
        bad = _first(col.is_nan() | col.is_infinite())
        if bad is not None:
            raise raw.error(bad, name, f"not a finite number: {col[bad]}")
    return col


def _cast_in_range(raw: Raw, name: str, col: pl.Series, target: pl.DataType) -> pl.Series:
    """A numeric column as `target`; a value beyond its range (an integer over 2**63) is an error at its row."""
    typed = col.cast(target, strict=False)
    bad = _first(typed.is_null() & col.is_not_null())
    if bad is not None:
        raise raw.error(bad, name, f"too large: {col[bad]}")
    return typed


def _bounded(raw: Raw, name: str, col: pl.Series, rule: dict, *, required: bool) -> None:
    if required:
        bad = _first(col.is_null())
        if bad is not None:
            raise raw.error(bad, name, "missing value")
    if "minimum" in rule:
        bad = _first(col < rule["minimum"])
        if bad is not None:
            what = "zero" if col[bad] == 0 else f"negative ({col[bad]})" if col[bad] < 0 else str(col[bad])
            raise raw.error(bad, name, f"{what} is below the minimum {rule['minimum']}")
    if "maximum" in rule:
        bad = _first(col > rule["maximum"])
        if bad is not None:
            raise raw.error(bad, name, f"{col[bad]} exceeds {rule['maximum']:,} (larger than any model's context)")


def _prefix_blocks(raw: Raw) -> pl.Series | None:
    if "prefix_blocks" not in raw.frame.columns:
        return None
    col = raw.frame.get_column("prefix_blocks")
    if col.dtype == pl.String:  # CSV: space-separated ids
        parts = col.str.strip_chars().str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        typed = parts.list.eval(pl.element().cast(pl.Int64, strict=False))
        bad = _first(typed.list.eval(pl.element().is_null()).list.any() & col.is_not_null())
        if bad is not None:
            raise raw.error(bad, "prefix_blocks", f"not a list of space-separated integers: {col[bad]!r}")
        col = typed
    elif col.dtype == pl.Null:
        return None
    elif not isinstance(col.dtype, pl.List) or not (col.dtype.inner.is_integer() or col.dtype.inner == pl.Null):
        raise raw.error(None, "prefix_blocks", f"has type {col.dtype}, expected a list of integers")
    missing = col.list.eval(pl.element().is_null()).list.sum()
    typed = col.cast(pl.List(pl.Int64), strict=False)   # (Parquet / JSON) ids beyond int64 become null
    bad = _first((typed.list.eval(pl.element().is_null()).list.sum() > missing).fill_null(False))
    if bad is not None:
        raise raw.error(bad, "prefix_blocks", f"a block id beyond {2**63 - 1:,}: {col[bad].to_list()}")
    col = typed
    # a missing id inside the list (past the rows jsonschema checks) would be counted as a block of no content
    bad = _first(col.list.eval(pl.element().is_null() | (pl.element() < 0)).list.any().fill_null(False))
    if bad is not None:
        raise raw.error(bad, "prefix_blocks", "block ids must be non-negative integers")
    # An empty list and a missing value mean the same (no blocks), and CSV cannot tell them apart: keep null.
    return pl.select(pl.when(col.list.len() > 0).then(col)).to_series().alias("prefix_blocks")


def _block_size(raw: Raw, blocks: pl.Series | None) -> int | None:
    if raw.block_size is not None or blocks is None or blocks.null_count() == len(blocks):
        return raw.block_size  # fixed by the format (Mooncake: 512), or no blocks to size
    if "block_size" not in raw.frame.columns:
        raise raw.error(None, "block_size", "required when prefix_blocks is given")
    sizes = typed_column(raw, "block_size", "integer")
    _bounded(raw, "block_size", sizes, record_schema()["properties"]["block_size"], required=False)
    present = sizes.drop_nulls()
    if present.len() == 0:
        raise raw.error(None, "block_size", "required when prefix_blocks is given")
    bad = _first(sizes.is_not_null() & (sizes != present[0]))
    if bad is not None:
        raise raw.error(bad, "block_size", f"{sizes[bad]} differs from the first row's {present[0]}; one size per trace")
    return int(present[0])


def validated(raw: Raw) -> tuple[pl.DataFrame, int | None]:
    """Typed, checked columns (canonical names, file order) and the trace's block size."""
    schema = record_schema()
    props = schema["properties"]
    if raw.frame.height == 0:
        raise raw.error(None, None, "no requests in the file (only a header?)")
    out: dict[str, pl.Series] = {}
    for name in ("arrival_s", "input_tokens", "output_tokens"):
        rule = props[name]
        col = typed_column(raw, name, rule["type"])
        _bounded(raw, name, col, rule, required=name in schema["required"])
        out[name] = col.alias(name)
    total = out["input_tokens"] + out["output_tokens"]
    bad = _first(total > max_context_tokens())
    if bad is not None:
        raise raw.error(bad, "input_tokens", f"input plus output tokens ({total[bad]:,}) exceed "
                        f"{max_context_tokens():,}, larger than any model's context")
    for name in ("request_id", "session_id", "tenant", "model"):
        if name in raw.frame.columns:
            col = raw.frame.get_column(name)
            if col.dtype.is_nested():   # (Parquet) a list or struct is no label
                raise raw.error(None, name, f"has type {col.dtype}, expected string")
            try:
                out[name] = col.cast(pl.String)
            except pl.exceptions.PolarsError:   # bytes that are not UTF-8, a duration
                raise raw.error(None, name, f"has type {col.dtype} and cannot be read as text") from None
    if "request_id" in out and out["request_id"].null_count() < raw.frame.height:
        ids = out["request_id"]
        bad = _first(ids.is_null() | (ids == ""))
        if bad is not None:
            raise raw.error(bad, "request_id", "missing value (give every row an id, or none)")
        bad = _first(~ids.is_first_distinct())
        if bad is not None:
            raise raw.error(bad, "request_id", f"duplicate id {ids[bad]!r}")
    blocks = _prefix_blocks(raw)
    block_size = _block_size(raw, blocks)
    if blocks is not None:
        limit = (out["input_tokens"] + block_size - 1) // block_size
        bad = _first((blocks.list.len() > limit).fill_null(False))
        if bad is not None:
            raise raw.error(bad, "prefix_blocks", f"{blocks[bad].len()} blocks of {block_size} tokens exceed the "
                            f"{out['input_tokens'][bad]}-token prompt")
        out["prefix_blocks"] = blocks
    return pl.DataFrame(out), block_size


def schema_check_head(raw: Raw, frame: pl.DataFrame, block_size: int | None) -> None:
    """Run jsonschema on the first records, exactly as the schema file states them."""
    validator = jsonschema.Draft202012Validator(record_schema())
    head = frame.head(HEAD_ROWS_CHECKED_BY_JSONSCHEMA)
    for row, record in enumerate(head.iter_rows(named=True)):
        record = {k: v for k, v in record.items() if v is not None}
        if "prefix_blocks" in record:
            record["block_size"] = block_size
        error = next(iter(validator.iter_errors(record)), None)
        if error is not None:
            column = str(error.path[0]) if error.path else None
            raise raw.error(row, column, error.message)
