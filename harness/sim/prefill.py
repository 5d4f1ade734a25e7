"""A prefill instance: a FIFO queue and batch formation up to a token budget, chunking long prompts if allowed."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np


class PrefillInstance:
    def __init__(self, index: int, chips: int) -> None:
        self.index = index
        self.queue: deque[int] = deque()
        self.load_tokens = 0          # new tokens queued or in the running step (the routers' load measure)
        self.busy = False
        self.kicked = False
        self.links_free_s = [0.0] * chips   # KV leaves over its chips' links, one request per link at a time
        self.write_free_s = 0.0       # so do its cache write-backs
        self.batch: list[tuple[int, int, bool]] = []   # (request, new tokens, completes the prompt)


def form_batch(queue: deque[int], remaining: np.ndarray, done: np.ndarray, looked_up: np.ndarray,
               budget_tokens: int, chunk_tokens: int | None, kv_tokens: int,
               on_first: Callable[[int], None]) -> list[tuple[int, int, bool]]:
    """Take pieces from the head of the queue while they fit the step's token budget and the instance's KV.

    remaining[r]: prompt tokens still to compute; done[r]: prompt tokens already in KV. on_first(r) is called
    when r first reaches a batch's consideration (the cache lookup happens then, setting looked_up[r]) and may
    move tokens from remaining[r] to done[r]. A piece larger than the
    budget still runs when it is alone in the step, or it could never run. Completed requests leave the queue;
    a chunked request stays at the head for its next piece."""
    batch: list[tuple[int, int, bool]] = []
    budget, kv = budget_tokens, kv_tokens
    taken = 0
    for r in queue:
        if not looked_up[r]:
            on_first(r)
        want = int(remaining[r])
        piece = min(want, chunk_tokens) if chunk_tokens else want
        if batch:
            if chunk_tokens and piece > budget:
                piece = budget
            if piece <= 0 or piece > budget or done[r] + piece > kv:
                break
        batch.append((r, piece, piece == want))
        budget -= piece
        kv -= int(done[r]) + piece
        taken += 1
        if budget <= 0:
            break
    for _ in range(taken):
        queue.popleft()
    for r, _, completes in reversed(batch):
        if not completes:
            queue.appendleft(r)
    return batch
