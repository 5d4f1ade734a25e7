"""Monotone search of a (prefill instances, decode instances) space for the cheapest cell that meets an SLO.

Assumption (what makes it cheaper than the full grid): adding an instance of either kind never turns a passing
deployment into a failing one, i.e. feasible(p, d) is monotone in p and in d, and cost grows with both.

Then, walking d = 1, 2, ...: the fewest prefill instances that pass at d, p_min(d), never grows with d, so each d
needs only a search of p in [1, p_min(d - 1)], cut further to cells cheaper than the best found so far; the walk
stops when even one prefill instance at this d costs more than the best. Each p search is a k-ary search (k =
`width`, the number of points evaluated together, so parallel workers shorten it; k = 1 is a binary search).
About d_max x log(p_max) evaluations instead of p_max x d_max.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

Cell = tuple[int, int]   # (prefill instances, decode instances)


@dataclass
class SearchResult:
    best: Cell | None
    evaluated: dict[Cell, bool] = field(default_factory=dict)   # in evaluation order
    rounds: int = 0                                             # batches asked for


def _probes(lo: int, hi: int, k: int) -> list[int]:
    """Up to k cells spread over [lo, hi - 1] (the unknown cells below the known-feasible hi)."""
    n = hi - lo
    if k <= 0 or n <= 0:
        return []
    return sorted({lo + (i * n) // (k + 1) for i in range(1, k + 1)})


def cheapest_feasible(max_p: int, max_d: int, cost: Callable[[int, int], float],
                      feasible: Callable[[list[Cell]], list[bool]], *, width: int = 1,
                      allowed: Callable[[int, int], bool] = lambda p, d: True) -> SearchResult:
    """The cheapest feasible cell of [1, max_p] x [1, max_d] (ties: the first found, i.e. fewest decode
    instances), evaluating cells in batches of at most `width` (plus one) through `feasible`. `allowed` rules out
    cells (e.g. over a chip limit); it must be monotone too (allowed cells stay allowed with fewer instances)."""
    res = SearchResult(None)
    best_cost = math.inf

    def ask(cells: list[Cell]) -> None:
        new = [c for c in dict.fromkeys(cells) if c not in res.evaluated]
        if new:
            res.rounds += 1
            for c, ok in zip(new, feasible(new)):
                res.evaluated[c] = bool(ok)

    def min_feasible(hi: int, d: int) -> int | None:
        lo = 1
        while True:
            need_hi = (hi, d) not in res.evaluated
            probes = _probes(lo, hi, width - (1 if need_hi else 0))
            ask(([(hi, d)] if need_hi else []) + [(p, d) for p in probes])
            if not res.evaluated[(hi, d)]:
                return None
            if lo >= hi:
                return hi
            passing = [p for p in probes if res.evaluated[(p, d)]]
            failing = [p for p in probes if not res.evaluated[(p, d)] and (not passing or p < passing[0])]
            if passing:
                hi = passing[0]
            if failing:
                lo = max(failing) + 1

    p_top = max_p
    for d in range(1, max_d + 1):
        if not allowed(1, d) or cost(1, d) >= best_cost:
            break
        hi = p_top
        while hi >= 1 and (not allowed(hi, d) or cost(hi, d) >= best_cost):
            hi -= 1
        p = min_feasible(hi, d)
        if p is None:
            continue
        p_top = p
        if cost(p, d) < best_cost:
            res.best, best_cost = (p, d), cost(p, d)
    return res
