"""The trace formats: how each is recognised from its columns and mapped onto the canonical column names.

native   CSV / JSON Lines / Parquet, columns as in traces/schema/native-trace.schema.json
azure    Azure LLM inference trace 2023 and 2024: TIMESTAMP (wall clock), ContextTokens, GeneratedTokens
mooncake Mooncake / Kimi JSON Lines: timestamp (ms), input_length, output_length, hash_ids (512-token blocks)
burstgpt BurstGPT CSV: Timestamp (s), Model, Request tokens, Response tokens, Total tokens, Log Type
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

import jsonschema
import polars as pl

from harness.errors import InputError
from harness.trace.checks import record_schema, typed_column
from harness.trace.raw import Raw, require_columns
from harness.trace.source import Source

# Required columns per format, used both to recognise a file and to name what is missing from it.
REQUIRED: dict[str, tuple[str, ...]] = {
    "native": ("arrival_s", "input_tokens", "output_tokens"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "mooncake": ("timestamp", "input_length", "output_length", "hash_ids"),
    "burstgpt": ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"),
}
CONTAINERS = {"native": ("csv", "jsonl", "parquet"), "azure": ("csv",), "mooncake": ("jsonl",),
              "burstgpt": ("csv",)}
FORMATS = tuple(REQUIRED)
MOONCAKE_BLOCK_TOKENS = 512  # FAST25-release/README.md: each hash id stands for a 512-token block

# JSON record schemas for the non-native JSON format, used on the error path to find the exact bad line.
_MOONCAKE_RECORD = {
    "type": "object", "required": list(REQUIRED["mooncake"]),
    "properties": {"timestamp": {"type": "number"}, "input_length": {"type": "integer"},
                   "output_length": {"type": "integer"},
                   "hash_ids": {"type": "array", "items": {"type": "integer"}}},
}


def header_columns(src: Source) -> list[str]:
    """Column names of a CSV header, the keys of the first JSON record, or the Parquet schema."""
    if src.container == "parquet":
        return list(_parquet(src, lambda: pl.read_parquet_schema(src.reader())))
    for number, line in enumerate(_head_lines(src), start=1):
        if not line.strip():
            continue
        if src.container == "csv":
            columns = next(csv.reader([line.lstrip("\ufeff")]))
            twice = next((c for i, c in enumerate(columns) if c in columns[:i]), None)
            if twice is not None:   # the reader kept the first silently
                raise InputError("column given twice in the header" + ("" if twice else " (empty names: trailing "
                                 "commas?)"), path=str(src.path), where=f"line {number}", field=twice or None)
            return columns
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg}; truncated line?)", path=str(src.path),
                             where=f"line {number}") from None
        if not isinstance(record, dict):
            raise InputError("expected a JSON object per line", path=str(src.path), where=f"line {number}")
        return list(record)
    raise InputError("empty file: no header and no requests", path=str(src.path))


def detect(src: Source, columns: list[str]) -> str:
    """The format whose required columns best match `columns`: exact names count fully, case-insensitive ones half
    (so a misspelt file is still recognised and its missing column named); ties go to the order of FORMATS."""
    exact = set(columns)
    lowered = {c.strip().lower() for c in columns}

    def score(fmt: str) -> float:
        return sum(1.0 if c in exact else 0.5 if c.lower() in lowered else 0.0
                   for c in REQUIRED[fmt]) / len(REQUIRED[fmt])

    best = max(FORMATS, key=score)
    if score(best) == 0:
        candidates = [f for f in FORMATS if src.container in CONTAINERS[f]]
        expected = "; ".join(f"{f}: {', '.join(REQUIRED[f])}" for f in candidates)
        # binary or NUL-filled input gives one "column" of up to 64 KB: show a printable stub of each
        shown = ", ".join("".join(ch if ch.isprintable() else "?" for ch in c[:40]) + ("..." if len(c) > 40 else "")
                          for c in columns[:8]) or "none"
        raise InputError(f"unknown trace format: columns [{shown}] match none of ({expected}); "
                         f"pass --format to choose one", path=str(src.path),
                         where="line 1" if src.container != "parquet" else None)
    return best


def read(src: Source, fmt: str, columns: list[str], *, chosen: bool = False) -> Raw:
    """The file as format `fmt` (`chosen`: the user named it with --format; otherwise it was detected)."""
    if src.container not in CONTAINERS[fmt]:
        kinds = " or ".join(CONTAINERS[fmt])
        why = (f"--format {fmt} reads {kinds} files" if chosen else
               f"the columns are those of {'an' if fmt[0] in 'aeiou' else 'a'} {fmt} trace, which is {kinds}")
        raise InputError(f"{why}, but this file is {src.container}", path=str(src.path))
    return _READERS[fmt](src, columns)


# --- readers -----------------------------------------------------------------------------------------------------

def _native(src: Source, columns: list[str]) -> Raw:
    allowed = list(record_schema()["properties"])
    require_columns(columns, REQUIRED["native"], path=src.path, fmt="native", allowed=allowed,
                    where=None if src.container == "parquet" else "line 1")
    if src.container == "parquet":
        frame = _nonempty(src, _parquet(src, lambda: pl.read_parquet(src.reader())))
        where = _row_where
    elif src.container == "csv":
        frame = _read_csv(src)
        where = _csv_where
    else:
        frame = _read_jsonl(src, record_schema())
        where = _jsonl_where(src)
    return Raw(frame=frame, path=src.path, fmt="native", fields={c: c for c in frame.columns}, where=where)


def _azure(src: Source, columns: list[str]) -> Raw:
    require_columns(columns, REQUIRED["azure"], path=src.path, fmt="azure", where="line 1")
    frame = _read_csv(src)
    raw = Raw(frame=frame, path=src.path, fmt="azure", where=_csv_where,
              fields={"arrival_s": "TIMESTAMP", "input_tokens": "ContextTokens", "output_tokens": "GeneratedTokens"})
    # 2023: "2023-11-16 18:17:03.9799600"; 2024 adds a UTC offset ("...+00:00"), which is dropped (all UTC).
    text = frame.get_column("TIMESTAMP").str.strip_chars()
    stamp = text.str.replace(r"(Z|[+-]\d\d:?\d\d)$", "").str.strptime(
        pl.Datetime("ns"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
    bad = stamp.is_null().arg_true()
    if bad.len():
        raise raw.error(int(bad[0]), "arrival_s", f"not a timestamp 'YYYY-MM-DD HH:MM:SS.fffffff': {text[int(bad[0])]!r}")
    # Nanoseconds from the first row, so sub-microsecond stamps survive the float conversion.
    arrival = (stamp - stamp[0]).dt.total_nanoseconds() / 1e9
    raw.frame = pl.DataFrame({"arrival_s": arrival - arrival.min(), "input_tokens": frame["ContextTokens"],
                              "output_tokens": frame["GeneratedTokens"]})
    return raw


def _mooncake(src: Source, columns: list[str]) -> Raw:
    require_columns(columns, REQUIRED["mooncake"], path=src.path, fmt="mooncake", where="line 1")
    frame = _read_jsonl(src, _MOONCAKE_RECORD)
    raw = Raw(frame=frame, path=src.path, fmt="mooncake", where=_jsonl_where(src), block_size=MOONCAKE_BLOCK_TOKENS,
              fields={"arrival_s": "timestamp", "input_tokens": "input_length", "output_tokens": "output_length",
                      "prefix_blocks": "hash_ids"})
    raw.frame = frame.select(pl.col("timestamp").alias("arrival_s"), pl.col("input_length").alias("input_tokens"),
                             pl.col("output_length").alias("output_tokens"), pl.col("hash_ids").alias("prefix_blocks"))
    milliseconds = typed_column(raw, "arrival_s", "number")
    raw.frame = raw.frame.with_columns((milliseconds / 1000.0).alias("arrival_s"))
    return raw


def _burstgpt(src: Source, columns: list[str]) -> Raw:
    require_columns(columns, REQUIRED["burstgpt"], path=src.path, fmt="burstgpt", where="line 1")
    frame = _read_csv(src)
    raw = Raw(frame=frame, path=src.path, fmt="burstgpt", where=_csv_where,
              fields={"arrival_s": "Timestamp", "input_tokens": "Request tokens", "output_tokens": "Response tokens",
                      "model": "Model", "tenant": "Log Type", "total": "Total tokens"})
    frame = frame.rename({"Timestamp": "arrival_s", "Request tokens": "input_tokens",
                          "Response tokens": "output_tokens", "Model": "model", "Log Type": "tenant",
                          "Total tokens": "total"})
    # Typed here because the failed-request rule and the total check need numbers; messages still name the file's
    # fields and lines, since rows are only dropped after every check passed.
    raw.frame = frame
    ints = {name: typed_column(raw, name, "integer") for name in ("input_tokens", "output_tokens", "total")}
    mismatch = (ints["total"] != ints["input_tokens"] + ints["output_tokens"]).fill_null(False).arg_true()
    if mismatch.len():
        row = int(mismatch[0])
        raise raw.error(row, "total", f"{ints['total'][row]} is not Request tokens + Response tokens "
                        f"({ints['input_tokens'][row]} + {ints['output_tokens'][row]})")
    # BurstGPT logs failed requests with 0 response tokens: they never produced a token, so they are not replayed.
    failed = (ints["output_tokens"] == 0).fill_null(False)
    raw.frame = frame.with_columns(ints["input_tokens"], ints["output_tokens"]).drop("total")
    if failed.any():
        keep = (~failed).arg_true()
        raw.notes.append(f"dropped {int(failed.sum()):,} failed requests (0 response tokens)")
        raw.frame = raw.frame[keep]
        raw.where = lambda row, kept=keep: _csv_where(int(kept[row]))
    return raw


_READERS: dict[str, Callable[[Source, list[str]], Raw]] = {
    "native": _native, "azure": _azure, "mooncake": _mooncake, "burstgpt": _burstgpt}


# --- container reading with exact error locations ---------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _parquet(src: Source, read_fn: Callable[[], object]):
    """Run a Parquet read; a corrupt file can make polars' Rust code panic, which is bad input like any other."""
    with _native_stderr_captured() as captured:
        try:
            return read_fn()
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, ValueError) as exc:
            captured.discard = True
            raise InputError(f"not a readable Parquet file ({_first_line(exc)})", path=str(src.path)) from None


