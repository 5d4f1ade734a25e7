"""Re-time an op graph on a backend: each op's work, then its time from the backend's cost model.

Work per op, best source first (the per-op source is counted in `work_sources`):
1. `trace`: what the trace states (matmul shapes of the launching CPU op, NCCL message sizes, copy bytes);
2. `annotations+llm`: a work table (harness.ops.worktable, models/kernels/work/) derives it from the op's
   annotation, its kernel name and the LLM spec;
3. `source-rate`: the work the source backend's cost model needs to take the recorded time (the cost
   functions are monotone in work, so it is found by bisection); the op is then timed on the target with
   that work. On the source this reproduces the recorded time, so these ops are left out of MAPE;
4. `recorded`: ops with no cost model (category "other", unclassified kernels) keep their recorded time.

All hardware numbers come from the cost model and its spec files (harness.cost / harness.hardware): this
module holds none. `CostAdapter` is the only place that calls the cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from harness.cost import (attention_time_s, bulk_all_to_all_time_s, collective_time_s, dispatch_time_s, gemm_time_s,
                          memory_time_s, transfer_time_s)
from harness.errors import InputError
from harness.hardware import Hardware, load_hardware
from harness.llm import BYTES, LLM, load_llm
from harness.ops.graph import COMM_CATEGORIES, Op, OpGraph
from harness.ops.worktable import SOURCE_RATE, OpWork, WorkTable, assign

COMPUTE = frozenset({"gemm", "grouped_gemm", "attention"})
HOST_COPY_PATH = {"copy_h2d": lambda hw: (hw.host_read_bytes_per_s, hw.host_latency_s),
                  "copy_d2h": lambda hw: (hw.host_write_bytes_per_s, hw.host_write_latency_s)}
MEMORY = frozenset({"norm", "elementwise", "copy"})


@dataclass(frozen=True, slots=True)
class Work:
    flops: float = 0.0
    bytes_moved: float = 0.0
    bytes_sent: float = 0.0
    ranks: int = 0
    shape: tuple[float, float, float, float] | None = None  # GEMM (m, n, k, groups)
    precision: str | None = None
    moe: tuple[str, float, int] | None = None  # (dispatch | combine, tokens per rank, ep)
    compute_share: float = 1.0  # fraction of the chip's compute units the op gets (recorded on the source)
    rows: float | None = None  # element-wise: token rows in parallel (None: unknown, no per-row cap)
    kernel: str | None = None  # element-wise: the measured kernel kind (None: the op's category)
    moe_kernel: str = "bulk"  # MoE dispatch/combine: "bulk" (prefill) or "low_latency" (decode)
    shared_expert_messages: bool = False  # low-latency MoE: one more message per token, to a shared-expert rank


class CostAdapter:
    """Maps an op category and its work to the cost model's pure functions (harness.cost)."""

    def __init__(self, llm: LLM | None = None) -> None:
        self.llm = llm

    def load(self, name: str) -> Hardware:
        return load_hardware(name)

    def time_s(self, category: str, work: Work, hw: Hardware) -> float:
        if category in ("gemm", "grouped_gemm"):
            if work.shape is not None:
                m, n, k, g = work.shape
                return float(gemm_time_s(m, n, k, precision_on(hw, work.precision), hw, int(g),
                                         compute_share=work.compute_share))
            # Only FLOPs known (a matmul's shape reduced to its work, or a source-rate inversion): a cube.
            edge = max(work.flops / 2.0, 1.0) ** (1.0 / 3.0)
            return float(gemm_time_s(edge, edge, edge, precision_on(hw, work.precision), hw,
                                     compute_share=work.compute_share))
        if category == "attention":
            return float(attention_time_s(work.flops, work.bytes_moved, hw, precision_on(hw, work.precision or "bf16"),
                                          compute_share=work.compute_share))
        if category in MEMORY and work.kernel in HOST_COPY_PATH:  # over the host link (PCIe; UB to the CPU)
            bandwidth, latency = HOST_COPY_PATH[work.kernel](hw)
            return float(transfer_time_s(work.bytes_moved, bandwidth, latency))
        if category in MEMORY:
            return float(memory_time_s(work.bytes_moved, hw, work.kernel or category,
                                       np.inf if work.rows is None else work.rows))
        if category in COMM_CATEGORIES:
            if work.moe is not None and self.llm is not None:
                op, tokens, ep = work.moe
                if work.moe_kernel == "low_latency":
                    return float(dispatch_time_s(tokens, ep, hw, self.llm, op, work.precision or "bf16",
                                                 work.shared_expert_messages))
                return float(bulk_all_to_all_time_s(tokens, ep, hw, self.llm, op, work.precision or "bf16")[0])
            kind = "all_to_all" if category in ("moe_dispatch", "moe_combine") else category
            return float(collective_time_s(kind, work.bytes_sent, max(work.ranks, 2), hw))
        raise KeyError(category)


