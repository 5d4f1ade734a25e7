"""The one exception type for bad input; the CLI turns it into one line on stderr and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: a trace, spec file or option. The message names file, line/row and field."""

    def __init__(self, message: str, *, path: str | None = None, where: str | None = None,
                 field: str | None = None) -> None:
        parts = [p for p in (path, where, f"field '{field}'" if field else None) if p]
        self.detail = message
        super().__init__(f"{': '.join(parts)}: {message}" if parts else message)
