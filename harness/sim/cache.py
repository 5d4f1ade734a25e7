"""The context cache: prefix blocks in a DRAM tier with LRU eviction over an optional (inclusive) SSD tier.

Scopes: "pool" is one store every prefill instance reaches at one cost (CloudMatrix384's EMS over UB);
"sharded" gives each prefill instance's nodes a shard, a block lives in the shard that wrote it and other
instances read it remotely (GPU host DRAM over RDMA); "local" lets an instance use only its own shard.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass
class Match:
    """How a request's prompt prefix is found in the cache, in blocks, for one prefill instance."""

    local: int = 0     # DRAM blocks of this instance's shard (or of the pool)
    remote: int = 0    # DRAM blocks of another shard
    ssd: int = 0       # SSD-tier blocks

    @property
    def blocks(self) -> int:
        return self.local + self.remote + self.ssd


class ContextCache:
    def __init__(self, scope: str, shards: int, shard_dram_bytes: int, shard_ssd_bytes: int, block_bytes: int) -> None:
        self.scope = scope
        self.shards = 1 if scope == "pool" else shards
        self.dram_cap = shard_dram_bytes // max(block_bytes, 1)   # blocks per shard
        self.ssd_cap = shard_ssd_bytes // max(block_bytes, 1)
        self.dram: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(self.shards)]
        self.ssd: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(self.shards)]
        self.home: dict[int, int] = {}  # sharded scope: block -> the one shard holding it (DRAM or SSD)

    @property
    def enabled(self) -> bool:
        return self.dram_cap > 0

    def _fixed_shard(self, instance: int) -> int | None:
        """The shard every block of `instance` lives in, or None when each block has its own home (sharded).
        Resolved once per call, outside the per-block loops (they run for every routing and lookup)."""
        if self.scope == "pool":
            return 0
        if self.scope == "local":
            return instance
        return None

    def match(self, blocks: np.ndarray, instance: int) -> Match:
        """The longest cached prefix of `blocks` as seen from `instance` (no LRU update)."""
        m = Match()
        if not self.enabled:
            return m
        fixed, home, pool = self._fixed_shard(instance), self.home, self.scope == "pool"
        for b in blocks.tolist():
            shard = fixed if fixed is not None else home.get(b)
            if shard is None:
                break
            if b in self.dram[shard]:
                if shard == instance or pool:
                    m.local += 1
                else:
                    m.remote += 1
            elif b in self.ssd[shard]:
                m.ssd += 1
            else:
                break
        return m

    def fetch(self, blocks: np.ndarray, instance: int) -> Match:
        """Match, then mark the hit blocks recently used and promote SSD hits into DRAM."""
        m = self.match(blocks, instance)
        fixed, home = self._fixed_shard(instance), self.home
        for b in blocks[: m.blocks].tolist():
            shard = fixed if fixed is not None else home[b]
            dram = self.dram[shard]
            if b in dram:
                dram.move_to_end(b)
            else:
                self.ssd[shard].move_to_end(b)
                self._put_dram(shard, b)
        return m

    def insert(self, blocks: list[int], instance: int) -> None:
        """Write-back finished: the blocks become readable (DRAM, and SSD too: every write goes to both tiers)."""
        if not self.enabled:
            return
        fixed, home = self._fixed_shard(instance), self.home
        for b in blocks:
            shard = fixed if fixed is not None else home.get(b)
            if shard is None:          # sharded, a new block: it lives where it was written
                shard = instance
                self.home[b] = shard
            if self.ssd_cap > 0:
                ssd = self.ssd[shard]
                if b in ssd:
                    ssd.move_to_end(b)
                else:
                    ssd[b] = None
                    if len(ssd) > self.ssd_cap:
                        old, _ = ssd.popitem(last=False)
                        self._forget(old, shard)
            dram = self.dram[shard]
            if b in dram:
                dram.move_to_end(b)
            else:
                self._put_dram(shard, b)

    def _put_dram(self, shard: int, block: int) -> None:
        dram = self.dram[shard]
        dram[block] = None
        if len(dram) > self.dram_cap:
            old, _ = dram.popitem(last=False)
            self._forget(old, shard)

    def _forget(self, block: int, shard: int) -> None:
        if self.scope == "sharded" and block not in self.dram[shard] and block not in self.ssd[shard]:
            self.home.pop(block, None)
