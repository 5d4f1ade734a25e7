"""`bench ops`: import a kernel-level op trace, replay its DAG, re-time it on another backend; export step graphs."""

from __future__ import annotations

import json
import sys

import click
import numpy as np

from harness.commands.common import console
from harness.errors import InputError
from harness.ops.classify import unclassified
from harness.ops.load import FORMATS, load_op_trace
from harness.ops.native import save_native
from harness.ops.replay import fallback_gaps_s, predecessors, release_times_s, replay, topological_order
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
@click.option("--work", "work", help="Work table deriving shapes from annotations + LLM spec: a bundled name "
              "(models/kernels/work), a TOML path, or 'none'. Default: the bundled table that fits the trace.")
@click.option("--no-launch", is_flag=True, help="On the target, ignore the recorded CPU launch times "
              "(graph-launched execution); by default they carry over as recorded (launch cost is host-side).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the result JSON to this file.")
@click.option("--report", "report", type=click.Path(dir_okay=False), help="Also write an HTML report here.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def replay_cmd(trace: str, fmt: str, rules: tuple[str, ...], identity: bool, source_hw: str | None,
               target_hw: str | None, work: str | None, no_launch: bool, as_json: bool, out: str | None,
               report: str | None, quiet: bool) -> None:
    """Replay TRACE's op DAG; with --source/--target, re-time each op on those backends."""
    show = not quiet and not as_json and sys.stdout.isatty()
    status = console(stderr=True)
    with status.status(f"reading {trace}", spinner="dots") if show else _null():
        graph = load_op_trace(trace, fmt, rules)
    table = None
    if source_hw or target_hw:
        from harness.ops.worktable import find_table

        table = find_table(graph, work)
    result = analyse(graph, source_hw, target_hw, table=table, launch_on_target=not no_launch)
    if out:
        write_text_atomic(out, json.dumps(result) + "\n")
    if report:
        _report(result, out, report)
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


def _report(result: dict, out: str | None, report: str) -> None:
    import tempfile
    from pathlib import Path

    from harness.report import render_report

    if out:
        render_report([out], report)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ops.json"
        path.write_text(json.dumps(result) + "\n", encoding="utf-8")
        render_report([path], report)


def analyse(graph, source_hw: str | None, target_hw: str | None, table=None, launch_on_target: bool = True,
            adapter=None) -> dict:
    preds = predecessors(graph)
    order = topological_order(preds, graph.meta.get("source", "op graph"))
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
                                                "launch_release_ops") if k in graph.meta}},
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
            "1, e.g. 112 of 132 while communication kernels hold the rest); target: they get the whole chip",
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


