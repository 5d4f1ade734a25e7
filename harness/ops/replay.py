"""Replay an op graph as a DAG: each op starts when its stream predecessor and its deps have ended, and not
before its release time (the end of its CPU launch call, where the trace records one).

Those are the mechanisms the replay explains a timeline with. An op of a measured trace that has no recorded
launch may still have sat idle for a reason the trace does not name (host sync, a missing launch event):
`fallback_gaps_s` measures that idle time for those ops only (recorded start minus the time the op became ready)
so that the identity check can still run; the result reports how many ops needed it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from harness.errors import InputError
from harness.ops.graph import COMM_CATEGORIES, OpGraph

HOST = -2  # binding marker: the op waited for its CPU launch, not for another op


@dataclass(frozen=True, slots=True)
class Timeline:
    start_s: np.ndarray
    end_s: np.ndarray
    span_s: float
    critical_path: list[int]  # op indices, first to last
    critical_wait_s: float  # fallback (unexplained) idle time on the critical path
    # Where the critical path begins: at the trace start, or at a CPU launch the GPU had to wait for
    # (the op index whose launch it was; -1 if none) -- then everything before it is host-bound.
    host_bound_op: int = -1
    host_release_s: float = 0.0


def predecessors(graph: OpGraph) -> list[list[int]]:
    """Stream predecessor (list order within a stream) plus explicit deps, per op."""
    last: dict[str, int] = {}
    preds: list[list[int]] = []
    for i, op in enumerate(graph.ops):
        p = list(op.deps)
        if op.stream in last:
            p.append(last[op.stream])
        last[op.stream] = i
        preds.append(p)
    return preds


def topological_order(preds: list[list[int]], source: str = "op graph", labels: list[str] | None = None) -> list[int]:
    """Ops in dependency order; a cycle is an InputError naming an op on or after it (by `labels`, e.g. a
    Chakra node Id, else its index)."""
    n = len(preds)
    indegree = [0] * n
    succ: list[list[int]] = [[] for _ in range(n)]
    for i, ps in enumerate(preds):
        for p in ps:
            if not 0 <= p < n:
                raise InputError(f"dependency on unknown op {p}", path=source, where=f"op {i}", field="deps")
            succ[p].append(i)
            indegree[i] += 1
    ready = deque(i for i in range(n) if indegree[i] == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for s in succ[i]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    if len(order) != n:
        stuck = next(i for i in range(n) if indegree[i] > 0)
        raise InputError("dependencies form a cycle (with stream order)", path=source,
                         where=labels[stuck] if labels else f"op {stuck}", field="deps")
    return order


def release_times_s(graph: OpGraph) -> np.ndarray | None:
    """Per op: end of its CPU launch (-inf where none is recorded); None when no op has one."""
    if not any(op.release_s is not None for op in graph.ops):
        return None
    return np.array([-np.inf if op.release_s is None else op.release_s for op in graph.ops])


def fallback_gaps_s(graph: OpGraph, preds: list[list[int]] | None = None) -> np.ndarray:
    """Per op without a recorded launch: recorded start minus when it became ready in the recorded timeline
    (never negative). Zero for ops with a launch (their idle time is explained by it) and for graphs without
    recorded starts."""
    n = len(graph.ops)
    if n == 0 or any(op.start_s is None for op in graph.ops):
        return np.zeros(n)
    preds = preds if preds is not None else predecessors(graph)
    t0 = min(op.start_s for op in graph.ops)
    end = np.array([op.start_s + op.duration_s for op in graph.ops])
    gaps = np.zeros(n)
    for i, op in enumerate(graph.ops):
        if op.release_s is None:
            ready = max((end[p] for p in preds[i]), default=t0)
            gaps[i] = max(0.0, op.start_s - ready)
    return gaps


def replay(graph: OpGraph, durations_s: np.ndarray | None = None, release_s: np.ndarray | None = None,
           gaps_s: np.ndarray | None = None, preds: list[list[int]] | None = None,
           order: list[int] | None = None) -> Timeline:
    """Start each op at max(its predecessors' ends, its release time) plus its fallback gap."""
    preds = preds if preds is not None else predecessors(graph)
    order = order if order is not None else topological_order(preds, graph.meta.get("source", "op graph"),
                                                                   graph.meta.get("op_labels"))
    n = len(graph.ops)
    dur = durations_s if durations_s is not None else np.array([op.duration_s for op in graph.ops])
    gaps = gaps_s if gaps_s is not None else np.zeros(n)
    rel = release_s if release_s is not None else np.full(n, -np.inf)
    start = np.zeros(n)
    end = np.zeros(n)
    binding = np.full(n, -1)
    for i in order:
        ready, who = 0.0, -1
        for p in preds[i]:
            if end[p] > ready or who < 0:
                ready, who = max(ready, end[p]), p
        if rel[i] > ready:
            ready, who = rel[i], HOST
        start[i] = ready + gaps[i]
        end[i] = start[i] + dur[i]
        binding[i] = who
    if n == 0:
        return Timeline(start, end, 0.0, [], 0.0)
    last = int(np.argmax(end))
    path, wait = [], 0.0
    i = last
    host_op, host_t = -1, 0.0
    while i >= 0:
        path.append(i)
        wait += gaps[i]
        if binding[i] == HOST:
            host_op, host_t = i, float(rel[i])
        i = int(binding[i])
    path.reverse()
    # Times are measured from the trace origin (release times are absolute), so the span is the last end.
    return Timeline(start, end, float(end.max()), path, float(wait), host_op, host_t)


def busy_union_s(start: np.ndarray, end: np.ndarray) -> float:
    """Length of the union of [start, end) intervals."""
    if len(start) == 0:
        return 0.0
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    running = np.maximum.accumulate(e)
    # A new busy interval begins where the start is past every earlier end.
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    new[1:] = s[1:] > running[:-1]
    idx = np.flatnonzero(new)
    block_end = np.append(running[idx[1:] - 1], running[-1])
    return float(np.sum(block_end - s[idx]))


def summarize(graph: OpGraph, timeline: Timeline, durations_s: np.ndarray | None = None) -> dict:
    """Per-category time, overlap, per-stream busy time and the critical path for one timeline."""
    dur = durations_s if durations_s is not None else timeline.end_s - timeline.start_s
    cats = np.array([op.category for op in graph.ops])
    per_category = {c: float(dur[cats == c].sum()) for c in sorted(set(cats.tolist()))}
    total = float(dur.sum())
    busy = busy_union_s(timeline.start_s, timeline.end_s)
    comm = np.isin(cats, list(COMM_CATEGORIES))
    comm_busy = busy_union_s(timeline.start_s[comm], timeline.end_s[comm])
    compute_busy = busy_union_s(timeline.start_s[~comm], timeline.end_s[~comm])
    streams = np.array([op.stream for op in graph.ops])
    path_cats: dict[str, float] = {}
    for i in timeline.critical_path:
        path_cats[graph.ops[i].category] = path_cats.get(graph.ops[i].category, 0.0) + float(dur[i])
    first = timeline.critical_path[0] if timeline.critical_path else -1
    return {
        "span_s": timeline.span_s,
        "sum_op_time_s": total,
        "busy_s": busy,
        # Op time hidden by overlap: (summed op time - busy time) / summed op time (two ops wholly side by side:
        # 50%). Clamped at 0: the union of intervals can exceed their sum by rounding (it printed -0.0%).
        "overlap_ratio": max((total - busy) / total, 0.0) if total > 0 else 0.0,
        # Share of communication time hidden under computation.
        "comm_overlap_ratio": max((comm_busy + compute_busy - busy) / comm_busy, 0.0) if comm_busy > 0 else 0.0,
        "per_category_s": per_category,
        "per_stream_busy_s": {s: busy_union_s(timeline.start_s[streams == s], timeline.end_s[streams == s])
                              for s in graph.streams()},
        "critical_path": {"ops": len(timeline.critical_path), "wait_s": timeline.critical_wait_s,
                          "per_category_s": path_cats,
                          # The path starts at a CPU launch (host-bound before it) or at the first op.
                          "starts_at": ("cpu_launch" if timeline.host_bound_op >= 0 else "trace_start"),
                          "start_s": float(timeline.start_s[first]) if first >= 0 else 0.0},
    }
