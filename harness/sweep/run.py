"""Run points through an executor with the resume store: skip finished points, save each new one as it lands,
then build the table from the store (so a resumed sweep and a fresh one give the same table)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from harness import __version__
from harness.outputs import created_utc
from harness.sweep.executors import Local, Ray, open_executor
from harness.sweep.progress import sweep_progress
from harness.sweep.spec import Sweep, expand, judged_slo
from harness.sweep.store import PointStore
from harness.sweep.table import build_table, write_json, write_table


@dataclass
class Outcome:
    records: dict[str, dict[str, Any]]     # point id -> record, for every point asked for
    computed: int                          # points run now
    reused: int                            # points found in the store
    wall_s: float


def run_points(points: list[dict[str, Any]], out_dir: str | Path, executor: Local | Ray, *,
               retry_failed: bool = False, show_progress: bool | None = None, title: str = "sweep") -> Outcome:
    """Every point's record: from OUT/points when already there, else run on `executor` (an open_executor
    session) and saved there as it finishes."""
    store = PointStore(out_dir)
    todo = store.pending(points, retry_failed)
    started = time.perf_counter()
    unsaved: dict[str, dict[str, Any]] = {}
    with sweep_progress(len(todo), title, show_progress) as advance:
        def on_record(point: dict[str, Any], record: dict[str, Any]) -> None:
            if record.get("transient"):
                unsaved[point["id"]] = record
            else:
                store.put(point, record)
            advance(record["status"] == "ok")
        executor.run(todo, on_record)
    records = {}
    for p in points:
        r = unsaved.get(p["id"]) or store.get(p["id"])
        if r is None:  # cannot happen unless the folder is changed under us
            raise RuntimeError(f"point {p['id']} has no record after running")
        records[p["id"]] = r
    return Outcome(records, len(todo), len(points) - len(todo), time.perf_counter() - started)


def sweep_meta(sweep: Sweep, points: list[dict[str, Any]], outcome: Outcome, executor: str, jobs: int) -> dict:
    failed = sum(1 for r in outcome.records.values() if r["status"] != "ok")
    return {"kind": "sweep", "harness_version": __version__, "created_utc": created_utc(), "name": sweep.name,
            "sweep_file": sweep.path, "seed": sweep.seed, "slo": judged_slo(sweep.slo).as_json(),
            "traces": sweep.traces, "backends": [b.label for b in sweep.backends], "points": len(points),
            "failed": failed, "computed": outcome.computed, "reused": outcome.reused,
            "executor": executor, "jobs": jobs, "wall_s": outcome.wall_s}


def run_sweep(sweep: Sweep, out_dir: str | Path, *, executor: str = "local", jobs: int = 1,
              address: str | None = None, retry_failed: bool = False, show_progress: bool | None = None,
              report: bool = True) -> tuple[pl.DataFrame, dict]:
    """Run (or resume) a sweep into out_dir: points/, sweep.parquet, sweep.json and report.html."""
    points = expand(sweep)
    with open_executor(executor, jobs, address) as ex:
        outcome = run_points(points, out_dir, ex, retry_failed=retry_failed, show_progress=show_progress,
                             title=sweep.name)
    table = build_table(points, outcome.records)
    out = Path(out_dir)
    write_table(table, out / "sweep.parquet")
    meta = sweep_meta(sweep, points, outcome, executor, jobs)
    write_json(meta, out / "sweep.json")
    if report:
        from harness.sweep.report import render_sweep_report
        render_sweep_report(out, out / "report.html")
    return table, meta
