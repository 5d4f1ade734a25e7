"""One sweep point, run in whatever process an executor picks: load the trace (once per process, by path, checked
against the sweep's sha256), build the backend's costs (memoised per process), replay, return a JSON-able record.

A point that fails records its error instead of raising, so the sweep goes on."""

from __future__ import annotations

import functools
import time
import traceback
from typing import Any

from harness.errors import InputError
from harness.results.slo import Slo
from harness.sim.replay import BackendPlan, build_costs, check_chips, run_backend
from harness.sweep.knobs import spec_overrides, to_plan
from harness.sweep.spec import code_digest, file_sha256
from harness.trace import Workload, load_trace, shape


@functools.lru_cache(maxsize=4)
def _workload(path: str, sha256: str, options: tuple[tuple[str, Any], ...]) -> Workload:
    if file_sha256(path) != sha256:
        raise InputError("trace file changed since the sweep was planned (sha256 differs)", path=path)
    o = dict(options)
    workload = load_trace(path, o.get("format"), strict=bool(o.get("strict", False)))
    return shape(workload, limit=o.get("limit"), window=o.get("window"), time_scale=o.get("time_scale"),
                 rate=o.get("rate"))


def load_point_trace(trace: dict[str, Any]) -> Workload:
    return _workload(trace["path"], trace["sha256"], tuple(sorted(trace["options"].items())))


@functools.lru_cache(maxsize=16)
def _costs(backend: str, prefill: str, decode: str, sets: tuple[str, ...]):
    from harness.sim.config import SimConfig
    return build_costs(BackendPlan(backend, backend, prefill, decode, SimConfig()), sets)


def point_plan(point: dict[str, Any]) -> tuple[BackendPlan, list[str]]:
    """The replay plan of a point and its `--set` overrides."""
    plan = to_plan(point["label"], point["backend"], point["prefill"], point["decode"], point["knobs"],
                   point["instances"], point["seed"], point["block_size"])
    llm = _llm_of(point["decode"])
    sets = spec_overrides(point["knobs"], {"prefill": point["prefill"], "decode": point["decode"],
                                           "hardware": point["backend"], "llm": llm})
    return plan, sets


@functools.lru_cache(maxsize=32)
def _llm_of(deployment: str) -> str:
    from harness.hardware.specfile import load_spec
    return load_spec("deployment", deployment)[0]["llm"]


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """Replay one point; never raises. Record: id, index, status ("ok" | "failed"), error, summary, wall_s, and
    transient=True on a failure that must not be saved (the worker runs other code than the sweep planned)."""
    started = time.perf_counter()
    record: dict[str, Any] = {"id": point["id"], "index": point["index"], "status": "ok", "error": None,
                              "summary": None}
    try:
        if point["harness"] != code_digest():
            record["transient"] = True   # not saved: a rerun on settled code computes it
            raise InputError("the harness code or spec files changed since this sweep started; run it again")
        workload = load_point_trace(point["trace"])
        plan, sets = point_plan(point)
        costs = _costs(plan.backend, plan.prefill_deployment, plan.decode_deployment, tuple(sets))
        check_chips(plan, costs, "prefill_instances/decode_instances")  # else it would run for hours
        record["summary"] = run_backend(workload, plan, costs, Slo(**point["slo"])).summary
    except InputError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug or a model limit in one point must not stop the sweep; keep where it was
        where = traceback.extract_tb(exc.__traceback__)[-1]
        record.update(status="failed",
                      error=f"{type(exc).__name__}: {exc} ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
    record["wall_s"] = time.perf_counter() - started
    return record
