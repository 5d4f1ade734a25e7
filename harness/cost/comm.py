"""Communication and data-movement costs: pure functions of (message, hardware).

dispatch_time_s(tokens, ep, hw, llm, op, precision, shared_dedicated=False) -> seconds
    MoE dispatch ('dispatch') or combine ('combine') with low-latency kernels (decode): one message per (token,
    expert) over the fabric's bandwidth (messages to the sender's own node over NVLink, in parallel, for kernels with
    that path), plus the kernel's overhead at that EP size, fitted per kernel on the published 128-token table
    (models/calibration/dispatch_combine.toml).
bulk_all_to_all_time_s(tokens, ep, hw, llm, op, precision) -> seconds
    prefill dispatch/combine with bulk kernels (SDMA on CM384; DeepEP normal kernels over RDMA on GPUs).
collective_time_s(kind, bytes_per_rank, ranks, hw) -> seconds
    kind in all_reduce, all_gather, all_to_all, reduce_scatter, send_recv. Inside a GPU node: the measured NCCL
    curves (send_recv too where measured); CM384 UB (and anything across nodes): alpha-beta from the fabric's
    measured bandwidth and latency.
    Alpha-beta fabrics use their write figures, same-node ones when every rank is in one node.
transfer_time_s(nbytes, bytes_per_s, latency_s) -> seconds for one point-to-point copy.
host_path(hw, op, remote) -> (bytes/s, latency s) to the context-cache DRAM ("read" / "write").
ssd_read_s(nbytes, hw) -> seconds from the SSD tier into a rank.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from harness.cost.calibration import dispatch_fit, distinct_ranks, nccl_curve, table, wire_time_s
from harness.hardware import Fabric, Hardware
from harness.hardware.units import parse_quantity
from harness.llm import BYTES, LLM

COLLECTIVES = ("all_reduce", "all_gather", "all_to_all", "reduce_scatter", "send_recv", "moe_dispatch",
               "moe_combine")


def message_bytes_per_token(llm: LLM, hw: Hardware, op: str, precision: str) -> float:
    """Bytes one token sends to one destination: 8-bit activations plus the scale overhead the fabric's kernel
    uses (dispatch), BF16 expert outputs (combine)."""
    p = table("dispatch_combine", hw.moe_low_latency_table).params
    if op == "combine":
        return llm.hidden * 2.0
    if BYTES[precision] == 1:
        return llm.hidden + (p["dispatch_bytes_per_token"] - 7168)  # tables are for hidden 7,168
    return llm.hidden * 2.0


def messages_per_token(llm: LLM, shared_dedicated: bool) -> float:
    """Messages one token sends: one per top-k expert (the low-latency kernels do not merge two experts on one
    rank), plus one to its shared expert when that lives on its own ranks."""
    return llm.top_k + (1.0 if shared_dedicated else 0.0)


def _wire_s(sent, ep: int, hw: Hardware):
    """The messages' time on the fabrics the kernel sends over, at this spec's bandwidths (so --set on a fabric's
    bandwidth scales it): its main fabric, and the in-node one (scale_up) for messages to the sender's own node
    when the kernel has that path."""
    p = table("dispatch_combine", hw.moe_low_latency_table).params
    fabric = hw.scale_up if p["fabric"] == "scale_up" else hw.scale_out
    local = hw.scale_up.bandwidth_bytes_per_s if p.get("local_fabric") == "scale_up" else None
    return wire_time_s(sent, ep, hw.ranks_per_node, fabric.bandwidth_bytes_per_s, local)


def dispatch_time_s(tokens, ep: int, hw: Hardware, llm: LLM, op: str, precision: str,
                    shared_dedicated: bool = False):
    """The kernel's overhead at this EP size (fitted on the 128-token table) plus the bytes over the wire."""
    fit = dispatch_fit(hw.moe_low_latency_table, op)
    t = np.asarray(tokens, float)
    overhead = fit.overhead_s(distinct_ranks(llm.routed_experts, llm.top_k, ep))
    sent = dispatch_bytes(t, hw, llm, op, precision, shared_dedicated)
    return np.where(t > 0, overhead + _wire_s(sent, ep, hw), 0.0)


