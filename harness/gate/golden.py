"""Golden results: deterministic numbers for fixed scenarios, compared within a relative tolerance.

The golden file keeps, per result id, the value and its tolerance, plus a history of every deliberate update with its
reason and the old and new values, so a moved prediction is always a recorded decision.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from harness.errors import InputError
from harness.jsonfile import loads_finite
from harness.outputs import write_text_atomic

DEFAULT_REL_TOL = 0.01  # 1%: deterministic results move only when a model or spec changes


@dataclass(frozen=True)
class Moved:
    id: str
    old: float | None    # None: new result, not in the golden file yet
    new: float | None    # None: result no longer produced
    rel_change: float | None
    rel_tol: float

    @property
    def failed(self) -> bool:
        if self.old is None or self.new is None:
            return True
        return self.rel_change is None or self.rel_change > self.rel_tol


_SCHEMA = {
    "type": "object", "required": ["values"],
    "properties": {
        "values": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["value"], "additionalProperties": False,
            "properties": {"value": {"type": "number"}, "rel_tol": {"type": "number", "minimum": 0}}}},
        "history": {"type": "array"},
    },
}


def load_golden(path: Path, *, must_exist: bool = True) -> dict:
    """The golden file; a missing one is an error unless it is about to be created (`must_exist=False`)."""
    if not path.exists():
        if must_exist:
            raise InputError("no such golden file (create it with --update --reason \"...\")", path=str(path))
        return {"values": {}, "history": []}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a text file", path=str(path)) from None
    data = loads_finite(text, str(path))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_SCHEMA).iter_errors(data))
    if error is not None:
        raise InputError(error.message, path=str(path), field=".".join(map(str, error.absolute_path)) or None)
    data.setdefault("history", [])
    return data


def _rel(old: float, new: float) -> float:
    if old == new:
        return 0.0
    if not (math.isfinite(old) and math.isfinite(new)):
        return math.inf
    return abs(new - old) / max(abs(old), 1e-12)


def compare(golden: dict, current: dict[str, float]) -> list[Moved]:
    """Every result id present in either side, with its relative change; sorted by id."""
    values = golden["values"]
    rows = []
    for rid in sorted(set(values) | set(current)):
        entry = values.get(rid)
        old = None if entry is None else float(entry["value"])
        new = current.get(rid)
        tol = DEFAULT_REL_TOL if entry is None else float(entry.get("rel_tol", DEFAULT_REL_TOL))
        change = None if old is None or new is None else _rel(old, float(new))
        rows.append(Moved(rid, old, None if new is None else float(new), change, tol))
    return rows


def update_golden(path: Path, golden: dict, current: dict[str, float], reason: str) -> list[Moved]:
    """Write `current` as the new golden values, recording the reason and what changed in the history."""
    if not reason.strip():
        raise InputError("an update needs a reason (--reason \"...\")", field="reason")
    moved = [m for m in compare(golden, current) if m.rel_change != 0.0]
    old_values = golden["values"]
    values = {rid: {"value": v, "rel_tol": float(old_values.get(rid, {}).get("rel_tol", DEFAULT_REL_TOL))}
              for rid, v in sorted(current.items())}
    history = list(golden.get("history", []))
    history.append({
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reason": reason,
        "changes": [{"id": m.id, "old": m.old, "new": m.new} for m in moved],
    })
    write_text_atomic(path, json.dumps({"values": values, "history": history}, indent=1, sort_keys=False) + "\n")
    return moved
