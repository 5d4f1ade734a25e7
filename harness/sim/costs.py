"""What the serving simulator asks of a backend: durations and capacities, never hardware details.

The cost-model side (`harness/step/serving.py`) implements this for a (prefill deployment, decode deployment) pair
of a hardware backend; the event loop only ever talks to this protocol.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ServingCosts(Protocol):
    """Durations (seconds) and capacities for one backend's prefill and decode instances."""

    backend: str                         # hardware spec name, e.g. "cloudmatrix384", "h100-ib"
    prefill_chips: int                   # chips in one prefill instance
    decode_chips: int                    # chips in one decode instance
    prefill_token_budget_per_chip: int   # max new tokens per chip in one prefill step (paper: 16,384)
    prefill_chunk_tokens: int | None     # longest prompt piece per step when the deployment chunks, else None
    decode_batch_cap_per_chip: int       # max concurrent decode requests per chip
    decode_kv_capacity_tokens: int       # KV tokens one decode instance can hold (all chips)
    decode_dp_ranks: int                 # attention data-parallel ranks of one decode instance (each holds its
                                         # requests' KV; 1 where attention is not data-parallel)
    prefill_kv_capacity_tokens: int      # KV tokens one prefill instance can hold while computing
    max_context_tokens: int              # longest input + output the LLM accepts
    mtp_draft_tokens: int                # speculative tokens per decode step (0: no MTP)
    mtp_accept: float                    # probability each draft token is accepted
    cost_per_chip_hour_usd: float
    kv_bytes_per_token: int
    cache_pool_bytes: int                # DRAM context-cache capacity: the whole pool where access is uniform,
                                         # else one prefill instance's nodes (its local shard)
    cache_ssd_bytes: int                 # SSD tier behind it, counted the same way (0: none)
    cache_uniform_access: bool           # True: any prefill instance reads any block at one cost (UB-pooled
                                         # DRAM); False: a block is local to one node, remote reads pay more

    def prefill_step_s(self, new_tokens: np.ndarray, cached_tokens: np.ndarray) -> float:
        """One prefill step of one instance over a batch of prompt pieces.

        new_tokens[i]: tokens computed for piece i; cached_tokens[i]: tokens of that request already in KV (a
        cache hit or an earlier chunk) that attention still reads. The simulator passes plain lists of ints
        (a step is usually one piece, where numpy's per-call cost would dominate)."""
        ...

    def decode_step_s(self, batch_per_chip: float, mean_kv_len: float) -> float:
        """One decode step (all chips of an instance in lockstep) at this batch per chip and mean KV length."""
        ...

    def kv_transfer_s(self, tokens: int) -> float:
        """Move one request's KV (`tokens` long) from its prefill instance to its decode instance.

        Over one chip's link of the prefill-to-decode plane: the simulator runs up to `prefill_chips` transfers
        from one instance at once, and queues the rest."""
        ...

    def prefill_read_s(self, local: float, remote: float, ssd: float, largest: tuple[float, float, float]) -> float:
        """A prefill step's cached prefixes: `local` / `remote` tokens from DRAM (the reader's node or another),
        `ssd` from the SSD tier; `largest` the longest single prefix's (local, remote, SSD) tokens. A prefix lands
        in one attention group, so the step waits for the group that reads the most."""
        ...

    def cache_write_s(self, tokens: int, remote: bool) -> float:
        """Write `tokens` of new prefix KV back to the context-cache pool (asynchronous to compute)."""
        ...

    def step_breakdown(self, phase: str, **step: float) -> dict[str, float]:
        """Busy seconds per op category (the step model's: "gemm", "grouped_gemm", "attention", "moe_dispatch",
        "moe_combine", ..., "other") of one step, for the report; streams overlap, so they may sum to more than
        the step time. Phase "prefill" with step=dict(tokens=, cached_tokens=, requests=) (a batch of `requests` equal
        pieces), phase "decode" with step=dict(batch_per_chip=, mean_kv_len=)."""
        ...
