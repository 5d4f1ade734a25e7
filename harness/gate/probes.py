"""Result probes: fixed scenarios whose predictions are golden. Each returns {result id: value}."""

from __future__ import annotations

from collections.abc import Callable

PROBES: list[Callable[[], dict[str, float]]] = []


def collect_results() -> dict[str, float]:
    out: dict[str, float] = {}
    for probe in PROBES:
        out.update(probe())
    return out