def dispatch_bytes(tokens, hw: Hardware, llm: LLM, op: str, precision: str, shared_dedicated: bool = False):
    t = np.asarray(tokens, float)
    return t * messages_per_token(llm, shared_dedicated) * message_bytes_per_token(llm, hw, op, precision)


def bulk_all_to_all_time_s(tokens, ep: int, hw: Hardware, llm: LLM, op: str, precision: str):
    """Bulk dispatch/combine: bytes leaving the rank (or node, when the kernel de-duplicates per node) over the
    fabric's bandwidth times the kernel's measured efficiency on it, plus one fabric latency. Node-scoped kernels
    (DeepEP's normal kernels) send to peers in the sender's own node over NVLink at once, at the scale-up
    bandwidth (DeepEP measures 153-158 GB/s inside an H800 node, the ~160 GB/s NVLink achieves); the slower path
    sets the time (inside one node, NVLink alone)."""
    t = np.asarray(tokens, float)
    msg = message_bytes_per_token(llm, hw, op, precision)
    d = distinct_ranks(llm.routed_experts, llm.top_k, ep)
    if hw.moe_bulk_scope == "node":
        nodes = -(-ep // hw.ranks_per_node)
        units = distinct_ranks(llm.routed_experts, llm.top_k, nodes) if nodes > 1 else 0.0
        sent = t * units * (nodes - 1) / nodes * msg
        local = t * d * (min(ep, hw.ranks_per_node) - 1) / ep * msg  # to the other ranks of the sender's node
        fabric = hw.scale_out if nodes > 1 else hw.scale_up
        wire = np.maximum(sent / (hw.scale_out.bandwidth_bytes_per_s * hw.moe_bulk_efficiency),
                          local / hw.scale_up.bandwidth_bytes_per_s)
        return np.where(t > 0, fabric.latency_s + wire, 0.0), sent + local
    sent = t * d * (ep - 1) / ep * msg
    bandwidth = hw.scale_up.bandwidth_bytes_per_s * hw.moe_bulk_efficiency
    return np.where(t > 0, hw.scale_up.latency_s + sent / bandwidth, 0.0), sent


def _bus_factor(kind: str, n: int) -> float:
    return {"all_reduce": 2.0 * (n - 1) / n, "send_recv": 1.0}.get(kind, (n - 1) / n)


def _table_size(kind: str, bytes_per_rank: float, ranks: int) -> float:
    """nccl-tests 'size': the per-rank buffer for all-reduce / all-to-all, the gathered total otherwise."""
    return bytes_per_rank * (ranks if kind in ("all_gather", "reduce_scatter") else 1)


def collective_time_s(kind: str, bytes_per_rank, ranks: int, hw: Hardware):
    """A collective over `ranks` ranks, each contributing `bytes_per_rank` (all-reduce: the buffer size).
    send_recv is one point-to-point copy; moe_dispatch / moe_combine without token counts are costed as the
    all-to-all they are (the step model uses dispatch_time_s, which knows tokens and experts)."""
    if kind not in COLLECTIVES:
        raise ValueError(f"unknown collective {kind!r}; one of {COLLECTIVES}")
    b = np.asarray(bytes_per_rank, float)
    if ranks <= 1:
        return np.zeros_like(b)
    same_node = ranks <= hw.ranks_per_node
    fabric = hw.scale_up if same_node or hw.kind == "supernode" else hw.scale_out
    # collectives write into peers' buffers; a group spanning nodes is paced by its slowest (other-node) peers
    bw, lat = fabric.path("write", same_node)
    if kind == "send_recv" and not _has_curve(fabric.collectives, kind):
        return transfer_time_s(b, bw, lat)
    if kind in ("moe_dispatch", "moe_combine"):
        kind = "all_to_all"
    if fabric.collectives == "alpha-beta":
        # latency-optimal algorithms take log2(n) rounds (recursive doubling, trees; all-reduce: reduce-scatter
        # then all-gather), Thakur, Rabenseifner & Gropp 2005; the bytes follow the bandwidth-optimal bus traffic
        steps = (2.0 if kind == "all_reduce" else 1.0) * math.ceil(math.log2(ranks))
        return steps * lat + _table_size(kind, b, ranks) * _bus_factor(kind, ranks) / bw
    return _nccl_time_s(kind, b, ranks, fabric)


@functools.lru_cache(maxsize=64)
def _has_curve(collectives: str, kind: str) -> bool:
    return collectives != "alpha-beta" and kind in table("nccl", collectives).col("op")


def _nccl_time_s(kind: str, b: np.ndarray, ranks: int, fabric: Fabric):
    t = table("nccl", fabric.collectives)
    op = "all_gather" if kind == "reduce_scatter" else kind  # same bus traffic
    xs, ys = nccl_curve(fabric.collectives, op)
    n0 = t.params["ranks"]
    scale = parse_quantity(t.params["fabric_bandwidth"], "bandwidth") / fabric.bandwidth_bytes_per_s
    size = _table_size(kind, b, ranks) * _bus_factor(kind, ranks) / _bus_factor(kind, n0) * scale
    return np.where(b > 0, interp_measured(xs, ys, size), 0.0)


def interp_measured(sizes: np.ndarray, times: np.ndarray, size):
    """Time at `size` from a measured (size, time) curve: linear between measured sizes, because a collective's
    time is latency + bytes / bandwidth within one protocol regime (log-log interpolation bows above that line:
    +14-19% at 4-16 MiB against Vidur's held-out 8-GPU all-reduce); beyond the largest the last segment's slope
    goes on, below the smallest the latency floor holds."""
    slope_hi = (times[-1] - times[-2]) / (sizes[-1] - sizes[-2])
    x = np.asarray(size, float)
    y = np.interp(x, sizes, times)
    return np.where(x > sizes[-1], times[-1] + slope_hi * (x - sizes[-1]), y)


def host_path(hw: Hardware, op: str, remote: bool) -> tuple[float, float]:
    """(bytes/s, latency s) of one rank reading ("read") or writing ("write") host DRAM of the cache pool.
    A uniform pool (EMS over UB) stripes blocks over every node, so 1 of `nodes` bytes is in the reader's node:
    the bytes share one link (harmonic mix of the two bandwidths) and the latency is the expected one. Otherwise
    `remote` says whether the DRAM is in the reader's node (PCIe) or another (RDMA)."""
    read = op == "read"
    local = (hw.host_read_bytes_per_s if read else hw.host_write_bytes_per_s,
             hw.host_latency_s if read else hw.host_write_latency_s)
    far = (hw.host_remote_read_bytes_per_s if read else hw.host_remote_write_bytes_per_s,
           hw.host_remote_latency_s if read else hw.host_remote_write_latency_s)
    if not hw.host_uniform:
        return far if remote else local
    f = 1.0 / max(hw.chips // hw.chips_per_node, 1)
    return 1.0 / (f / local[0] + (1.0 - f) / far[0]), f * local[1] + (1.0 - f) * far[1]


def ssd_read_s(nbytes: float, hw: Hardware, readers_per_node: int = 1, node_bytes: float | None = None) -> float:
    """Cached KV from the SSD tier, `nbytes` into each of `readers_per_node` ranks of a node at once (or
    `node_bytes` from the node's drives in all): the drives (or the volume's network path) stream into host memory
    while each rank's host path carries its share on, so the slower of the two paces the copy; latencies add."""
    if nbytes <= 0:
        return 0.0
    bw, lat = host_path(hw, "read", False)
    node = nbytes * readers_per_node if node_bytes is None else node_bytes
    return hw.ssd_latency_s + lat + max(node / hw.ssd_read_bytes_per_s, nbytes / bw)


def transfer_time_s(nbytes, bytes_per_s: float, latency_s: float):
    n = np.asarray(nbytes, float)
    return np.where(n > 0, latency_s + n / bytes_per_s, 0.0)
