"""The global scheduler's routing policies: which decode instance reserves KV, which prefill instance computes.

Ties break on the lowest instance index, so routing is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.sim.decode import DecodeInstance
from harness.sim.prefill import PrefillInstance


class Router:
    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._next_prefill = 0
        self._next_decode = 0

    def decode(self, instances: Sequence[DecodeInstance], kv_tokens: int) -> DecodeInstance | None:
        """A decode instance with room for the request's KV, or None (the request waits)."""
        if self.policy == "round-robin":
            n = len(instances)
            for k in range(n):
                inst = instances[(self._next_decode + k) % n]
                if inst.fits(kv_tokens):
                    self._next_decode = (inst.index + 1) % n
                    return inst
            return None
        # Least loaded by requests in flight; KV locality does not matter for decode.
        best = None
        for inst in instances:
            if inst.fits(kv_tokens) and (best is None or inst.reserved_requests < best.reserved_requests):
                best = inst
        return best

    def prefill(self, instances: Sequence[PrefillInstance], new_tokens: Sequence[int]) -> PrefillInstance:
        """new_tokens[i]: tokens the request would compute on instance i after its cache hits there."""
        if self.policy == "round-robin":
            inst = instances[self._next_prefill]
            self._next_prefill = (self._next_prefill + 1) % len(instances)
            return inst
        if self.policy == "least-loaded":
            return min(instances, key=lambda inst: inst.load_tokens)
        # cache-aware: least work including this request, so locality wins unless that instance is backed up
        # (Mooncake's and Dynamo's KV-aware routers weigh cache overlap against load the same way).
        return min(instances, key=lambda inst: inst.load_tokens + new_tokens[inst.index])
