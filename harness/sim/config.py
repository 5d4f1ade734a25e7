"""What a run of the simulator is configured with: instance counts, policies, and capacity overrides."""

from __future__ import annotations

from dataclasses import dataclass

from harness.sim.costs import ServingCosts

ROUTING_POLICIES = ("least-loaded", "cache-aware", "round-robin")
CACHE_SCOPES = ("pool", "sharded", "local")
DP_BALANCE = ("least-kv", "perfect")   # decode's data-parallel attention: requests placed per rank, or ideal split


@dataclass(frozen=True)
class SimConfig:
    """Deployment shape and policies for one simulated backend. None means: take it from the costs object."""

    prefill_instances: int = 1
    decode_instances: int = 1
    routing: str | None = None                   # None: least-loaded where cache access is uniform, else cache-aware
    cache_scope: str | None = None               # pool: one shared store; sharded: per prefill instance, remote
                                                 # reads allowed; local: per instance only. None: from the backend
    token_budget_per_chip: int | None = None     # prefill new tokens per chip per step
    chunk_tokens: int | None = None              # chunk long prompts into pieces of this many tokens (0: never)
    batch_cap_per_chip: int | None = None        # decode concurrent requests per chip
    cache_pool_bytes: int | None = None          # DRAM context cache (0: none), as ServingCosts.cache_pool_bytes
    cache_ssd_bytes: int | None = None           # SSD tier (0: none), as ServingCosts.cache_ssd_bytes
    dp_balance: str = "least-kv"                 # least-kv: each decode request lives on one DP rank (the one with
                                                 # least KV when it joins) and a step waits for the busiest rank;
                                                 # perfect: attention work split evenly over the ranks
    block_size: int = 512                        # tokens per block when blocks are derived from sessions
    seed: int = 0
    record_steps: bool = False                   # keep every step's interval and KV use (tests, debugging)

    def __post_init__(self) -> None:
        if self.prefill_instances < 1 or self.decode_instances < 1:
            raise ValueError("instance counts must be at least 1")
        if self.routing is not None and self.routing not in ROUTING_POLICIES:
            raise ValueError(f"routing must be one of {', '.join(ROUTING_POLICIES)}")
        if self.cache_scope is not None and self.cache_scope not in CACHE_SCOPES:
            raise ValueError(f"cache scope must be one of {', '.join(CACHE_SCOPES)}")
        if self.dp_balance not in DP_BALANCE:
            raise ValueError(f"DP balance must be one of {', '.join(DP_BALANCE)}")
        if self.block_size < 1:
            raise ValueError("block size must be at least 1")


@dataclass(frozen=True)
class Capacities:
    """The limits the scheduler enforces, resolved from the costs object and the config's overrides."""

    prefill_chips: int
    decode_chips: int
    prefill_budget_tokens: int        # per instance per step
    chunk_tokens: int | None
    prefill_kv_tokens: int
    decode_batch_cap: int             # per instance
    decode_kv_tokens: int
    decode_dp_ranks: int              # attention DP ranks per decode instance the scheduler places requests on
    max_context_tokens: int
    mtp_draft_tokens: int
    mtp_accept: float
    cache_shard_bytes: int            # DRAM per cache shard (the whole pool when the scope is "pool")
    cache_ssd_shard_bytes: int
    cache_scope: str
    routing: str


def resolve(costs: ServingCosts, config: SimConfig) -> Capacities:
    """Apply the config's overrides to the backend's capacities."""
    def pick(override, default):
        return default if override is None else override

    uniform = bool(costs.cache_uniform_access)
    chunk = pick(config.chunk_tokens, costs.prefill_chunk_tokens)
    scope = pick(config.cache_scope, "pool" if uniform else "sharded")
    # A uniform pool's capacity is the whole pool; a node-local one's is one prefill instance's nodes.
    n = config.prefill_instances

    def shard(total_or_per_instance: int) -> int:
        if uniform:
            return total_or_per_instance if scope == "pool" else total_or_per_instance // n
        return total_or_per_instance * n if scope == "pool" else total_or_per_instance

    return Capacities(
        prefill_chips=int(costs.prefill_chips),
        decode_chips=int(costs.decode_chips),
        prefill_budget_tokens=int(pick(config.token_budget_per_chip, costs.prefill_token_budget_per_chip))
        * int(costs.prefill_chips),
        chunk_tokens=int(chunk) if chunk else None,
        prefill_kv_tokens=int(costs.prefill_kv_capacity_tokens),
        decode_batch_cap=int(pick(config.batch_cap_per_chip, costs.decode_batch_cap_per_chip))
        * int(costs.decode_chips),
        decode_kv_tokens=int(costs.decode_kv_capacity_tokens),
        decode_dp_ranks=int(costs.decode_dp_ranks) if config.dp_balance == "least-kv" else 1,
        max_context_tokens=int(costs.max_context_tokens),
        mtp_draft_tokens=int(costs.mtp_draft_tokens),
        mtp_accept=float(costs.mtp_accept),
        cache_shard_bytes=shard(int(pick(config.cache_pool_bytes, costs.cache_pool_bytes))),
        cache_ssd_shard_bytes=shard(int(pick(config.cache_ssd_bytes, costs.cache_ssd_bytes))),
        cache_scope=scope,
        routing=pick(config.routing, "least-loaded" if uniform else "cache-aware"),
    )
