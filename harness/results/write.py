"""Writing a replay's output folder atomically: build it beside the target, then swap it in."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from harness.errors import InputError
from harness.outputs import blocking_file, unwritable


@dataclass(frozen=True)
class BackendOutput:
    label: str
    summary: dict
    requests: pl.DataFrame
    timeseries: pl.DataFrame


def dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    # Fixed compression and no statistics variance: same frame, same bytes.
    frame.write_parquet(path, compression="zstd", compression_level=3, statistics=True)


def check_replay_folder(out_dir: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse, before a replay runs, an output folder it must not replace: a file, the working folder or one
    above it, or a non-empty folder that is not an earlier replay's output (it has no run.json), which would be
    deleted with everything in it."""
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise InputError(f"{out_dir} is a file; a replay writes a folder", field=option)
    if not target.exists():
        if blocking_file(target) is not None:  # found now, not after the replay has run
            raise unwritable(target, OSError())
        return
    here = Path.cwd().resolve()
    if target.resolve() in (here, *here.parents):
        raise InputError(f"{out_dir} is the working folder or holds it; a replay replaces its output folder, "
                         "so give a new or earlier output folder", field=option)
    if any(target.iterdir()) and not (target / "run.json").is_file():
        raise InputError(f"{out_dir} is not empty and is not a replay output folder (no run.json); a replay "
                         "replaces its output folder, so give a new or earlier output folder", field=option)


def write_replay(out_dir: str | os.PathLike[str], run: dict, backends: Sequence[BackendOutput]) -> Path:
    """DIR/run.json and DIR/<label>/{summary.json, requests.parquet, timeseries.parquet}; all or nothing.

    An existing DIR (an earlier replay's, see check_replay_folder) is replaced only once the new one is complete."""
    check_replay_folder(out_dir)
    target = Path(out_dir)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()   # not mkdtemp: the folder gets the usual permissions (umask), not 0700
    except OSError as exc:
        raise unwritable(target, exc) from None
    try:
        (tmp / "run.json").write_text(dumps(run), encoding="utf-8")
        for b in backends:
            d = tmp / b.label
            d.mkdir()
            (d / "summary.json").write_text(dumps(b.summary), encoding="utf-8")
            write_parquet(b.requests, d / "requests.parquet")
            write_parquet(b.timeseries, d / "timeseries.parquet")
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "x")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return target
