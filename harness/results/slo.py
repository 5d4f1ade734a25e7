"""Service-level objectives: `ttft=2s,tpot=50ms[,percentile=90]`, and which requests meet them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.errors import InputError

_UNITS_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_VALUE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us)?\s*$")


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 2.0
    tpot_ms: float = 50.0
    percentile: float | None = None   # None: judged per request; else the run meets it at this percentile

    def as_json(self) -> dict:
        return {"ttft_s": self.ttft_s, "tpot_ms": self.tpot_ms, "percentile": self.percentile}


def parse_slo(text: str, option: str = "--slo") -> Slo:
    """Parse `ttft=2s,tpot=50ms` (units s, ms, us; bare numbers: ttft in s, tpot in ms) and `percentile=90`."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ttft", "tpot", "percentile", "p"):
            raise InputError(f"expected ttft=<time>, tpot=<time> or percentile=<0-100>, got {part!r}", path=option)
        m = _VALUE.match(raw)
        if not m:
            raise InputError(f"{key}: not a number with an optional unit (s, ms, us): {raw!r}", path=option)
        number, unit = float(m.group(1)), m.group(2)
        name = {"p": "percentile", "ttft": "ttft_s", "tpot": "tpot_ms"}.get(key, key)
        if name in values:   # which one would count is a guess; say so
            raise InputError(f"{key} is given twice", path=option)
        if key in ("percentile", "p"):
            if unit or not 0 < number <= 100:
                raise InputError(f"percentile must be a number in (0, 100], got {raw!r}", path=option)
            values["percentile"] = number
        elif key == "ttft":
            values["ttft_s"] = number * _UNITS_S[unit or "s"]
        else:
            values["tpot_ms"] = number * _UNITS_S[unit or "ms"] * 1e3
    for key in ("ttft_s", "tpot_ms"):
        if key in values and values[key] <= 0:
            raise InputError(f"{key.split('_')[0]} must be positive", path=option)
        if key in values and not math.isfinite(values[key]):   # 1e400s: no JSON result could hold it
            raise InputError(f"{key.split('_')[0]} must be finite", path=option)
    return Slo(**values)


def parse_durations_ms(text: str, option: str, bare_unit: str = "ms") -> list[float]:
    """Parse a comma-separated list of durations (`15ms,30ms,50ms`; units s, ms, us; bare numbers in `bare_unit`)
    into milliseconds, each positive."""
    out = []
    for raw in (p.strip() for p in text.split(",")):
        m = _VALUE.match(raw)
        if not m:
            raise InputError(f"not a duration with an optional unit (s, ms, us): {raw!r}", path=option)
        ms = float(m.group(1)) * _UNITS_S[m.group(2) or bare_unit] * 1e3
        if not 0 < ms < float("inf"):
            raise InputError(f"a duration must be positive and finite, got {raw!r}", path=option)
        out.append(ms)
    return out
