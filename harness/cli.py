"""`bench`: the thin command-line front. Parse, call into the library, print. Nothing else lives here."""

from __future__ import annotations

import importlib
import sys

import click

from harness import __version__
from harness.errors import InputError

# Each entry is "module:attribute" of a click command or group; one line per command family.
_COMMANDS = [
    "harness.commands.report:report",
    "harness.commands.trace:trace",
    "harness.commands.gate:gate",
    "harness.commands.ops:ops",
    "harness.commands.replay:replay",
    "harness.commands.sweep:sweep",
    "harness.commands.sweep:plan",
    "harness.commands.estimate:estimate",
    "harness.commands.models:models",
    "harness.commands.validate:validate",
]


class _Bench(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except InputError as exc:
            # Bad input is the user's to fix: one clear line, exit 2, no traceback.
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Bench, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bench")
def main() -> None:
    """Replay LLM-serving traffic on a CloudMatrix384 supernode and on GPU clusters, and compare."""


for _spec in _COMMANDS:
    _module, _attr = _spec.split(":")
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