def precision_on(hw: Hardware, precision: str | None) -> str:
    """The precision a GEMM runs at on `hw`: as recorded where the chip has it, else the chip's default
    precision of the same width (FP8 runs as INT8 on a chip without FP8, e.g. Ascend 910C), else BF16."""
    have = {p for p, _ in hw.peak_flops}
    if precision is None or precision in have:
        return precision or hw.default_precision
    if BYTES.get(hw.default_precision) == BYTES.get(precision):
        return hw.default_precision
    return "bf16" if "bf16" in have else hw.default_precision


def _axis_work(category: str, x: float, ranks: int, precision: str | None, share: float = 1.0) -> Work:
    if category in COMPUTE:
        return Work(flops=x, precision=precision, compute_share=share)
    if category in MEMORY:
        return Work(bytes_moved=x)
    return Work(bytes_sent=x, ranks=ranks)


def invert(time_of, target_s: float, hi: float = 1.0) -> float:
    """Work x with time_of(x) == target_s for a non-decreasing time_of; 0 if even no work takes longer.
    Bracketed, then narrowed by the Illinois variant of regula falsi (cost curves are near-linear in work, so it
    needs a handful of evaluations where halving needs thirty), halving whenever a step would not shrink it."""
    f_lo = time_of(0.0) - target_s
    if f_lo >= 0:
        return 0.0
    lo = 0.0
    f_hi = time_of(hi) - target_s
    while f_hi < 0:
        lo, f_lo = hi, f_hi
        hi *= 4.0
        if hi > 1e30:
            return hi
        f_hi = time_of(hi) - target_s
    side = 0
    for _ in range(100):
        if hi - lo <= 1e-9 * hi:
            break
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
        if not lo < mid < hi:
            mid = 0.5 * (lo + hi)
        f_mid = time_of(mid) - target_s
        if f_mid == 0:
            return mid
        if f_mid < 0:
            lo, f_lo = mid, f_mid
            f_hi = f_hi / 2 if side == -1 else f_hi  # the same end kept twice: halve its weight (Illinois)
            side = -1
        else:
            hi, f_hi = mid, f_mid
            f_lo = f_lo / 2 if side == 1 else f_lo
            side = 1
    return 0.5 * (lo + hi)


@dataclass
class Retimed:
    source_s: np.ndarray | None
    target_s: np.ndarray | None
    independent: np.ndarray  # ops whose work did not come from their recorded time
    categories: list[str]
    work_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    fallback_reasons: dict[str, int] = field(default_factory=dict)  # why table ops fell back to source-rate

    def mape_per_category(self, recorded_s: np.ndarray) -> dict[str, dict]:
        """Mean |predicted - recorded| / recorded on the source, per category, over independent ops; with the
        summed predicted and recorded time of those ops (a bias the mean of absolute errors hides)."""
        if self.source_s is None:
            return {}
        out = {}
        cats = np.array(self.categories)
        ok = self.independent & (recorded_s > 0)
        for cat in sorted(set(self.categories)):
            m = ok & (cats == cat)
            if m.any():
                err = np.abs(self.source_s[m] - recorded_s[m]) / recorded_s[m]
                out[cat] = {"mape": float(err.mean()), "ops": int(m.sum()),
                            "predicted_s": float(self.source_s[m].sum()), "recorded_s": float(recorded_s[m].sum())}
        return out


