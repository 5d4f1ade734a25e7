"""Parsing JSON a user gave us: malformed JSON and non-finite numbers become an InputError naming the file and line.

Python's json module reads NaN, Infinity and 1e400 (as inf); no input of ours may hold one, and a report could not
write it back out (JSON has no such values)."""

from __future__ import annotations

import json
import math
from typing import Any

from harness.errors import InputError


class _NotFinite(ValueError):
    pass


def _constant(literal: str) -> float:
    raise _NotFinite(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotFinite(literal)
    return value


def loads_finite(text: str, path: str) -> Any:
    """`text` parsed as JSON, refusing non-finite numbers."""
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float)
    except _NotFinite as exc:
        line = next((i + 1 for i, row in enumerate(text.splitlines()) if exc.args[0] in row), None)
        raise InputError(f"{exc.args[0]} is not a finite number", path=path,
                         where=f"line {line}" if line else None) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path, where=f"line {exc.lineno}") from None
