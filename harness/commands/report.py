"""`bench report`: render saved results into one self-contained HTML file. Thin: parse, call harness.report, print."""

from __future__ import annotations

import click

from harness.errors import InputError
from harness.outputs import refuse_overwriting
from harness.report import render_report


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (written atomically; opens offline).")
def report(results: tuple[str, ...], out: str) -> None:
    """Render RESULTS (replay output folders, op-trace replay JSON, validation JSON) into one HTML report, or
    re-render a `bench sweep` / `bench plan` output folder's own report.

    The kind of each input is detected from its content; the report is a pure function of the saved results.
    """
    from harness.sweep.report import is_sweep_folder, render_sweep_report  # here: only this command needs it

    refuse_overwriting({"--out": out}, results)
    sweeps = [r for r in results if is_sweep_folder(r)]
    if sweeps and len(results) > 1:
        raise InputError("a sweep or plan folder makes a report of its own; give it alone", path=sweeps[0])
    path = render_sweep_report(sweeps[0], out) if sweeps else render_report(list(results), out)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(results)} result{'s' if len(results) != 1 else ''})")
