"""Quantities with explicit units, as written in spec files and `--set` overrides ("196 GB/s", "1.9 us", "64 GB").

Spec files keep units in the text so a reader sees them; code converts once, on load, to SI floats (bytes, bytes/s,
seconds, flop/s) and names carry the unit (`_bytes`, `_bytes_per_s`, `_s`, `_flops`)."""

from __future__ import annotations

import math
import re

# unit -> (kind, factor to SI). Decimal prefixes for GB/s and GB as vendors print them; binary ones spelled KiB/GiB.
_UNITS: dict[str, tuple[str, float]] = {
    "B/s": ("bandwidth", 1.0), "KB/s": ("bandwidth", 1e3), "MB/s": ("bandwidth", 1e6), "GB/s": ("bandwidth", 1e9),
    "TB/s": ("bandwidth", 1e12), "Gb/s": ("bandwidth", 1e9 / 8), "Tb/s": ("bandwidth", 1e12 / 8),
    "Gbps": ("bandwidth", 1e9 / 8),
    "B": ("size", 1.0), "KB": ("size", 1e3), "MB": ("size", 1e6), "GB": ("size", 1e9), "TB": ("size", 1e12),
    "KiB": ("size", 2.0**10), "MiB": ("size", 2.0**20), "GiB": ("size", 2.0**30), "TiB": ("size", 2.0**40),
    "s": ("time", 1.0), "ms": ("time", 1e-3), "us": ("time", 1e-6), "ns": ("time", 1e-9),
    "GFLOPS": ("compute", 1e9), "TFLOPS": ("compute", 1e12), "PFLOPS": ("compute", 1e15), "TOPS": ("compute", 1e12),
}
_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z/]+)\s*$")

# Regular expressions for the JSON Schemas, one per kind, generated from the table above so they never disagree.
PATTERNS: dict[str, str] = {
    kind: r"^\s*[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*(" + "|".join(re.escape(u) for u, (k, _) in _UNITS.items()
                                                                    if k == kind) + r")\s*$"
    for kind in ("bandwidth", "size", "time", "compute")
}


def parse_quantity(text: str, kind: str | None = None) -> float:
    """"98GB/s" -> 9.8e10 (SI). Raises ValueError naming the expected kind when the unit is missing or wrong."""
    m = _RE.match(str(text))
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"expected a {kind or 'quantity'} with a unit (e.g. {_EXAMPLE.get(kind, '196 GB/s')}), "
                         f"got {text!r}")
    unit_kind, factor = _UNITS[m.group(2)]
    if kind is not None and unit_kind != kind:
        raise ValueError(f"expected a {kind} (e.g. {_EXAMPLE[kind]}), got {text!r} which is a {unit_kind}")
    value = float(m.group(1)) * factor
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too large to be a {kind or 'quantity'}")
    return value


def quantity_kind(text: str) -> str | None:
    """The kind of a quantity string ("bandwidth", "size", ...), or None when it is not one."""
    m = _RE.match(str(text))
    return _UNITS[m.group(2)][0] if m and m.group(2) in _UNITS else None


_EXAMPLE = {"bandwidth": "196 GB/s", "size": "64 GB", "time": "1.9 us", "compute": "376 TFLOPS"}
