"""How long one instance of a deployment takes to load its weights (cold start, model switch).

From the object store: the instance pulls one copy of the checkpoint through the bucket, shared by every instance
loading at once; its shards then fan out over the scale-up fabric (seconds at most: left out). From the DRAM memory
pool (EMS on CloudMatrix384; host DRAM, e.g. the page cache, on GPU nodes): every rank pulls its own weights over
its host link at once, so the time is one rank's share, replicated attention included."""

from __future__ import annotations

from harness.cost.comm import host_path, transfer_time_s
from harness.step.deployment import Deployment
from harness.step.memory import model_bytes, weights_per_rank_bytes


def object_store_load_s(dep: Deployment, instances: int = 1) -> float:
    """`instances` instances loading at once from one bucket, each its own copy."""
    return model_bytes(dep.llm, dep.precision) * instances / dep.hardware.object_store_bytes_per_s


def pool_load_s(dep: Deployment) -> float:
    bw, lat = host_path(dep.hardware, "read", False)
    return float(transfer_time_s(weights_per_rank_bytes(dep), bw, lat))
