"""One op-trace analysis: identity replay, classification, re-timing on a source and a target backend, and the
result document (keys documented in harness/ops/result.py) that `bench ops replay` prints and saves."""

from __future__ import annotations

import numpy as np

from harness.ops.classify import unclassified
from harness.ops.replay import fallback_gaps_s, predecessors, release_times_s, replay, topological_order
from harness.ops.result import kept_ops, timeline_columns, timeline_summary

IDENTITY_TOLERANCE = 0.01  # the acceptance bound for replaying recorded durations


def analyse(graph, source_hw: str | None, target_hw: str | None, table=None, launch_on_target: bool = True,
            adapter=None) -> dict:
    preds = predecessors(graph)
    order = topological_order(preds, graph.meta.get("source", "op graph"), graph.meta.get("op_labels"))
    keep = kept_ops(graph)
    recorded_dur = np.array([op.duration_s for op in graph.ops])
    total = float(recorded_dur.sum())
    missing = unclassified(graph)
    release = release_times_s(graph)
    gaps = fallback_gaps_s(graph, preds)
    no_launch = [i for i, op in enumerate(graph.ops) if op.release_s is None]
    result: dict = {
        "trace": {"path": graph.meta.get("source"), "format": graph.meta.get("format", "native"),
                  "ops": len(graph.ops), "streams": graph.streams(),
                  **{k: graph.meta[k] for k in ("sync_edges", "sync_edges_dropped", "sm_edges", "inferred_wait_edges",
                                                "launch_release_ops", "dangling_deps") if k in graph.meta}},
        "classification": {"unclassified_share": (sum(r["time_s"] for r in missing) / total) if total else 0.0,
                           "unclassified": missing},
        "recorded": None, "identity": None, "timelines": {},
        "timelines_downsampled": len(keep) < len(graph.ops),
    }
    rec_span = graph.recorded_span_s()
    if rec_span is not None:
        ident = replay(graph, recorded_dur, release, gaps, preds, order)
        t0 = min(op.start_s for op in graph.ops)
        recorded_tl = type(ident)(np.array([op.start_s - t0 for op in graph.ops]),
                                  np.array([op.start_s - t0 + op.duration_s for op in graph.ops]),
                                  rec_span, ident.critical_path, ident.critical_wait_s, ident.host_bound_op,
                                  ident.host_release_s)
        error = (ident.span_s - rec_span) / rec_span if rec_span > 0 else 0.0
        result["identity"] = {
            "recorded_span_s": rec_span, "replayed_span_s": ident.span_s, "error": error,
            "within_1pct": abs(error) <= IDENTITY_TOLERANCE,
            "mechanisms": ", ".join(["stream order", "dependencies"]
                                    + [name for key, name in (("sm_edges", "SM capacity"),
                                                              ("inferred_wait_edges", "inferred waits"))
                                       if graph.meta.get(key)]
                                    + (["CPU launch release times"] if release is not None else [])),
            # The DAG alone: no launch release times, no fallback gaps.
            "dense_span_s": replay(graph, recorded_dur, None, None, preds, order).span_s,
            # Ops without a recorded launch replay their recorded idle time (unexplained): count and total.
            "fallback_gap_ops": len(no_launch) if release is not None else len(graph.ops),
            "fallback_gap_total_s": float(gaps.sum()),
        }
        result["recorded"] = timeline_summary(graph, recorded_tl, recorded_dur)
        result["timelines"]["recorded"] = timeline_columns(graph, recorded_tl, keep)
    else:
        tl = replay(graph, recorded_dur, release, None, preds, order)
        result["replayed"] = timeline_summary(graph, tl, recorded_dur)
        result["timelines"]["replayed"] = timeline_columns(graph, tl, keep)
    if source_hw or target_hw:
        from harness.ops.retime import retime

        rt = retime(graph, source_hw, target_hw, adapter=adapter, table=table)
        result["work_sources"] = rt.work_sources
        result["work_table"] = ({"name": table.name, "path": str(table.path), "llm": table.llm.name,
                                 "source_rate_reasons": rt.fallback_reasons} if table is not None else None)
        result["assumptions"] = [
            "source: the recorded CPU launch times and fallback idle gaps are kept (the trace's own host)",
            ("target: CPU launch release times carry over as recorded (launch overhead is host-side)"
             if launch_on_target and release is not None else
             "target: no CPU launch release times (graph-launched execution, --no-launch)"),
            "target: cross-stream sync, SM-capacity and inferred-wait edges carry over as recorded",
            "source: compute kernels run on the share of the SMs they were launched on (Kineto blocks per SM below "
            "1, e.g. 112 of 132 while communication kernels hold the rest), or, with a full grid, on the SMs that "
            "partial-grid kernels running beside them leave; target: they get the whole chip",
            "ops of category 'other' and unclassified kernels keep their recorded time on every backend",
        ]
        for key, dur, hw in (("source_predicted", rt.source_s, source_hw), ("target_predicted", rt.target_s,
                                                                             target_hw)):
            if dur is None:
                continue
            rel = release if (key == "source_predicted" or launch_on_target) else None
            tl = replay(graph, dur, rel, gaps, preds, order)
            result[key] = timeline_summary(graph, tl, dur)
            result[key]["hardware"] = hw
            result["timelines"][key] = timeline_columns(graph, tl, keep)
        if rt.source_s is not None and rec_span is not None:
            result["mape_per_category"] = rt.mape_per_category(recorded_dur)
    return result
