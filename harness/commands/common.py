"""Options shared by every command that reads a trace, and the one call that loads and shapes it."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from harness.errors import InputError
from harness.trace import Workload, load_trace, shape
from harness.trace.formats import FORMATS

class Finite(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (a float range lets nan through every bound)."""

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        x = super().convert(value, param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return x


_OPTIONS = [
    click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                 help="Trace format; detected from the file's content when omitted."),
    click.option("--strict", is_flag=True, help="Reject timestamps that go backwards instead of sorting them."),
    click.option("--limit", type=click.IntRange(1, 2**63 - 1), default=None, help="Keep only the first N requests."),
    click.option("--window", metavar="START:END", default=None,
                 help="Keep requests arriving in [START, END) seconds from the trace start (either side optional)."),
    click.option("--time-scale", type=Finite(min=0, min_open=True), default=None,
                 help="Multiply arrival times by F (0.1 = ten times denser traffic)."),
    click.option("--rate", type=Finite(min=0, min_open=True), default=None,
                 help="Rescale arrival times to a mean rate of R requests/s."),
]


def trace_input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --format, --strict, --limit, --window, --time-scale and --rate (keyword names below) to a command."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def load_shaped(path: str | Path, *, fmt: str | None = None, strict: bool = False, limit: int | None = None,
                window: str | None = None, time_scale: float | None = None, rate: float | None = None,
                warn: bool = True) -> Workload:
    """Load a trace (path or bundled short name) and shape it; loader notes go to stderr as warnings."""
    workload = load_trace(path, fmt, strict=strict)
    if warn:
        for note in workload.notes:
            click.echo(f"warning: {workload.source_path}: {note}", err=True)
    return shape(workload, limit=limit, window=window, time_scale=time_scale, rate=rate)


def per_label(values: tuple[str, ...], option: str, labels: list[str], parse) -> dict[str, object]:
    """`[LABEL=]VALUE` options: a bare value applies to every backend, LABEL=VALUE to one."""
    out: dict[str, object] = {}
    for raw in values:
        label, sep, value = raw.partition("=")
        if not sep:
            targets, value = labels, raw
        elif label.strip() in labels:
            targets = [label.strip()]
        else:
            raise InputError(f"'{label}' is not a backend label of this run ({', '.join(labels)})", field=option)
        try:
            parsed = parse(value.strip())
        except (ValueError, TypeError) as exc:
            raise InputError(f"{value!r}: {exc}", field=option) from None
        for t in targets:
            out[t] = parsed
    return out


def deployment_pair(text: str) -> tuple[str, str]:
    """`PREFILL,DECODE` deployment spec names (the value of a `--deployment` option)."""
    prefill, sep, decode = text.partition(",")
    if not sep or not prefill.strip() or not decode.strip():
        raise ValueError("expected PREFILL,DECODE deployment spec names")
    return prefill.strip(), decode.strip()


def console(*, stderr: bool = False) -> Console:
    """A rich console for command output: the terminal's width on a terminal, and 160 columns when piped or
    redirected (rich would otherwise fold tables into 80 columns). Markup is off: file names, spec descriptions and
    kernel names are printed as they are (a `[/x]` in one would otherwise vanish or crash the print); styles are
    given with `style=` or `rich.text.Text`."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160, markup=False)
