"""`bench report`: render saved results into one self-contained HTML file. Thin: parse, call harness.report, print."""

from __future__ import annotations

import click

from harness.outputs import refuse_overwriting
from harness.report import render_report


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (written atomically; opens offline).")
def report(results: tuple[str, ...], out: str) -> None:
    """Render RESULTS (replay output folders, op-trace replay JSON, validation JSON) into one HTML report.

    The kind of each input is detected from its content; the report is a pure function of the saved results.
    """
    refuse_overwriting({"--out": out}, results)
    path = render_report(list(results), out)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(results)} result{'s' if len(results) != 1 else ''})")
