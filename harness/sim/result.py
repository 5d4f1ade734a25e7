"""What a simulation leaves behind: per-request arrays, per-step records and time-bucketed accumulators."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.errors import InputError
from harness.sim.config import Capacities
from harness.trace.shape import MAX_SPAN_S

PENDING, COMPLETED, REJECTED = 0, 1, 2

# Rejection reasons, by code (index). Short, stable strings: they land in requests.parquet and summary.json.
REASONS = (
    "",
    "empty_request",               # no input or no output tokens
    "exceeds_model_context",       # input + output longer than the LLM accepts
    "exceeds_prefill_kv",          # the prompt's KV does not fit in one prefill instance
    "exceeds_decode_kv",           # the request's KV does not fit in one decode instance
)
EMPTY, TOO_LONG, PREFILL_KV, DECODE_KV = range(1, len(REASONS))

# The fields of SimResult.steps records.
STEP_COLUMNS = ("kind", "instance", "start_s", "end_s", "kv_tokens", "batch", "mean_kv_len")


# A Grid holds at most this many cells (8 MiB); past it, neighbouring cells merge in pairs and the cell doubles, so
# a run that drains long after a short burst of arrivals keeps a bounded time series at a coarser grain.
MAX_CELLS = 2**20
# Simulated time stops here: 100x the longest trace span accepted (traces/README.md), where float seconds still
# resolve 20 us. A run past it has steps far longer than any hardware takes (a spec value or --set far off).
MAX_TIME_S = 100 * MAX_SPAN_S


class Grid:
    """Accumulates a quantity over fixed time cells; grows as simulated time advances, coarsening past MAX_CELLS."""

    def __init__(self, cell_s: float) -> None:
        self.cell_s = cell_s
        self.values = np.zeros(1024)

    def _cell(self, t_s: float) -> int:
        """The cell holding time t_s, made room for: coarsen while it lies beyond MAX_CELLS cells, then grow."""
        if t_s <= MAX_TIME_S:
            cell = int(t_s / self.cell_s)
            if cell < self.values.size:
                return cell
        else:
            raise InputError(f"the run reaches {t_s:,.3g} s of simulated time, beyond the {MAX_TIME_S:,.0e} s a run "
                             "may last: its steps take far longer than any hardware would; check the spec values "
                             "and --set overrides")
        while int(t_s / self.cell_s) >= MAX_CELLS:
            v = self.values if self.values.size % 2 == 0 else np.append(self.values, 0.0)
            self.values = v.reshape(-1, 2).sum(axis=1)
            self.cell_s *= 2
        cell = int(t_s / self.cell_s)
        if cell >= self.values.size:
            grown = np.zeros(min(max(cell + 1, 2 * self.values.size), MAX_CELLS))
            grown[: self.values.size] = self.values
            self.values = grown
        return cell

    def coarsened_to(self, cell_s: float) -> np.ndarray:
        """The values over cells of cell_s, a power-of-two multiple of this grid's cell (another grid's, coarser)."""
        k = round(cell_s / self.cell_s)
        v = np.append(self.values, np.zeros(-self.values.size % k))
        return v.reshape(-1, k).sum(axis=1)

    def add_at(self, t_s: float, amount: float) -> None:
        cell = self._cell(t_s)       # first: it may replace self.values
        self.values[cell] += amount

    def add_interval(self, start_s: float, end_s: float, weight: float = 1.0) -> None:
        """Spread weight * (time overlapped) over the cells [start, end) covers."""
        c1 = self._cell(end_s)
        c0 = int(start_s / self.cell_s)
        if c0 == c1:
            self.values[c0] += weight * (end_s - start_s)
            return
        self.values[c0] += weight * ((c0 + 1) * self.cell_s - start_s)
        self.values[c0 + 1:c1] += weight * self.cell_s
        self.values[c1] += weight * (end_s - c1 * self.cell_s)

    def add_intervals(self, start_s: float, ends_s: list[float]) -> None:
        """add_interval over back-to-back intervals, start_s to ends_s[0], then to ends_s[1], ...: the same additions
        in the same order, the cell found once when all fall in one (a decode plan's steps mostly do)."""
        last = self._cell(ends_s[-1])
        c = int(start_s / self.cell_s)
        if last != c:
            for end in ends_s:
                self.add_interval(start_s, end)
                start_s = end
            return
        v = float(self.values[c])
        for end in ends_s:
            v += end - start_s
            start_s = end
        self.values[c] = v

    def add_counts(self, times_s: list[float], counts: list[int]) -> None:
        """add_at for each count at nondecreasing times, on a grid of whole counts: their sums are exact in any
        order, so counts falling in one cell are added at once."""
        c = self._cell(times_s[-1])
        if int(times_s[0] / self.cell_s) != c:
            for t, x in zip(times_s, counts):
                self.add_at(t, x)
            return
        self.values[c] += sum(counts)


@dataclass
class SimResult:
    n: int
    caps: Capacities
    prefill_instances: int
    decode_instances: int
    block_size: int
    cell_s: float                      # the grids' first cell; a long run coarsens them (Grid.cell_s)
    # per request (input order)
    status: np.ndarray = field(init=False)
    reason: np.ndarray = field(init=False)
    cached_tokens: np.ndarray = field(init=False)
    prefill_instance: np.ndarray = field(init=False)
    decode_instance: np.ndarray = field(init=False)
    reserve_s: np.ndarray = field(init=False)
    prefill_start_s: np.ndarray = field(init=False)
    prefill_end_s: np.ndarray = field(init=False)
    first_token_s: np.ndarray = field(init=False)
    decode_start_s: np.ndarray = field(init=False)
    finish_s: np.ndarray = field(init=False)
    # totals
    prefill_busy_s: float = 0.0
    decode_busy_s: float = 0.0
    cache_busy_s: float = 0.0
    computed_prefill_tokens: int = 0
    prefill_steps: int = 0
    decode_steps: int = 0
    decode_batch_sum: float = 0.0      # sum over decode steps of batch size (mean batch = sum / steps)
    decode_kv_sum: float = 0.0         # sum over decode steps of mean KV length
    decode_busiest_kv_sum: float = 0.0  # the same for the busiest DP rank (its KV x ranks / batch): what steps cost
    prefill_piece_tokens_sum: int = 0  # new tokens over all prefill pieces
    prefill_cached_sum: int = 0        # cached (already present) tokens over all prefill pieces
    prefill_pieces: int = 0
    # time-bucketed accumulators
    output_tokens_grid: Grid = field(init=False)
    prefill_busy_grid: Grid = field(init=False)
    decode_busy_grid: Grid = field(init=False)
    # per step, when config.record_steps: (kind 0 prefill / 1 decode, instance, start, end, KV tokens held
    # (prefill: of the batch; decode: reserved), batch, mean KV length per request)
    steps: list[tuple[int, int, float, float, int, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.n
        self.status = np.zeros(n, dtype=np.int8)
        self.reason = np.zeros(n, dtype=np.int8)
        self.cached_tokens = np.zeros(n, dtype=np.int64)
        self.prefill_instance = np.full(n, -1, dtype=np.int32)
        self.decode_instance = np.full(n, -1, dtype=np.int32)
        for name in ("reserve_s", "prefill_start_s", "prefill_end_s", "first_token_s", "decode_start_s", "finish_s"):
            setattr(self, name, np.full(n, np.nan))
        self.output_tokens_grid = Grid(self.cell_s)
        self.prefill_busy_grid = Grid(self.cell_s)
        self.decode_busy_grid = Grid(self.cell_s)

    @property
    def end_s(self) -> float:
        """When the last request finished (or was rejected at arrival)."""
        done = self.finish_s[~np.isnan(self.finish_s)]
        return float(done.max()) if done.size else 0.0
