"""`bench ops`: import a kernel-level op trace, replay its DAG, re-time it on another backend; export step graphs."""

from __future__ import annotations

import json
import sys

import click
import numpy as np

from harness.errors import InputError
from harness.ops.classify import unclassified
from harness.ops.load import FORMATS, load_op_trace
from harness.ops.replay import predecessors, recorded_gaps_s, replay, topological_order
from harness.ops.result import kept_ops, timeline_columns, timeline_summary
from harness.outputs import write_text_atomic

IDENTITY_TOLERANCE = 0.01  # the acceptance bound for replaying recorded durations


@click.group("ops")
def ops() -> None:
    """Kernel-level op traces (Kineto / Chakra JSON / native): replay, re-time, export."""


@ops.command("replay")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--rules", multiple=True, type=click.Path(dir_okay=False),
              help="Extra kernel-classification rule file (TOML), tried before the bundled table.")
@click.option("--identity", is_flag=True, help="Check that replaying recorded durations reproduces the span "
              "within 1%; exit 1 if not.")
@click.option("--source", "source_hw", help="Hardware the trace was recorded on (e.g. h800-ib).")
@click.option("--target", "target_hw", help="Hardware to re-time the trace on (e.g. cloudmatrix384).")
@click.option("--keep-gaps/--no-gaps", default=True, show_default=True,
              help="Replay the recorded idle time the DAG does not explain (CPU launch, host syncs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the result JSON to this file.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def replay_cmd(trace: str, fmt: str, rules: tuple[str, ...], identity: bool, source_hw: str | None,
               target_hw: str | None, keep_gaps: bool, as_json: bool, out: str | None, quiet: bool) -> None:
    """Replay TRACE's op DAG; with --source/--target, re-time each op on those backends."""
    show = not quiet and not as_json and sys.stdout.isatty()
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(f"reading {trace}", spinner="dots") if show else _null():
        graph = load_op_trace(trace, fmt, rules)
    result = analyse(graph, source_hw, target_hw, keep_gaps)
    if out:
        write_text_atomic(out, json.dumps(result) + "\n")
    if as_json:
        click.echo(json.dumps(result))
    else:
        _print(result)
    if identity:
        ident = result["identity"]
        if ident is None:
            raise InputError("--identity needs recorded timestamps; this trace has none", path=trace)
        if not ident["within_1pct"]:
            sys.exit(1)


