"""The monotone plan search against brute force over every monotone feasibility pattern hypothesis can draw."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from harness.sweep.search import cheapest_feasible


@st.composite
def spaces(draw):
    """A grid, per-instance chip counts, and a monotone feasibility: p >= need[d], need non-increasing in d."""
    max_p = draw(st.integers(1, 24))
    max_d = draw(st.integers(1, 6))
    need = sorted(draw(st.lists(st.integers(1, max_p + 2), min_size=max_d, max_size=max_d)), reverse=True)
    return max_p, max_d, need, draw(st.integers(1, 200)), draw(st.integers(1, 400)), draw(st.integers(1, 9))


def _brute(max_p, max_d, feasible, cost, allowed=lambda p, d: True):
    cells = [(p, d) for d in range(1, max_d + 1) for p in range(1, max_p + 1) if feasible(p, d) and allowed(p, d)]
    return min((cost(*c) for c in cells), default=None)


@settings(max_examples=300)   # pure and fast: worth many more patterns than the profile's default
@given(spaces(), st.one_of(st.none(), st.integers(1, 2000)))
@example((10, 2, [10, 6], 16, 10, 1), None)   # the optimum needs fewer prefill instances at the larger d
def test_search_finds_the_grid_optimum_with_fewer_evaluations(space, max_chips):
    max_p, max_d, need, p_chips, d_chips, width = space
    calls = []

    def feasible(cells):
        calls.append(len(cells))
        return [p >= need[d - 1] for p, d in cells]

    def chips(p, d):
        return p * p_chips + d * d_chips

    allowed = (lambda p, d: True) if max_chips is None else (lambda p, d: chips(p, d) <= max_chips)
    res = cheapest_feasible(max_p, max_d, chips, feasible, width=width, allowed=allowed)
    expected = _brute(max_p, max_d, lambda p, d: p >= need[d - 1], chips, allowed)
    if expected is None:
        assert res.best is None
    else:
        assert res.best is not None and chips(*res.best) == expected
        assert res.evaluated[res.best] is True
    assert all(allowed(p, d) for p, d in res.evaluated)          # never runs a cell outside the limits
    assert len(res.evaluated) <= max_p * max_d
    assert max(calls, default=0) <= width + 1                    # batches no larger than the workers (+ the top)
    # Binary search per decode count: at most ~log2(max_p) + 2 cells per d (width 1).
    if width == 1:
        assert len(res.evaluated) <= max_d * (math.ceil(math.log2(max_p)) + 2)


def test_search_is_cheaper_than_the_grid_on_a_large_space():
    need = [40, 25, 12, 12, 3, 1]
    res = cheapest_feasible(64, 6, lambda p, d: p * 16 + d * 160,
                            lambda cells: [p >= need[d - 1] for p, d in cells])
    assert res.best == (12, 3)   # 12 x 16 + 3 x 160 = 672 chips beats (40,1) = 800, (25,2) = 720, (3,5) = 848
    assert len(res.evaluated) < 64 * 6 / 8


def test_nothing_feasible_gives_no_winner():
    res = cheapest_feasible(5, 3, lambda p, d: p + d, lambda cells: [False] * len(cells), width=3)
    assert res.best is None and all(ok is False for ok in res.evaluated.values())
