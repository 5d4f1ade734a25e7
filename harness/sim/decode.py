"""A decode instance: continuous batching over numpy arrays, MTP tokens drawn per step for the whole batch."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np


class Uniforms:
    """Uniform draws from the run's one generator, taken in large slices (one generator call per 64K draws)."""

    def __init__(self, rng: np.random.Generator, chunk: int = 1 << 16) -> None:
        self.rng, self.chunk = rng, chunk
        self.buf = rng.random(chunk)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > self.buf.size:
            self.buf = np.concatenate([self.buf[self.pos:], self.rng.random(max(self.chunk, n))])
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def give_back(self, n: int) -> None:
        """Return the last n draws of the latest take() unused: the next take() hands them out again."""
        self.pos -= n


def tokens_per_step(u: np.ndarray, n: int, draft: int, accept: float) -> np.ndarray:
    """Tokens each of n requests emits in one step: 1 plus the run of accepted draft tokens (each accepted with
    probability `accept`, so the mean with one draft token is 1 + accept). u: n * draft uniform draws."""
    if draft == 0:
        return np.ones(n, dtype=np.int64)
    if draft == 1:
        return np.add(u < accept, 1, dtype=np.int64)
    accepted = np.cumprod(u.reshape(-1, draft) < accept, axis=1).sum(axis=1)
    return 1 + accepted.astype(np.int64)


@dataclass
class Plan:
    """The next steps of a decode instance, planned at start_s: step j ends at ends[j]; only the first m run."""

    start_s: float
    k: int                  # steps drawn for
    n: int                  # batch
    ends: list[float]
    durs: list[float]
    held: list[int]         # KV tokens held at each step's start
    per_step: list[int]     # tokens emitted per step (uncapped)
    emitted: np.ndarray     # (k, n) cumulative tokens per request
    m: int
    busiest: list[int]      # KV tokens on the busiest DP rank at each step's start
    finishes: bool          # a request finishes in the plan's last step (else it ran out of drawn steps)