def _print(result: dict) -> None:
    from rich.table import Table

    con = console()
    tr = result["trace"]
    con.print(f"[bold]{tr['path']}[/]  format {tr['format']}, {tr['ops']} ops on streams "
                  f"{', '.join(tr['streams'])}; sync edges {tr.get('sync_edges', '-')}, SM-capacity edges "
                  f"{tr.get('sm_edges', '-')}, inferred waits {tr.get('inferred_wait_edges', '-')}, ops with a "
                  f"recorded CPU launch {tr.get('launch_release_ops', 0)}")
    cls = result["classification"]
    con.print(f"unclassified kernels: {len(cls['unclassified'])} names, "
                  f"{cls['unclassified_share']:.2%} of recorded op time")
    for row in cls["unclassified"][:10]:
        con.print(f"  {row['count']:6d} x {row['time_s'] * 1e3:9.3f} ms  {row['name'][:100]}")
    if result.get("work_sources") is not None:
        wt = result.get("work_table")
        con.print("work table: " + (f"{wt['name']} (LLM {wt['llm']})" if wt else "none"))
        for reason, count in (wt or {}).get("source_rate_reasons", {}).items():
            con.print(f"  source-rate fallback, {count} ops: {reason}")
        parts = []
        for cat, srcs in sorted(result["work_sources"].items()):
            parts.append(f"{cat} " + "/".join(f"{k} {v}" for k, v in sorted(srcs.items())))
        con.print("work from: " + "; ".join(parts))
    columns = [k for k in ("recorded", "replayed", "source_predicted", "target_predicted") if result.get(k)]
    table = Table(title="time per category (ms, summed over ops)")
    table.add_column("category")
    for c in columns:
        table.add_column(c + (f" ({result[c]['hardware']})" if "hardware" in result[c] else ""), justify="right")
    mape = result.get("mape_per_category", {})
    if mape:
        table.add_column("MAPE source vs recorded (ops; predicted/recorded sum)", justify="right")
    cats = sorted({k for c in columns for k in result[c]["per_category_s"]})
    for cat in cats:
        row = [cat] + [f"{result[c]['per_category_s'].get(cat, 0.0) * 1e3:.3f}" for c in columns]
        if mape:
            m = mape.get(cat)
            row.append(f"{m['mape']:.1%} (n={m['ops']}; {m['predicted_s'] / m['recorded_s']:.2f}x)" if m else "-")
        table.add_row(*row)
    for label, key, fmt in (("span", "span_s", "ms"), ("overlap ratio", "overlap_ratio", "%"),
                            ("comm hidden under compute", "comm_overlap_ratio", "%")):
        table.add_row(f"[bold]{label}[/]", *[(f"{result[c][key] * 1e3:.3f}" if fmt == "ms"
                                              else f"{result[c][key]:.1%}") for c in columns],
                      *([""] if mape else []))
    con.print(table)
    ident = result.get("identity")
    if ident:
        ok = "[green]holds[/]" if ident["within_1pct"] else "[red]FAILS[/]"
        con.print(f"identity replay ({ident['mechanisms']}): recorded span {ident['recorded_span_s'] * 1e3:.3f} "
                      f"ms, replayed {ident['replayed_span_s'] * 1e3:.3f} ms (error {ident['error']:+.3%}) {ok}; "
                      f"{ident['fallback_gap_ops']} ops without a recorded launch replay their idle gaps "
                      f"({ident['fallback_gap_total_s'] * 1e3:.3f} ms); DAG alone {ident['dense_span_s'] * 1e3:.3f} ms")
    for c in columns:
        cp = result[c]["critical_path"]
        parts = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in sorted(cp["per_category_s"].items(), key=lambda x: -x[1]))
        where = ("at a CPU launch (host-bound before it)" if cp.get("starts_at") == "cpu_launch"
                 else "at the first op")
        con.print(f"critical path ({c}): {cp['ops']} ops from {cp.get('start_s', 0.0) * 1e3:.2f} ms, starting "
                      f"{where}; unexplained idle {cp['wait_s'] * 1e3:.2f} ms; by category (ms): {parts}")
    for line in result.get("assumptions", []):
        con.print(f"[dim]assumption: {line}[/]")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@ops.command("export")
@click.option("--deployment", required=True, help="Deployment spec name (models/deployments).")
@click.option("--batch", type=click.FloatRange(min=0, min_open=True),
              help="Decode: requests per chip (default: the deployment's operating point).")
@click.option("--kv-len", type=click.IntRange(min=1), help="Decode: KV length per request (default: operating point).")
@click.option("--tokens", type=click.IntRange(min=1), help="Prefill: new tokens per chip (default: operating point).")
@click.option("--prompt-len", type=click.IntRange(min=1), help="Prefill: prompt length (default: operating point).")
@click.option("--set", "sets", multiple=True, help="Override a spec value: SPEC.path=value (as in bench estimate).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Native op-trace JSON to write.")
def export_cmd(deployment: str, batch: float | None, kv_len: int | None, tokens: int | None,
               prompt_len: int | None, sets: tuple[str, ...], out: str) -> None:
    """Write the harness's step op graph (one step of one rank) in the native op-trace format."""
    from harness.ops.export import export_step

    graph, step_s = export_step(deployment, batch, kv_len, tokens, prompt_len, sets)
    save_native(graph, out)
    click.echo(f"wrote {out}: {len(graph.ops)} ops on streams {', '.join(graph.streams())}; "
               f"step time {step_s * 1e3:.3f} ms")
