"""`bench trace`: inspect, convert and synthesise request traces. Thin: parse, call harness.trace, print."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from harness.commands.common import load_shaped, trace_input_options
from harness.trace import bundled_traces, save_trace, trace_stats
from harness.trace.save import native_container


@click.group()
def trace() -> None:
    """Request traces: info, convert, synth, list."""


@trace.command()
@click.argument("file")
@trace_input_options
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def info(file: str, as_json: bool, **opts) -> None:
    """Statistics of a trace FILE (a path or a bundled short name such as azure-conv)."""
    stats = trace_stats(load_shaped(file, **opts))
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    Console().print(_stats_table(stats))


@trace.command()
@click.argument("source")
@click.argument("dest", type=click.Path(dir_okay=False))
@trace_input_options
def convert(source: str, dest: str, **opts) -> None:
    """Convert SOURCE (any format) to the native format DEST (.csv, .jsonl or .parquet, optionally .gz)."""
    native_container(dest)  # reject a bad extension before the (possibly long) load
    workload = load_shaped(source, **opts)
    save_trace(workload, dest)
    click.echo(f"wrote {len(workload):,} requests to {dest}")


@trace.command(name="list")
def list_() -> None:
    """The bundled traces and their short names."""
    table = Table("name", "file", "format", "description")
    for name, entry in sorted(bundled_traces().items()):
        table.add_row(name, entry["file"], entry["format"], entry["description"])
    Console().print(table)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _stats_table(stats: dict) -> Table:
    table = Table(title=f"{stats['name']} ({stats['format']})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key in ("requests", "duration_s", "rate_req_s", "distinct_arrival_times", "block_size", "sessions"):
        table.add_row(key, _fmt(stats[key]))
    for key in ("inter_arrival_s", "input_tokens", "output_tokens", "prefix_reuse"):
        if stats[key]:
            table.add_row(key, "  ".join(f"{k} {_fmt(v)}" for k, v in stats[key].items()))
    for note in stats["notes"]:
        table.add_row("note", note)
    return table