def retime(graph: OpGraph, source_hw: str | None, target_hw: str | None, adapter=None,
           table: WorkTable | None = None) -> Retimed:
    # The LLM prices MoE messages: the work table's, else the one an exported step graph names
    adapter = adapter or CostAdapter(table.llm if table else _named_llm(graph))
    src = adapter.load(source_hw) if source_hw else None
    tgt = adapter.load(target_hw) if target_hw else None
    n = len(graph.ops)
    recorded = np.array([op.duration_s for op in graph.ops])
    source_s = recorded.copy() if src is not None else None
    target_s = recorded.copy() if tgt is not None else None
    independent = np.zeros(n, dtype=bool)
    sources: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    table_work = assign(table, graph) if table is not None else [None] * n
    inverted: dict[tuple, float] = {}  # recorded durations repeat (integer microseconds): invert each once
    for i, op in enumerate(graph.ops):
        kind, work = _work_of(op, table_work[i], src is not None)
        if table_work[i] is not None and table_work[i].kind == SOURCE_RATE:
            reasons[table_work[i].reason] = reasons.get(table_work[i].reason, 0) + 1
        sources.setdefault(op.category, {}).setdefault(kind, 0)
        sources[op.category][kind] += 1
        if kind == "recorded":
            continue
        # The source ran the op on the share of the chip the trace records; the target gets the whole chip (its
        # communication runs on engines of its own, e.g. UB DMA / SDMA on CloudMatrix384).
        share = op.sm_share if op.category in COMPUTE else 1.0
        if kind == SOURCE_RATE:
            precision = table_work[i].precision if table_work[i] is not None else None
            key = (op.category, op.duration_s, op.group_ranks, precision, share)
            if key not in inverted:
                inverted[key] = invert(lambda w, op=op: adapter.time_s(
                    op.category, _axis_work(op.category, w, op.group_ranks, precision, share), src), op.duration_s)
            x = inverted[key]
            work = _axis_work(op.category, x, op.group_ranks, precision)
        else:
            independent[i] = True
            if src is not None:
                source_s[i] = adapter.time_s(op.category, replace(work, compute_share=share), src)
        if tgt is not None:
            target_s[i] = adapter.time_s(op.category, work, tgt)
    return Retimed(source_s, target_s, independent, [op.category for op in graph.ops], sources, reasons)


def _named_llm(graph: OpGraph) -> LLM | None:
    """The LLM an exported step graph names in its meta (it prices MoE messages), if any."""
    named = graph.meta.get("llm")
    if not isinstance(named, str):
        return None
    try:
        return load_llm(named)
    except InputError as exc:
        raise InputError(exc.detail, path=graph.meta.get("source"), where="meta", field="llm") from None


def _work_of(op: Op, tw: OpWork | None, have_source: bool) -> tuple[str, Work | None]:
    if op.category == "other" or not op.classified:
        return "recorded", None
    known = (op.flops if op.category in COMPUTE else op.bytes_moved if op.category in MEMORY else op.bytes_sent)
    if known > 0:
        moe = op.moe if op.category in ("moe_dispatch", "moe_combine") else None
        return "trace", Work(op.flops, op.bytes_moved, op.bytes_sent, op.group_ranks, shape=op.gemm,
                             precision=op.precision, rows=op.rows, kernel=op.kernel,
                             moe=(op.category.removeprefix("moe_"), moe["tokens"], moe["ep"]) if moe else None,
                             moe_kernel=moe["kernel"] if moe else "bulk",
                             shared_expert_messages=bool(moe and moe.get("shared_expert_messages")))
    if tw is not None and tw.kind != SOURCE_RATE and _fits(op.category, tw.kind):
        return "annotations+llm", Work(flops=tw.flops, bytes_moved=tw.bytes_moved, shape=tw.gemm,
                                       precision=tw.precision, moe=tw.moe)
    return (SOURCE_RATE, None) if have_source else ("recorded", None)


def _fits(category: str, kind: str) -> bool:
    """A table's work kind must suit the op's category (a rule matching the wrong kernel is not used)."""
    return {"gemm": category in ("gemm", "grouped_gemm"), "attention": category == "attention",
            "memory": category in MEMORY, "moe": category in ("moe_dispatch", "moe_combine")}.get(kind, False)
