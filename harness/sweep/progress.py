"""Progress of a whole sweep: points done (failed ones counted), rate and time left, as a rich bar."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def sweep_progress(total: int, title: str, show: bool | None = None) -> Iterator[Callable[[bool], None]]:
    """Yield advance(ok): call once per finished point. No bar when `show` is False or stdout is not a terminal."""
    if show is None:
        show = sys.stdout.isatty()
    if not show or total == 0:
        yield lambda ok: None
        return
    from rich.markup import escape
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[failed]}"), TimeElapsedColumn(),
               TextColumn("elapsed,"), TimeRemainingColumn(), TextColumn("left")]
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(escape(title), total=total, rate="", failed="")
        failed = 0

        def advance(ok: bool) -> None:
            nonlocal failed
            failed += 0 if ok else 1
            bar.advance(task)
            t = bar.tasks[task]
            rate = f"{t.completed / t.elapsed:.2f} pts/s" if t.elapsed else ""
            bar.update(task, rate=rate, failed=f"{failed} failed" if failed else "")

        yield advance