def analyse(graph, source_hw: str | None, target_hw: str | None, keep_gaps: bool = True) -> dict:
    preds = predecessors(graph)
    order = topological_order(preds, graph.meta.get("source", "op graph"))
    keep = kept_ops(graph)
    recorded_dur = np.array([op.duration_s for op in graph.ops])
    total = float(recorded_dur.sum())
    missing = unclassified(graph)
    result: dict = {
        "trace": {"path": graph.meta.get("source"), "format": graph.meta.get("format", "native"),
                  "ops": len(graph.ops), "streams": graph.streams(),
                  **{k: graph.meta[k] for k in ("sync_edges", "sync_edges_dropped", "idle_anchor_edges")
                     if k in graph.meta}},
        "classification": {"unclassified_share": (sum(r["time_s"] for r in missing) / total) if total else 0.0,
                           "unclassified": missing},
        "recorded": None, "identity": None, "timelines": {},
        "timelines_downsampled": len(keep) < len(graph.ops),
    }
    rec_span = graph.recorded_span_s()
    gaps = np.zeros(len(graph.ops))
    if rec_span is not None:
        gaps = recorded_gaps_s(graph, preds)
        ident = replay(graph, recorded_dur, gaps, preds, order)
        t0 = min(op.start_s for op in graph.ops)
        recorded_tl = type(ident)(np.array([op.start_s - t0 for op in graph.ops]),
                                  np.array([op.start_s - t0 + op.duration_s for op in graph.ops]),
                                  rec_span, ident.critical_path, ident.critical_wait_s)
        error = (ident.span_s - rec_span) / rec_span if rec_span > 0 else 0.0
        result["identity"] = {"recorded_span_s": rec_span, "replayed_span_s": ident.span_s, "error": error,
                              "within_1pct": abs(error) <= IDENTITY_TOLERANCE,
                              "dense_span_s": replay(graph, recorded_dur, None, preds, order).span_s,
                              "idle_gap_total_s": float(gaps.sum())}
        result["recorded"] = timeline_summary(graph, recorded_tl, recorded_dur)
        result["timelines"]["recorded"] = timeline_columns(graph, recorded_tl, keep)
    else:
        tl = replay(graph, recorded_dur, None, preds, order)
        result["replayed"] = timeline_summary(graph, tl, recorded_dur)
        result["timelines"]["replayed"] = timeline_columns(graph, tl, keep)
    if source_hw or target_hw:
        from harness.ops.retime import retime

        rt = retime(graph, source_hw, target_hw)
        use_gaps = gaps if keep_gaps else None
        result["work_sources"] = rt.work_sources
        for key, dur in (("source_predicted", rt.source_s), ("target_predicted", rt.target_s)):
            if dur is None:
                continue
            tl = replay(graph, dur, use_gaps, preds, order)
            result[key] = timeline_summary(graph, tl, dur)
            result[key]["hardware"] = source_hw if key == "source_predicted" else target_hw
            result["timelines"][key] = timeline_columns(graph, tl, keep)
        if rt.source_s is not None and rec_span is not None:
            result["mape_per_category"] = rt.mape_per_category(recorded_dur)
    return result


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    tr = result["trace"]
    console.print(f"[bold]{tr['path']}[/]  format {tr['format']}, {tr['ops']} ops on streams "
                  f"{', '.join(tr['streams'])}; sync edges {tr.get('sync_edges', '-')}, "
                  f"inferred from idle {tr.get('idle_anchor_edges', '-')}")
    cls = result["classification"]
    console.print(f"unclassified kernels: {len(cls['unclassified'])} names, "
                  f"{cls['unclassified_share']:.2%} of recorded op time")
    for row in cls["unclassified"][:10]:
        console.print(f"  {row['count']:6d} x {row['time_s'] * 1e3:9.3f} ms  {row['name'][:100]}")
    columns = [k for k in ("recorded", "replayed", "source_predicted", "target_predicted") if result.get(k)]
    table = Table(title="time per category (ms, summed over ops)")
    table.add_column("category")
    for c in columns:
        table.add_column(c + (f" ({result[c]['hardware']})" if "hardware" in result[c] else ""), justify="right")
    mape = result.get("mape_per_category", {})
    if mape:
        table.add_column("MAPE source vs recorded", justify="right")
    cats = sorted({k for c in columns for k in result[c]["per_category_s"]})
    for cat in cats:
        row = [cat] + [f"{result[c]['per_category_s'].get(cat, 0.0) * 1e3:.3f}" for c in columns]
        if mape:
            m = mape.get(cat)
            row.append(f"{m['mape']:.1%} (n={m['ops']})" if m else "-")
        table.add_row(*row)
    for label, key, fmt in (("span", "span_s", "ms"), ("overlap ratio", "overlap_ratio", "%"),
                            ("comm hidden under compute", "comm_overlap_ratio", "%")):
        table.add_row(f"[bold]{label}[/]", *[(f"{result[c][key] * 1e3:.3f}" if fmt == "ms"
                                              else f"{result[c][key]:.1%}") for c in columns],
                      *([""] if mape else []))
    console.print(table)
    ident = result.get("identity")
    if ident:
        ok = "[green]holds[/]" if ident["within_1pct"] else "[red]FAILS[/]"
        console.print(f"identity replay: recorded span {ident['recorded_span_s'] * 1e3:.3f} ms, replayed "
                      f"{ident['replayed_span_s'] * 1e3:.3f} ms (error {ident['error']:+.3%}) {ok}; "
                      f"without recorded idle gaps {ident['dense_span_s'] * 1e3:.3f} ms "
                      f"(idle gaps total {ident['idle_gap_total_s'] * 1e3:.3f} ms)")
    for c in columns:
        cp = result[c]["critical_path"]
        parts = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in sorted(cp["per_category_s"].items(), key=lambda x: -x[1]))
        console.print(f"critical path ({c}): {cp['ops']} ops, idle wait {cp['wait_s'] * 1e3:.2f} ms; "
                      f"by category (ms): {parts}")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@ops.command("export")
@click.option("--deployment", required=True, help="Deployment spec name (models/deployments).")
@click.option("--batch", type=click.IntRange(min=1), required=True, help="Requests (tokens) per step per rank.")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default="decode", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Native op-trace JSON to write.")
def export_cmd(deployment: str, batch: int, phase: str, out: str) -> None:
    """Write the harness's step op graph for a deployment and batch in the native op-trace format."""
    import importlib

    from harness.ops.export import graph_from_step_ops
    from harness.ops.native import save_native

    step = importlib.import_module("harness.step")
    if not hasattr(step, "step_ops"):
        raise InputError("the step model (harness.step.step_ops) is not available in this build")
    step_ops = step.step_ops(deployment=deployment, batch=batch, phase=phase)
    graph = graph_from_step_ops(step_ops, {"deployment": deployment, "batch": batch, "phase": phase})
    save_native(graph, out)
    click.echo(f"wrote {out}: {len(graph.ops)} ops on streams {', '.join(graph.streams())}")
