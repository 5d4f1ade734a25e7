"""Prefix blocks per request, as flat arrays (CSR): from the trace's hash ids, or derived from sessions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class PrefixBlocks:
    """Request i's prompt blocks are ids[offsets[i]:offsets[i+1]], each `block_size` tokens (the last may be short)."""

    offsets: np.ndarray   # int64, len n+1
    ids: np.ndarray       # int64
    block_size: int

    def of(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    @property
    def empty(self) -> bool:
        return self.ids.size == 0


def prefix_blocks(requests: pl.DataFrame, trace_block_size: int | None, derived_block_size: int) -> PrefixBlocks:
    """The trace's own prefix blocks when it has them; else blocks derived from session_id; else none."""
    n = requests.height
    col = requests.get_column("prefix_blocks")
    if trace_block_size and col.null_count() < n:
        lengths = col.list.len().fill_null(0).to_numpy().astype(np.int64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = col.explode().drop_nulls().to_numpy().astype(np.int64)
        return PrefixBlocks(offsets, ids, int(trace_block_size))
    sessions = requests.get_column("session_id")
    if sessions.null_count() < n:
        return _from_sessions(sessions, requests.get_column("input_tokens").to_numpy(), derived_block_size)
    return PrefixBlocks(np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), derived_block_size)


def _from_sessions(sessions: pl.Series, input_tokens: np.ndarray, block_size: int) -> PrefixBlocks:
    """Each turn's prompt extends the previous turn's context, so it shares the previous prompt's full blocks.

    A turn whose prompt is not longer than the previous one is taken as a fresh context (the client truncated)."""
    codes = sessions.cast(pl.Categorical).to_physical().to_numpy()  # null -> masked below
    has = ~sessions.is_null().to_numpy()
    n = len(input_tokens)
    per_request: list[np.ndarray] = []
    last: dict[int, tuple[np.ndarray, int]] = {}  # session code -> (previous turn's blocks, its input tokens)
    next_id = 0
    for i in range(n):
        tokens = int(input_tokens[i])
        count = -(-tokens // block_size) if tokens > 0 else 0
        shared = np.zeros(0, dtype=np.int64)
        if has[i]:
            prev = last.get(int(codes[i]))
            if prev is not None and tokens > prev[1]:
                shared = prev[0][: prev[1] // block_size]
        fresh = np.arange(next_id, next_id + count - shared.size, dtype=np.int64)
        next_id += fresh.size
        blocks = np.concatenate([shared, fresh])
        per_request.append(blocks)
        if has[i]:
            last[int(codes[i])] = (blocks, tokens)
    lengths = np.fromiter((b.size for b in per_request), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(per_request) if per_request else np.zeros(0, dtype=np.int64)
    return PrefixBlocks(offsets, ids.astype(np.int64), block_size)
