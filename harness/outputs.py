"""Atomic output writing: a failed command never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import InputError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`, on error removed."""
    target = Path(target)
    if target.is_dir():
        raise InputError("is a folder; give a file name for this output", path=str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise unwritable(target, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600 files; give outputs the permissions a plain open() would
            os.chmod(tmp_path, 0o666 & ~_umask())
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise unwritable(target, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def unwritable(target: Path, exc: OSError) -> InputError:
    """An output path the system refuses (no such device, a file where a folder should be, no permission)."""
    blocked = blocking_file(target)
    if blocked is not None:
        return InputError(f"cannot write this output: {blocked} is a file, not a folder", path=str(target))
    return InputError(f"cannot write this output: {exc.strerror or exc}", path=str(target))


def blocking_file(target: str | os.PathLike[str]) -> Path | None:
    """A file standing where one of `target`'s parent folders should be, if any."""
    return next((p for p in Path(target).parents if p.exists() and not p.is_dir()), None)


def refuse_overwriting(outputs: dict[str, str | os.PathLike[str] | None],
                       inputs: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Refuse, before any work, an output that would overwrite an input or another output of the same command.

    `outputs` maps each option (e.g. '--out') to its path (None: not given). An input folder (a replay's results)
    protects its run.json and everything in its subfolders; a new file directly in it (a report) is fine."""
    from harness.trace.bundled import bundled_traces, resolve_trace_path  # here: the trace package imports this one
    from harness.paths import traces_dir

    # Bundled traces are package data, whether or not this command reads them.
    taken: dict[Path, str] = {(traces_dir() / e["file"]).resolve(): f"the bundled trace '{name}'"
                              for name, e in bundled_traces().items()}
    folders = []
    for path in inputs:
        p = Path(path)
        if not p.exists():  # a trace given by its short name
            with contextlib.suppress(InputError):
                p = resolve_trace_path(path)
        if p.is_dir():
            folders.append((p.resolve(), path))
        elif p.exists():
            taken[p.resolve()] = f"the input {path}"
    for option, path in outputs.items():
        if path is None:
            continue
        p = Path(path).resolve()
        if p in taken:
            raise InputError(f"{path} would overwrite {taken[p]}; choose another path", field=option)
        for folder, name in folders:
            if clobbers_results(folder, p):
                raise InputError(f"{path} would overwrite part of the input folder {name}; choose another path",
                                 field=option)
        taken[p] = f"what {option} writes"


RESULT_FILES = frozenset({"run.json", "sweep.json", "sweep.parquet", "plan.json", "plan.parquet"})


def clobbers_results(folder: Path, path: Path) -> bool:
    """Whether writing `path` (resolved) would overwrite part of the results folder `folder` (resolved) of a replay,
    sweep or plan: its run / sweep / plan files or anything in its subfolders. A new file directly in it (a report)
    does not."""
    return folder in path.parents and (path.parent != folder or path.name in RESULT_FILES)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def created_utc() -> str:
    """The creation time an output records: now, or SOURCE_DATE_EPOCH (reproducible builds: a fixed timestamp) when
    that is set. A malformed SOURCE_DATE_EPOCH is bad input, named."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        t = datetime.fromtimestamp(int(epoch), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise InputError(f"expected whole seconds since 1970-01-01 UTC, got {epoch!r}",
                         field="SOURCE_DATE_EPOCH") from None
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
