"""The op graph every importer produces: GPU ops on streams, with work estimates and dependencies.

Stream semantics are CUDA's: ops on one stream run in list order (FIFO); `deps` adds cross-stream (or any)
dependencies by op index. Recorded times are kept when the source is a measured trace, so a replay can be
checked against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CATEGORIES = (
    "gemm", "grouped_gemm", "attention", "moe_dispatch", "moe_combine", "all_reduce", "all_gather",
    "all_to_all", "reduce_scatter", "send_recv", "norm", "elementwise", "copy", "other",
)
COMM_CATEGORIES = frozenset({"moe_dispatch", "moe_combine", "all_reduce", "all_gather", "all_to_all",
                             "reduce_scatter", "send_recv"})


@dataclass(slots=True)
class Op:
    """One GPU op. Times in seconds; work in FLOPs and bytes (0 where not known)."""

    name: str
    stream: str
    duration_s: float
    category: str = "other"
    start_s: float | None = None  # recorded start, relative to the trace's first op; None for synthetic graphs
    deps: list[int] = field(default_factory=list)
    flops: float = 0.0
    bytes_moved: float = 0.0
    bytes_sent: float = 0.0
    group_ranks: int = 0  # communication group size, where known
    annotation: str = ""  # innermost enclosing user annotation (e.g. "attn(F)")
    layer: int = -1  # index of that annotation's occurrence, where annotations repeat per layer
    collective: str = ""  # the collective a communication kernel ran, where the trace names it (Kineto)
    classified: bool = True  # False: no rule matched, category is the fallback "other"
    # End of the CPU launch call (cudaLaunchKernel etc.) relative to the trace's first op: the op cannot start
    # before it. None where the trace records no launch (synthetic graphs, Chakra, launch-less events).
    release_s: float | None = None
    # Fraction of the chip's compute units the kernel ran on, as recorded (Kineto: grid blocks per SM below 1, e.g.
    # a persistent GEMM on 112 of 132 SMs while DeepEP's kernels hold 20; a kernel filling the chip gets what the
    # partial-grid kernels beside it on other streams leave). 1.0 where unknown or alone on the chip.
    sm_share: float = 1.0
    # What a cost model needs beyond flops and bytes, where the trace states it (an exported step graph does):
    gemm: tuple[float, float, float, float] | None = None  # (m, n, k, groups)
    precision: str | None = None  # of a GEMM, attention core or MoE message
    rows: float | None = None  # element-wise ops: the token rows worked on in parallel
    kernel: str | None = None  # element-wise ops: the measured kernel kind it moves bytes like (norm, quant, rope, ...)
    moe: dict[str, Any] | None = None  # MoE dispatch/combine: tokens (per rank), ep, kernel, shared_expert_messages


@dataclass(slots=True)
class OpGraph:
    ops: list[Op]
    meta: dict[str, Any] = field(default_factory=dict)

    def streams(self) -> list[str]:
        return sorted({op.stream for op in self.ops}, key=stream_key)

    def recorded_span_s(self) -> float | None:
        if not self.ops or any(op.start_s is None for op in self.ops):
            return None
        return max(op.start_s + op.duration_s for op in self.ops) - min(op.start_s for op in self.ops)


def stream_key(stream: str) -> tuple[int, str]:
    """Numbers in numeric order, then names."""
    return (0, f"{int(stream):012d}") if stream.lstrip("-").isdigit() else (1, stream)
