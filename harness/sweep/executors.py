"""Executors: run points and hand each record back as it finishes, in whatever order they finish.

- local, 1 job: in this process (no pool to start);
- local, N jobs: a process pool (spawn: polars is not fork-safe), kept for the whole session so each worker
  loads the trace and builds a backend's costs once;
- ray: one task per point on a Ray cluster (`address` of an existing one, else a local one with `jobs` CPUs).
  Workers load the trace by path, so the path must be readable on the cluster's nodes (bundled traces are).

Results never depend on the executor: a point's record is a function of the point alone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from harness.errors import InputError
from harness.sweep.worker import run_point

EXECUTORS = ("local", "ray")
Point = dict[str, Any]
Record = dict[str, Any]
OnRecord = Callable[[Point, Record], None]


def _failed(point: Point, error: str) -> Record:
    return {"id": point["id"], "index": point["index"], "status": "failed", "error": error, "summary": None,
            "wall_s": None}


class Local:
    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def run(self, points: list[Point], on_record: OnRecord) -> None:
        if self.jobs <= 1:
            for p in points:
                on_record(p, run_point(p))
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"))
        futures = {self._pool.submit(run_point, p): p for p in points}
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                record = fut.result()
            except Exception as exc:  # the worker process died (e.g. out of memory): record it, go on
                record = _failed(p, f"worker failed: {type(exc).__name__}: {exc}")
                self.close()          # a broken pool takes no more work; the next batch gets a new one
            on_record(p, record)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class Ray:
    def __init__(self, jobs: int, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs Ray: pip install 'cmbench[ray]'", field="--executor") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=jobs, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"cannot start or reach Ray: {exc}", field="--address") from None
            self.started = True
        self.task = ray.remote(num_cpus=1)(run_point)

    def run(self, points: list[Point], on_record: OnRecord) -> None:
        refs = {self.task.remote(p): p for p in points}
        waiting = list(refs)
        while waiting:
            done, waiting = self.ray.wait(waiting, num_returns=1)
            for ref in done:
                p = refs[ref]
                try:
                    record = self.ray.get(ref)
                except Exception as exc:  # the task's worker died: record it, go on
                    record = _failed(p, f"ray task failed: {type(exc).__name__}: {exc}")
                on_record(p, record)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


@contextlib.contextmanager
def open_executor(executor: str = "local", jobs: int = 1, address: str | None = None) -> Iterator[Local | Ray]:
    """An executor for a session of one or more batches: `ex.run(points, on_record)` calls on_record(point,
    record) in this process as each point finishes."""
    if executor not in EXECUTORS:
        raise InputError(f"must be one of {', '.join(EXECUTORS)}", field="--executor")
    ex = Ray(jobs, address) if executor == "ray" else Local(jobs)
    try:
        yield ex
    finally:
        ex.close()
