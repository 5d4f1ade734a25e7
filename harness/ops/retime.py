"""Re-time an op graph on a backend: each op's work, then its time from the backend's cost model.

Work per op, best source first (the per-op source is reported in `work_sources`):
1. `trace`: what the trace states (matmul shapes of the launching CPU op, NCCL message sizes, copy bytes);
2. `source-rate`: the work the source backend's cost model needs to take the recorded time (the cost
   functions are monotone in work, so it is found by bisection); the op is then timed on the target with
   that work. On the source this reproduces the recorded time, so these ops are left out of MAPE;
3. `recorded`: ops with no cost model (category "other", unclassified kernels) keep their recorded time.
(Annotation-plus-LLM-spec estimates are not implemented yet; see the module report.)

All hardware numbers come from the cost model and its spec files (harness.cost / harness.hardware): this
module holds none. `_CostAdapter` is the only place that knows the cost model's function names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from harness.errors import InputError
from harness.ops.graph import COMM_CATEGORIES, Op, OpGraph

COMPUTE = frozenset({"gemm", "grouped_gemm", "attention"})
MEMORY = frozenset({"norm", "elementwise", "copy"})


@dataclass(frozen=True, slots=True)
class Work:
    flops: float = 0.0
    bytes_moved: float = 0.0
    bytes_sent: float = 0.0
    ranks: int = 0


class _CostAdapter:
    """Maps an op category and its work to the cost model's pure functions."""

    def __init__(self) -> None:
        try:
            self.cost = importlib.import_module("harness.cost")
            self.hardware = importlib.import_module("harness.hardware")
        except ImportError as exc:  # pragma: no cover - both packages ship with the harness
            raise InputError(f"the cost model is not available: {exc}") from None
        for module, name in ((self.hardware, "load_hardware"), (self.cost, "gemm_time_s"),
                             (self.cost, "collective_time_s"), (self.cost, "memory_time_s"),
                             (self.cost, "attention_time_s")):
            if not hasattr(module, name):
                raise InputError(f"re-timing needs {module.__name__}.{name}, which this build of the cost "
                                 f"model does not provide yet")

    def load(self, name: str):
        return self.hardware.load_hardware(name)

    def time_s(self, category: str, work: Work, hw) -> float:
        if category in ("gemm", "grouped_gemm"):
            edge = max(work.flops / 2.0, 1.0) ** (1.0 / 3.0)  # shape unknown beyond FLOPs: a cube
            return float(self.cost.gemm_time_s(edge, edge, edge, None, hw))
        if category == "attention":
            return float(self.cost.attention_time_s(work.flops, work.bytes_moved, hw))
        if category in MEMORY:
            return float(self.cost.memory_time_s(work.bytes_moved, hw))
        if category in COMM_CATEGORIES:
            return float(self.cost.collective_time_s(category, work.bytes_sent, max(work.ranks, 2), hw))
        raise KeyError(category)


def _axis_work(category: str, x: float, ranks: int) -> Work:
    if category in COMPUTE:
        return Work(flops=x)
    if category in MEMORY:
        return Work(bytes_moved=x)
    return Work(bytes_sent=x, ranks=ranks)


def invert(time_of, target_s: float, hi: float = 1.0) -> float:
    """Work x with time_of(x) == target_s for a non-decreasing time_of; 0 if even no work takes longer."""
    if target_s <= time_of(0.0):
        return 0.0
    while time_of(hi) < target_s:
        hi *= 4.0
        if hi > 1e30:
            return hi
    lo = 0.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if time_of(mid) < target_s else (lo, mid)
        if hi - lo <= 1e-9 * hi:
            break
    return 0.5 * (lo + hi)


@dataclass
class Retimed:
    source_s: np.ndarray | None
    target_s: np.ndarray | None
    independent: np.ndarray  # ops whose work did not come from their recorded time
    categories: list[str]
    work_sources: dict[str, dict[str, int]] = field(default_factory=dict)

    def mape_per_category(self, recorded_s: np.ndarray) -> dict[str, dict]:
        """Mean |predicted - recorded| / recorded on the source, per category, over independent ops."""
        if self.source_s is None:
            return {}
        out = {}
        cats = np.array(self.categories)
        ok = self.independent & (recorded_s > 0)
        for cat in sorted(set(self.categories)):
            m = ok & (cats == cat)
            if m.any():
                err = np.abs(self.source_s[m] - recorded_s[m]) / recorded_s[m]
                out[cat] = {"mape": float(err.mean()), "ops": int(m.sum())}
        return out


def retime(graph: OpGraph, source_hw: str | None, target_hw: str | None, adapter=None) -> Retimed:
    adapter = adapter or _CostAdapter()
    src = adapter.load(source_hw) if source_hw else None
    tgt = adapter.load(target_hw) if target_hw else None
    n = len(graph.ops)
    recorded = np.array([op.duration_s for op in graph.ops])
    source_s = recorded.copy() if src is not None else None
    target_s = recorded.copy() if tgt is not None else None
    independent = np.zeros(n, dtype=bool)
    sources: dict[str, dict[str, int]] = {}
    for i, op in enumerate(graph.ops):
        kind = _work_source(op, src is not None)
        sources.setdefault(op.category, {}).setdefault(kind, 0)
        sources[op.category][kind] += 1
        if kind == "recorded":
            continue
        if kind == "trace":
            work = Work(op.flops, op.bytes_moved, op.bytes_sent, op.group_ranks)
            independent[i] = True
            if src is not None:
                source_s[i] = adapter.time_s(op.category, work, src)
        else:
            x = invert(lambda w, op=op: adapter.time_s(op.category, _axis_work(op.category, w, op.group_ranks), src),
                       op.duration_s)
            work = _axis_work(op.category, x, op.group_ranks)
        if tgt is not None:
            target_s[i] = adapter.time_s(op.category, work, tgt)
    return Retimed(source_s, target_s, independent, [op.category for op in graph.ops], sources)


def _work_source(op: Op, have_source: bool) -> str:
    if op.category == "other" or not op.classified:
        return "recorded"
    known = (op.flops if op.category in COMPUTE else op.bytes_moved if op.category in MEMORY else op.bytes_sent)
    if known > 0:
        return "trace"
    return "source-rate" if have_source else "recorded"