class DecodeInstance:
    """One decode instance. With `ranks` > 1 its attention is data-parallel: each request lives on one DP rank
    (joining the rank with the least KV among those below their share of the batch cap, as DeepSeek's decode load
    balancer balances KV and request counts), and a step waits for the rank with the most KV, since every MoE
    all-to-all synchronises all ranks."""

    def __init__(self, index: int, batch_cap: int, kv_tokens: int, uniforms: Uniforms, ranks: int = 1) -> None:
        self.index = index
        self.ranks = ranks
        self.rank_cap = -(-batch_cap // ranks)
        self.rank = np.zeros(0, dtype=np.int64)          # each running request's DP rank
        self.stacked = False            # some DP rank holds two or more requests: kept by _place and advance, so
                                        # that busiest_rank_kv need not count requests per rank every plan
        self.uniforms = uniforms
        self.plan: Plan | None = None
        self.gen = 0                    # identifies the one live end-of-plan event
        self.next_plan_steps = 1
        self.batch_cap = batch_cap
        self.kv_tokens = kv_tokens
        self.reserved_tokens = 0        # KV reserved for requests routed here (input + output each)
        self.reserved_requests = 0
        self.waiting: deque[int] = deque()   # KV arrived, waiting for a batch slot
        self.rid = np.zeros(0, dtype=np.int64)
        self.remaining = np.zeros(0, dtype=np.int64)
        self.kv_len = np.zeros(0, dtype=np.int64)
        self.kv_sum = 0
        self.busy = False
        self.kicked = False

    @property
    def running(self) -> int:
        return self.rid.size

    def fits(self, tokens: int) -> bool:
        return self.reserved_tokens + tokens <= self.kv_tokens

    def join(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """Move waiting requests into the batch up to the cap; returns the ids that joined."""
        k = min(self.batch_cap - self.rid.size, len(self.waiting))
        if k <= 0:
            return self.rid[:0]
        new = np.fromiter((self.waiting.popleft() for _ in range(k)), dtype=np.int64, count=k)
        kv = input_tokens[new] + 1            # the prompt plus the first token, which prefill produced
        self.rank = np.concatenate([self.rank, self._place(kv)])
        self.rid = np.concatenate([self.rid, new])
        self.remaining = np.concatenate([self.remaining, output_tokens[new] - 1])
        self.kv_len = np.concatenate([self.kv_len, kv])
        self.kv_sum += int(kv.sum())
        return new

    def _place(self, kv: np.ndarray) -> np.ndarray:
        """DP ranks for joining requests of these KV lengths, one at a time: least KV among ranks with room."""
        if self.ranks == 1:
            self.stacked = self.rank.size + kv.size > 1
            return np.zeros(kv.size, dtype=np.int64)
        if not self.stacked and self.rank.size + kv.size <= self.ranks:
            # a request per rank so far, and room for these alone: each takes the first empty rank (KV 0 beats any
            # held KV, and argmin takes the first of equals), as the search below would, in a few microseconds
            used = set(self.rank.tolist())
            return np.fromiter(itertools.islice((r for r in range(self.ranks) if r not in used), kv.size),
                               dtype=np.int64, count=kv.size)
        rank_kv = np.bincount(self.rank, weights=self.kv_len, minlength=self.ranks)
        rank_n = np.bincount(self.rank, minlength=self.ranks)
        room = np.where(rank_n < self.rank_cap, rank_kv, np.inf)   # each rank's KV, infinite once full
        out = np.empty(kv.size, dtype=np.int64)
        for i, k in enumerate(kv.tolist()):
            r = int(room.argmin())
            room[r] += k
            rank_n[r] += 1
            if rank_n[r] >= self.rank_cap:
                room[r] = np.inf
            out[i] = r
        self.stacked = bool(rank_n.max() > 1)
        return out

    def busiest_rank_kv(self, emitted: np.ndarray, steps: int) -> list[int]:
        """KV tokens on the rank holding the most, at the start of each of the next `steps` steps, where
        emitted[j] is each request's cumulative tokens through step j (uncapped: nobody finishes before the last
        of these steps). With one rank: the instance's KV."""
        s = steps - 1
        if self.ranks == 1:
            return [self.kv_sum] + (self.kv_sum + emitted[:s].sum(axis=1)).tolist()
        if not self.stacked:   # a request per rank (a light load): its own KV is its rank's
            return [int(self.kv_len.max())] + (self.kv_len + emitted[:s]).max(axis=1).tolist()
        r = self.ranks
        rank_kv = np.bincount(self.rank, weights=self.kv_len, minlength=r)
        cells = (self.rank + r * np.arange(s)[:, None]).ravel()     # (step, rank) of each request's tokens
        grown = np.bincount(cells, weights=emitted[:s].ravel(), minlength=s * r).reshape(s, r) + rank_kv
        return [int(rank_kv.max())] + grown.max(axis=1).astype(np.int64).tolist()

    def advance(self, tokens: np.ndarray, finishing: bool = True) -> tuple[int, np.ndarray]:
        """Apply drawn tokens (one step's, or several steps' sums when no request finishes before the last);
        returns (tokens emitted, ids that finished) and drops the finished. finishing=False: the caller knows
        that nobody finishes (no token reaches a request's end, so none is capped either)."""
        if not finishing:
            self.remaining -= tokens
            self.kv_len += tokens
            total = int(tokens.sum())
            self.kv_sum += total
            return total, self.rid[:0]
        emitted = np.minimum(tokens, self.remaining)
        self.remaining -= emitted
        self.kv_len += emitted
        total = int(emitted.sum())
        self.kv_sum += total
        done = self.remaining == 0
        if not done.any():
            return total, self.rid[:0]
        finished = self.rid[done]
        self.kv_sum -= int(self.kv_len[done].sum())
        keep = ~done
        self.rid, self.remaining, self.kv_len = self.rid[keep], self.remaining[keep], self.kv_len[keep]
        self.rank = self.rank[keep]
        if self.stacked:   # the finished may have left each rank one request or none
            self.stacked = bool(np.bincount(self.rank, minlength=self.ranks).max() > 1)
        return total, finished
