"""Reading a TOML file the user wrote: a syntax error becomes an InputError naming the file and line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from harness.errors import InputError


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text (for line lookups of later errors) and its parsed content."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise InputError(f"not valid TOML: {exc}", path=str(path), where=f"line {m.group(1)}" if m else None) from None
