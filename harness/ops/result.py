"""The result of `bench ops replay`, as a JSON-ready dict (also written by `--out FILE.json`).

Keys:
- `trace`: {path, format, ops, streams, sync_edges, sync_edges_dropped, sm_edges, inferred_wait_edges,
  launch_release_ops, dangling_deps (Chakra: deps on node Ids not in the file, dropped)}
- `classification`: {unclassified_share (of recorded op time), unclassified: [{name, count, time_s}]}
- `recorded`: summary of the recorded timeline, or null when the trace has no timestamps (Chakra)
- `identity`: {recorded_span_s, replayed_span_s, error, within_1pct, mechanisms, dense_span_s, fallback_gap_ops,
  fallback_gap_total_s} or null (`dense_span_s`: the DAG alone, without launch release times or fallback gaps;
  `fallback_gap_*`: ops without a recorded CPU launch, whose recorded idle time is replayed unexplained)
- `source_predicted`, `target_predicted`: summaries of re-timed replays, present with --source / --target
- each summary: {span_s, sum_op_time_s, busy_s, overlap_ratio ((sum_op_time_s - busy_s) / sum_op_time_s: op time
  hidden by overlap), comm_overlap_ratio, per_category_s,
  per_stream_busy_s, critical_path: {ops, wait_s, per_category_s, starts_at ("cpu_launch": host-bound before
  it, or "trace_start"), start_s, op_list: [{op, name, category, stream, start_s, end_s}]}}; the `recorded`
  summary's critical path is the identity replay's (the recording names no dependencies), at recorded times
- `mape_per_category`: {category: {mape, ops, predicted_s, recorded_s}} predicted-vs-recorded duration error on the source, over ops
  whose work was estimated independently of their recorded time (absent when nothing qualifies)
- `work_sources`: {category: {source_of_work: count}} how each op's work was estimated (trace,
  annotations+llm, source-rate, recorded); `work_table`: {name, path, llm, source_rate_reasons} or null;
  `assumptions`: the replay assumptions in words (launch times, carried-over edges)
- `timelines`: {recorded | source_predicted | target_predicted: {op, stream, category, start_s, end_s} column lists};
  `timelines_downsampled` is true when only the longest ops were kept (see MAX_TIMELINE_OPS)
"""

from __future__ import annotations

import numpy as np

from harness.ops.graph import OpGraph
from harness.ops.replay import Timeline, summarize

MAX_TIMELINE_OPS = 50_000
MAX_PATH_OPS = 2_000


def timeline_summary(graph: OpGraph, timeline: Timeline, durations_s: np.ndarray | None = None) -> dict:
    out = summarize(graph, timeline, durations_s)
    path = timeline.critical_path[-MAX_PATH_OPS:]
    out["critical_path"]["op_list"] = [
        {"op": i, "name": graph.ops[i].name, "category": graph.ops[i].category, "stream": graph.ops[i].stream,
         "start_s": float(timeline.start_s[i]), "end_s": float(timeline.end_s[i])} for i in path]
    return out


def timeline_columns(graph: OpGraph, timeline: Timeline, keep: np.ndarray) -> dict:
    return {"op": keep.tolist(), "stream": [graph.ops[i].stream for i in keep],
            "category": [graph.ops[i].category for i in keep],
            "start_s": timeline.start_s[keep].tolist(), "end_s": timeline.end_s[keep].tolist()}


def kept_ops(graph: OpGraph) -> np.ndarray:
    """All ops, or the MAX_TIMELINE_OPS longest (in time order) for very large traces."""
    n = len(graph.ops)
    if n <= MAX_TIMELINE_OPS:
        return np.arange(n)
    dur = np.array([op.duration_s for op in graph.ops])
    return np.sort(np.argsort(-dur, kind="stable")[:MAX_TIMELINE_OPS])
