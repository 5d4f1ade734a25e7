"""`bench ops`: import a kernel-level op trace, replay its DAG, re-time it on another backend; export step graphs."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from rich.text import Text

from harness.commands.common import Finite, console
from harness.errors import InputError
from harness.hardware.specfile import spec_names
from harness.ops.analysis import analyse
from harness.ops.load import FORMATS, load_op_trace
from harness.ops.native import save_native
from harness.outputs import refuse_overwriting, write_text_atomic

MAX_BATCH = 1e6  # requests per chip: far beyond any deployment, and short of overflowing the step model


@click.group("ops")
def ops() -> None:
    """Kernel-level op traces (Kineto / Chakra JSON / native): replay, re-time, export."""


@ops.command("replay")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Op-trace format; auto detects it from the content.")
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
    refuse_overwriting({"--out": out, "--report": report}, [trace])
    if work not in (None, "none") and not (source_hw or target_hw):   # it would be ignored, silently
        raise InputError("a work table prices ops for re-timing; add --source or --target", field="--work")
    for option, name in (("--source", source_hw), ("--target", target_hw)):
        if name is not None and name not in spec_names("hardware"):
            raise InputError(f"unknown hardware '{name}' (available: {', '.join(spec_names('hardware'))})",
                             field=option)
    show = not quiet and not as_json and sys.stdout.isatty()
    status = console(stderr=True)
    with status.status(f"reading {trace}", spinner="dots") if show else contextlib.nullcontext():
        graph = load_op_trace(trace, fmt, rules)
    if graph.meta.get("dangling_deps"):
        click.echo(f"warning: {trace}: dropped {graph.meta['dangling_deps']:,} dependencies on node Ids not in the "
                   "file (a trace cut out of a larger one)", err=True)
    table = None
    if source_hw or target_hw:
        from harness.ops.worktable import find_table

        table = find_table(graph, work)
    result = analyse(graph, source_hw, target_hw, table=table, launch_on_target=not no_launch)
    kept = sum(srcs.get("recorded", 0) for srcs in result.get("work_sources", {}).values())
    if target_hw and not source_hw and kept:
        click.echo(f"warning: --target without --source: {kept:,} of {len(graph.ops):,} ops the target cannot price "
                   "(category 'other', unclassified, or no work in the trace or work table) keep their recorded "
                   "time; --source HW derives the missing work from the recorded times", err=True)
    if target_hw and target_hw == graph.meta.get("hardware"):
        click.echo(f"note: re-timing onto {target_hw}, the graph's own hardware: the target gets the whole chip, so "
                   "a stream's core share does not carry over (only --source prices ops on their recorded share)",
                   err=True)
    # Both outputs are made before either is written: a failure leaves neither behind.
    text = _finite_json(result, trace)
    html = _report_html(result, out) if report else None
    if out:
        write_text_atomic(out, text)
    if report:
        write_text_atomic(report, html)
    if as_json:
        click.echo(text, nl=False)
    else:
        _print(result)
        for path in (out, report):
            if path:
                click.echo(f"wrote {path}")
    if identity:
        ident = result["identity"]
        if ident is None:
            raise InputError("--identity needs recorded timestamps; this trace has none", path=trace)
        if not ident["within_1pct"]:
            sys.exit(1)


def _finite_json(result: dict, trace: str) -> str:
    try:
        return json.dumps(result, allow_nan=False) + "\n"
    except ValueError:  # inputs are checked finite: an op priced out of range on a backend
        raise InputError("the result holds a non-finite number (NaN or infinity); nothing written",
                         path=trace) from None


def _report_html(result: dict, out: str | None) -> str:
    from pathlib import Path

    from harness.report.inputs import OpsResults
    from harness.report.render import render_html

    return render_html([OpsResults(path=Path(out or "(not saved: no --out)"), data=result)])


def _print(result: dict) -> None:
    from rich.table import Table

    con = console()
    tr = result["trace"]
    con.print(Text(tr["path"], style="bold"), f" format {tr['format']}, {tr['ops']} ops on streams "
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
    for label, key, fmt in (("span", "span_s", "ms"), ("op time hidden by overlap", "overlap_ratio", "%"),
                            ("comm hidden under compute", "comm_overlap_ratio", "%")):
        table.add_row(Text(label, style="bold"), *[(f"{result[c][key] * 1e3:.3f}" if fmt == "ms"
                                              else f"{result[c][key]:.1%}") for c in columns],
                      *([""] if mape else []))
    con.print(table)
    con.print("op time hidden by overlap: (summed op time - busy time) / summed op time; busy time: when at least "
              "one op runs", style="dim")
    ident = result.get("identity")
    if ident:
        ok = "holds" if ident["within_1pct"] else "FAILS"
        con.print(f"identity replay ({ident['mechanisms']}): recorded span {ident['recorded_span_s'] * 1e3:.3f} "
                      f"ms, replayed {ident['replayed_span_s'] * 1e3:.3f} ms (error {ident['error']:+.3%}) {ok}; "
                      f"{ident['fallback_gap_ops']} ops without a recorded launch replay their idle gaps "
                      f"({ident['fallback_gap_total_s'] * 1e3:.3f} ms); DAG alone {ident['dense_span_s'] * 1e3:.3f} ms",
                  style=None if ident["within_1pct"] else "red")
    for c in columns:
        cp = result[c]["critical_path"]
        parts = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in sorted(cp["per_category_s"].items(), key=lambda x: -x[1]))
        start_ms = cp.get("start_s", 0.0) * 1e3
        where = (f"the GPU waits for the host until {start_ms:.2f} ms (a CPU launch), then"
                 if cp.get("starts_at") == "cpu_launch" else f"from {start_ms:.2f} ms (the first op):")
        # The recording names no dependencies: its path is the identity replay's, at recorded times.
        label = "identity replay of the recording" if c == "recorded" else c
        con.print(f"critical path ({label}): {where} {cp['ops']:,} op{'s' if cp['ops'] != 1 else ''} in a chain; "
                  f"its time by category (ms): {parts or 'none'}; unexplained idle on it {cp['wait_s'] * 1e3:.2f} ms")
    for line in result.get("assumptions", []):
        con.print(f"assumption: {line}", style="dim")


@ops.command("export")
@click.option("--deployment", required=True, help="Deployment spec name (models/deployments).")
@click.option("--batch", type=Finite(min=0, min_open=True, max=MAX_BATCH),
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

    refuse_overwriting({"--out": out})
    graph, step_s = export_step(deployment, batch, kv_len, tokens, prompt_len, sets)
    save_native(graph, out)
    click.echo(f"wrote {out}: {len(graph.ops)} ops on streams {', '.join(graph.streams())}; "
               f"step time {step_s * 1e3:.3f} ms")
