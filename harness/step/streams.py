"""Which execution resource an op runs on, and the share of the chip's matrix throughput that resource has.

split-cores (CloudMatrix decode): attention stream and MoE stream on disjoint cube-core sets (16 + 8 of 24).
comm-stream (GPUs): compute on one stream, all-to-all on another (RDMA, or SMs reserved for it).
engines (CloudMatrix prefill): cube cores for GEMMs and attention, vector cores for element-wise work, SDMA for
the all-to-all. One microbatch: everything in order on one stream at full share."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.step.deployment import Deployment

_VECTOR = ("norm", "elementwise", "copy")


def stream_of(dep: Deployment, role: str, category: str) -> tuple[str, float]:
    if dep.microbatches == 1:
        return "main", 1.0
    if dep.overlap == "split-cores":
        if role == "attn":
            return "attention", dep.stream_share_attention
        return "moe", dep.stream_share_moe
    if dep.overlap == "comm-stream":
        return ("comm", 1.0) if role == "comm" else ("compute", 1.0 - dep.comm_compute_share)
    if role == "comm":
        return "sdma", 1.0
    return ("vector", 1.0) if category in _VECTOR else ("cube", 1.0)