class _Captured:
    discard = False


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[_Captured]:
    """Hold back what native code writes to fd 2 (a Rust panic message and backtrace), so bad input is reported as
    one line; whatever was written is passed on unless the read failed."""
    captured = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not captured.discard:
                sink.seek(0)
                text = sink.read()
                if text:
                    os.write(2, text)


def _read_csv(src: Source) -> pl.DataFrame:
    """Every column as text (then cast with a per-row check), so a bad value is reported, not guessed around."""
    try:
        return _nonempty(src, pl.read_csv(src.reader(), infer_schema=False))
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        lines = src.text_lines()
        rows = csv.reader(lines)
        width = len(next(rows, []))
        for number, row in enumerate(rows, start=2):
            if row and len(row) != width:
                raise InputError(f"expected {width} comma-separated fields, found {len(row)}", path=str(src.path),
                                 where=f"line {number}") from None
        raise InputError(f"cannot read as CSV ({_first_line(exc)})", path=str(src.path)) from None


def _read_jsonl(src: Source, schema: dict) -> pl.DataFrame:
    try:
        frame = pl.read_ndjson(src.reader(), infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        _raise_first_bad_json_line(src, schema)
        raise InputError(f"cannot read as JSON Lines ({_first_line(exc)})", path=str(src.path)) from None
    if not _json_types_ok(frame, schema):
        _raise_first_bad_json_line(src, schema)  # a value of the wrong type somewhere: name its line
    return _nonempty(src, frame)


def _json_types_ok(frame: pl.DataFrame, schema: dict) -> bool:
    """Did polars infer the JSON types the schema asks for? (Mixed types make it fall back to strings.)"""
    for name, rule in schema["properties"].items():
        if name not in frame.columns:
            continue
        dtype = frame.schema[name]
        kinds = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        if dtype == pl.Null:
            continue
        if "array" in kinds:
            ok = isinstance(dtype, pl.List) and (dtype.inner.is_integer() or dtype.inner == pl.Null)
        elif "integer" in kinds or "number" in kinds:
            ok = dtype.is_numeric()
        else:
            ok = dtype == pl.String
        if not ok:
            return False
    return True


def _nonempty(src: Source, frame: pl.DataFrame) -> pl.DataFrame:
    if frame.height == 0:
        raise InputError("no requests in the file (only a header?)", path=str(src.path))
    return frame


def _raise_first_bad_json_line(src: Source, schema: dict) -> None:
    """Error path only: parse line by line to name the first line that is not a valid record."""
    validator = jsonschema.Draft202012Validator(schema)
    for number, line in enumerate(src.text_lines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=lambda name: _raise_constant(name))
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg}; truncated line?)", path=str(src.path),
                             where=f"line {number}") from None
        except ValueError as exc:
            raise InputError(str(exc), path=str(src.path), where=f"line {number}") from None
        error = next(iter(validator.iter_errors(record)), None)
        if error is not None:
            field = str(error.path[0]) if error.path else None
            raise InputError(error.message, path=str(src.path), where=f"line {number}", field=field)


def _raise_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _head_lines(src: Source, n: int = 64) -> list[str]:
    if isinstance(src.data, bytes):
        head = src.data[:65536]
    else:
        with open(src.data, "rb") as fh:
            head = fh.read(65536)
    return head.decode("utf-8", errors="replace").splitlines()[:n]


def _row_where(row: int) -> str:
    return f"row {row + 1}"


def _csv_where(row: int) -> str:
    return f"line {row + 2}"  # line 1 is the header; polars keeps blank lines as null rows, so rows map 1:1


def _jsonl_where(src: Source) -> Callable[[int], str]:
    """JSON Lines readers skip blank lines, so the line of row r is found by counting non-blank lines (error path)."""

    def where(row: int) -> str:
        seen = -1
        for number, line in enumerate(src.text_lines(), start=1):
            if line.strip():
                seen += 1
                if seen == row:
                    return f"line {number}"
        return f"record {row + 1}"

    return where
