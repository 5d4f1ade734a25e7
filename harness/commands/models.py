"""`bench models list`: the bundled hardware, LLM and deployment specs."""

from __future__ import annotations

import json

import click
from rich.table import Table

from harness.commands.common import console
from harness.hardware.specfile import list_models


@click.group()
def models() -> None:
    """Hardware, LLM and deployment specs (models/)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def list_cmd(as_json: bool) -> None:
    """Show every spec by kind with its description."""
    found = list_models()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    con = console()
    for kind, rows in found.items():
        t = Table(title=kind)
        t.add_column("name")
        t.add_column("description")
        for r in rows:
            t.add_row(r["name"], r["description"])
        con.print(t)
