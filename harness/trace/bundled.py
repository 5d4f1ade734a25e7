"""Bundled traces, addressable by a short name (`azure-conv`) as well as by path."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from harness.errors import InputError
from harness.paths import traces_dir


@functools.cache
def bundled_traces() -> dict[str, dict]:
    """Short name -> {"file", "format", "description", "source"}, from traces/index.json."""
    return json.loads((traces_dir() / "index.json").read_text(encoding="utf-8"))


def resolve_trace_path(name_or_path: str | Path) -> Path:
    """An existing path as given; otherwise a bundled trace by short name or by file name."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    text = str(name_or_path)
    index = bundled_traces()
    if text in index:
        return traces_dir() / index[text]["file"]
    if path.name == text and (traces_dir() / text).is_file():
        return traces_dir() / text
    raise InputError(f"no such file, and not a bundled trace (bundled: {', '.join(sorted(index))})", path=text)
