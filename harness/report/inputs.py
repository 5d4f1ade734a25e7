"""Read saved results (replay folders, op-trace replay JSON, validation JSON), tell which kind each is, and check them.

Every problem is an InputError naming the file, the row or field and what is wrong; nothing here renders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl

from harness.errors import InputError
from harness.jsonfile import loads_finite

_SCHEMAS = Path(__file__).resolve().parent / "schemas"

# Columns the report reads from the simulator's Parquet tables (the layout has more; they are not needed here).
REQUEST_COLUMNS = ("request_id", "input_tokens", "output_tokens", "ttft_s", "tpot_ms", "e2e_s", "status", "reason")
TIMESERIES_COLUMNS = ("t_s", "input_tokens_per_s", "output_tokens_per_s", "prefill_queue", "decode_queue",
                      "running_batch", "kv_used_frac", "cache_hit_ratio", "prefill_util", "decode_util")


@dataclass(frozen=True)
class ReplayBackend:
    label: str
    summary: dict[str, Any]
    requests: pl.DataFrame      # REQUEST_COLUMNS
    timeseries: pl.DataFrame    # TIMESERIES_COLUMNS


@dataclass(frozen=True)
class ReplayResults:
    path: Path
    run: dict[str, Any]
    backends: list[ReplayBackend]
    kind: str = "replay"


@dataclass(frozen=True)
class ValidationResults:
    path: Path
    rows: list[dict[str, Any]]
    kind: str = "validation"


@dataclass(frozen=True)
class OpsResults:
    path: Path
    data: dict[str, Any]
    kind: str = "ops"


Results = ReplayResults | ValidationResults | OpsResults


@cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads((_SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=str(path)) from None
    return loads_finite(text, str(path))


def _check(doc: Any, schema: str, path: Path) -> None:
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_schema(schema)).iter_errors(doc))
    if error is None:
        return
    loc = list(error.absolute_path)
    where = f"row {loc.pop(0)}" if schema == "validation" and loc and isinstance(loc[0], int) else None
    field = ".".join(str(p) for p in loc) or None
    if error.validator == "required":
        # jsonschema reports a missing key at its parent; name the key itself.
        missing = next(k for k in error.validator_value if k not in error.instance)
        field = f"{field}.{missing}" if field else missing
        raise InputError("missing", path=str(path), where=where, field=field)
    raise InputError(error.message, path=str(path), where=where, field=field)


def _read_table(path: Path, columns: tuple[str, ...]) -> pl.DataFrame:
    if not path.is_file():
        raise InputError("file not found", path=str(path))
    try:
        names = pl.read_parquet_schema(path)
    except Exception as exc:  # polars raises several types for a corrupt file; all mean the same to the user
        raise InputError(f"not a readable Parquet file ({type(exc).__name__})", path=str(path)) from None
    for col in columns:
        if col not in names:
            raise InputError("column missing", path=str(path), field=col)
    return pl.read_parquet(path, columns=list(columns))


def load_replay(folder: Path) -> ReplayResults:
    """A `bench replay --out` folder: run.json plus one sub-folder per backend label."""
    run_path = folder / "run.json"
    run = _read_json(run_path)
    _check(run, "run", run_path)
    backends = []
    for label in run["backends"]:
        sub = folder / label
        if Path(label).name != label or not sub.is_dir():
            raise InputError(f"backend folder {label!r} not found beside it", path=str(run_path), field="backends")
        summary_path = sub / "summary.json"
        summary = _read_json(summary_path)
        _check(summary, "summary", summary_path)
        backends.append(ReplayBackend(
            label=label, summary=summary,
            requests=_read_table(sub / "requests.parquet", REQUEST_COLUMNS),
            timeseries=_read_table(sub / "timeseries.parquet", TIMESERIES_COLUMNS),
        ))
    return ReplayResults(path=folder, run=run, backends=backends)


def _check_ops(doc: dict[str, Any], path: Path) -> None:
    """Schema check plus what a schema cannot say: each timeline's columns have one length."""
    _check(doc, "ops", path)
    for kind, cols in doc["timelines"].items():
        lengths = {k: len(v) for k, v in cols.items() if isinstance(v, list)}
        if len(set(lengths.values())) > 1:
            raise InputError(f"columns differ in length {lengths}", path=str(path), field=f"timelines.{kind}")


def load_results(path: str | Path) -> Results:
    """Load one saved result, detecting its kind from its content (not its name)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "run.json").is_file():
            raise InputError("a folder given to the report must be a replay results folder (no run.json in it)",
                             path=str(path))
        return load_replay(path)
    if path.name == "run.json" and path.is_file():
        return load_replay(path.parent)
    doc = _read_json(path)
    if isinstance(doc, list):
        _check(doc, "validation", path)
        return ValidationResults(path=path, rows=doc)
    if isinstance(doc, dict) and isinstance(doc.get("rows"), list):
        # A validation document may wrap its rows with metadata.
        _check(doc["rows"], "validation", path)
        return ValidationResults(path=path, rows=doc["rows"])
    if isinstance(doc, dict) and "timelines" in doc and "trace" in doc:
        _check_ops(doc, path)
        return OpsResults(path=path, data=doc)
    raise InputError("not a results file the report knows (expected a replay folder, op-trace replay JSON "
                     "or validation JSON)", path=str(path))
