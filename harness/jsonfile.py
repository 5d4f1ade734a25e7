"""Parsing JSON a user gave us: malformed JSON, non-finite numbers and absurd nesting become an InputError naming the
file (and line).

Python's json module reads NaN, Infinity and 1e400 (as inf); no input of ours may hold one, and a report could not
write it back out (JSON has no such values). Deep nesting is refused before parsing: json recurses (RecursionError)
and ijson's path strings grow with depth (quadratic memory: 100,000 nested '[' took over 24 GB)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from harness.errors import InputError

MAX_DEPTH = 100  # our traces nest about 6 deep (events, args, shape lists)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a complete JSON string
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*')  # the body of a string, up to its closing quote
_OPEN = np.zeros(256, np.int64)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


class DepthGuard:
    """Follows the bracket depth of a JSON byte stream fed in chunks (strings skipped, even split across chunks);
    raises InputError once it passes MAX_DEPTH."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last chunk ended inside a string on a backslash

    def feed(self, chunk: bytes) -> None:
        if self.escaped:
            chunk, self.escaped = chunk[1:], False
        if not chunk:
            return
        if b"\\" not in chunk:  # the usual case, fast: inside a string after an odd number of quotes
            arr = np.frombuffer(chunk, np.uint8)
            inside = (np.cumsum(arr == ord('"')) + self.in_string) & 1
            steps = _OPEN[arr] * (1 - inside)
            self.in_string = bool(inside[-1])
        else:
            steps = _OPEN[np.frombuffer(self._outside_strings(chunk), np.uint8)]
        if len(steps) and self.depth + int(np.cumsum(steps).max()) > MAX_DEPTH:
            raise InputError(f"nesting deeper than {MAX_DEPTH} levels of [ and {{ (no trace nests that deep)",
                             path=self.path)
        self.depth += int(steps.sum())

    def _outside_strings(self, chunk: bytes) -> bytes:
        pos = 0
        if self.in_string:
            pos = self._close_string(chunk, 0)
            if pos < 0:
                return b""
        rest = _STRING.sub(b"", chunk[pos:])
        quote = rest.find(b'"')
        if quote >= 0:  # a string runs on into the next chunk
            self.in_string = True
            self._close_string(rest, quote + 1)
            rest = rest[:quote]
        return rest

    def _close_string(self, chunk: bytes, pos: int) -> int:
        """Past the string open at `pos`: the position after its closing quote, or -1 if it runs past the chunk."""
        self.escaped = False
        if pos > len(chunk):  # the escaped character is the next chunk's first
            self.escaped = True
            return -1
        end = _STRING_REST.match(chunk, pos).end()
        if end < len(chunk) and chunk[end:end + 1] == b'"':
            self.in_string = False
            return end + 1
        self.escaped = end < len(chunk)  # stopped at a trailing backslash
        return -1


class GuardedReader:
    """A binary file whose reads pass through a DepthGuard, for streaming parsers (ijson)."""

    def __init__(self, f, path: str) -> None:
        self.f = f
        self.guard = DepthGuard(path)

    def read(self, size: int = -1) -> bytes:
        chunk = self.f.read(size)
        self.guard.feed(chunk)
        return chunk


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
    """`text` parsed as JSON, refusing non-finite numbers and nesting deeper than MAX_DEPTH."""
    DepthGuard(path).feed(text.encode("utf-8"))
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float)
    except _NotFinite as exc:
        line = next((i + 1 for i, row in enumerate(text.splitlines()) if exc.args[0] in row), None)
        raise InputError(f"{exc.args[0]} is not a finite number", path=path,
                         where=f"line {line}" if line else None) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path, where=f"line {exc.lineno}") from None
