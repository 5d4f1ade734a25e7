"""Where the bundled spec and trace files live, installed (inside the wheel) or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _data_root(name: str) -> Path:
    installed = _PKG / "_data" / name
    return installed if installed.is_dir() else _PKG.parent / name


def models_dir() -> Path:
    """The folder of hardware, LLM and deployment spec files (TOML) and their schemas."""
    return _data_root("models")


def traces_dir() -> Path:
    """The folder of bundled request traces and the trace-format schemas."""
    return _data_root("traces")


def shared_data_dir() -> Path | None:
    """../shared/data beside a source checkout, when present (tests read real traces from it)."""
    candidate = _PKG.parent.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None
