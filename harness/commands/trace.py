"""`bench trace`: inspect, convert and synthesise request traces. Thin: parse, call harness.trace, print."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from harness.commands.common import Finite, console, load_shaped, trace_input_options
from harness.errors import InputError
from harness.outputs import refuse_overwriting
from harness.trace import bundled_traces, save_trace, trace_stats
from harness.trace.lengths import Empirical, servegen_lengths
from harness.trace.save import native_container
from harness.trace.synth import ARRIVALS, synthesize


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
    console().print(_stats_table(stats))


@trace.command()
@click.argument("source")
@click.argument("dest", type=click.Path(dir_okay=False))
@trace_input_options
def convert(source: str, dest: str, **opts) -> None:
    """Convert SOURCE (any format) to the native format DEST (.csv, .jsonl or .parquet, optionally .gz)."""
    native_container(dest)  # reject a bad extension before the (possibly long) load
    refuse_overwriting({"DEST": dest}, [source])
    workload = load_shaped(source, **opts)
    save_trace(workload, dest)
    click.echo(f"wrote {len(workload):,} requests to {dest}")


@trace.command(name="list")
def list_() -> None:
    """The bundled traces and their short names."""
    table = Table("name", "file", "format", "description")
    for name, entry in sorted(bundled_traces().items()):
        table.add_row(name, entry["file"], entry["format"], entry["description"])
    console().print(table)


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


def _refuse_unused_options(lengths: str | None, servegen: str | None, opts: dict) -> None:
    """An option given on the command line that these options leave unused is an error, not silently dropped."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    unused = {"client": ("--client", not servegen, "picks a ServeGen client; add --servegen"),
              "input_spec": ("--input", lengths, "is unused: --lengths-from / --servegen sample input and output"),
              "output_spec": ("--output", lengths, "is unused: --lengths-from / --servegen sample input and output"),
              "cv": ("--cv", opts["arrival"] != "gamma", "shapes gamma arrivals; add --arrival gamma"),
              "open_sessions": ("--open-sessions", opts["session_turns"] is None,
                                "interleaves multi-turn sessions; add --session-turns"),
              "prefix_groups": ("--prefix-groups", not opts["prefix_tokens"],
                                "counts shared prefixes; add --prefix-tokens")}
    for name, (option, is_unused, why) in unused.items():
        if is_unused and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise InputError(why, field=option)


@trace.command()
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--requests", "n_requests", type=click.IntRange(min=1), default=None, help="Number of requests.")
@click.option("--duration", "duration_s", type=Finite(min=0, min_open=True), default=None,
              help="Or: all arrivals within this many seconds.")
@click.option("--rate", type=Finite(min=0, min_open=True), required=True, help="Mean arrival rate, req/s.")
@click.option("--arrival", type=click.Choice(ARRIVALS), default="poisson", show_default=True,
              help="Inter-arrival times: exponential (poisson) or gamma with --cv.")
@click.option("--cv", type=Finite(min=0, min_open=True), default=1.0, show_default=True,
              help="Inter-arrival coefficient of variation (gamma arrivals).")
@click.option("--input", "input_spec", default="1024", show_default=True, metavar="SPEC",
              help="Input lengths: N, uniform:LO:HI or lognormal:MEAN:CV.")
@click.option("--output", "output_spec", default="256", show_default=True, metavar="SPEC", help="Output lengths.")
@click.option("--lengths-from", metavar="TRACE", default=None,
              help="Resample (input, output) pairs of another trace (path or bundled name) instead.")
@click.option("--servegen", type=click.Path(exists=True), default=None,
              help="Sample lengths from ServeGen client statistics (release tarball or data folder) instead.")
@click.option("--client", default=None, help="ServeGen client id (chunk-N); all clients when omitted.")
@click.option("--prefix-tokens", type=click.IntRange(min=0), default=0, help="Shared system-prompt tokens.")
@click.option("--prefix-groups", type=click.IntRange(min=1), default=1, help="Number of distinct shared prefixes.")
@click.option("--session-turns", type=Finite(min=1), default=None,
              help="Mean turns per multi-turn session (history becomes the next prompt's prefix).")
@click.option("--open-sessions", type=click.IntRange(min=1), default=8, show_default=True,
              help="Sessions interleaved at a time.")
@click.option("--block-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Tokens per prefix block.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the generator: the same seed and options give the same trace.")
def synth(dest: str, lengths_from: str | None, servegen: str | None, client: str | None, input_spec: str,
          output_spec: str, **opts) -> None:
    """Write a seeded synthetic trace to DEST (.csv, .jsonl or .parquet, optionally .gz)."""
    native_container(dest)
    refuse_overwriting({"DEST": dest}, [f for f in (lengths_from, servegen) if f])
    if lengths_from and servegen:
        raise InputError("give either --lengths-from or --servegen, not both", field="--servegen")
    _refuse_unused_options(lengths_from or servegen, servegen, opts)
    lengths = None
    if lengths_from:
        source = load_shaped(lengths_from).requests
        lengths = Empirical(source["input_tokens"].to_numpy(), source["output_tokens"].to_numpy())
    elif servegen:
        lengths = servegen_lengths(servegen, client)
    workload = synthesize(input=input_spec, output=output_spec, lengths=lengths,
                          name=Path(dest).name.split(".")[0], **opts)
    save_trace(workload, dest)
    click.echo(f"wrote {len(workload):,} requests to {dest}")
