"""`bench plan`: per backend, the cheapest (or fewest-chip) prefill/decode instance counts that meet the SLO on a
trace, found by the monotone search in harness.sweep.search; every evaluated point is a sweep point (same store,
same executors, same table), so a rerun reuses them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import InputError
from harness.results.slo import Slo
from harness.step.deployment import load_deployment
from harness.sweep.executors import open_executor
from harness.sweep.run import created_utc, run_points
from harness.sweep.search import cheapest_feasible
from harness.sweep.spec import Backend, judged_slo, make_point
from harness.sweep.table import build_table, judge, write_json, write_table

OBJECTIVES = ("cost", "chips")


@dataclass(frozen=True)
class Bounds:
    max_prefill: int = 16
    max_decode: int = 4
    max_chips: int | None = None


def _touching(sets: list[str], specs: tuple[str, ...]) -> list[str]:
    """The `--set SPEC.PATH=VALUE` overrides whose SPEC is one of `specs`."""
    return [item for item in sets if item.partition("=")[0].split(".", 1)[0].strip() in specs]


def _deployment(name: str, sets: list[str]):
    dep = load_deployment(name)
    return load_deployment(name, _touching(sets, (name, dep.hardware.name, dep.llm.name)))


def _summary_row(record: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    s = record.get("summary") or {}
    verdict = judge(record.get("summary"), Slo(**point["slo"]))
    keep = ("chips", "output_tokens_per_s_per_chip", "input_tokens_per_s_per_chip", "goodput_req_per_s",
            "slo_attainment", "cost_per_million_output_tokens", "requests_rejected")
    return {"point_id": point["id"], "prefill_instances": point["knobs"]["prefill_instances"],
            "decode_instances": point["knobs"]["decode_instances"], "status": record["status"],
            "error": record.get("error"), **{k: s.get(k) for k in keep},
            "cost_per_hour_usd": s["chips"] * s["cost_per_chip_hour_usd"] if s else None, **verdict}


def plan_deployments(trace: dict[str, Any], backends: list[Backend], slo: Slo, out_dir: str | Path, *,
                     objective: str = "cost", bounds: Bounds = Bounds(), sets: list[str] = (), seed: int = 0,
                     block_size: int = 512, executor: str = "local", jobs: int = 1, address: str | None = None,
                     show_progress: bool | None = None) -> dict[str, Any]:
    """Search each backend; write OUT/points/, plan.parquet, plan.json; return plan.json's content."""
    if objective not in OBJECTIVES:
        raise InputError(f"must be one of {', '.join(OBJECTIVES)}", field="--objective")
    sets = list(sets)
    specs = []   # check every backend's specs and overrides before running anything
    for b in backends:
        prefill, decode = _deployment(b.prefill, sets), _deployment(b.decode, sets)
        for dep, phase in ((prefill, "prefill"), (decode, "decode")):   # else every point fails, and exit 0
            if dep.phase != phase or dep.hardware.name != b.backend:
                raise InputError(f"{b.label}: deployment '{dep.name}' is a {dep.phase} deployment on "
                                 f"{dep.hardware.name}, not a {phase} deployment on {b.backend}", field="--deployment")
        if prefill.llm.name != decode.llm.name:
            raise InputError(f"{b.label}: prefill serves '{prefill.llm.name}' but decode serves '{decode.llm.name}'",
                             field="--deployment")
        specs.append((prefill, decode, _touching(sets, (b.backend, b.prefill, b.decode, prefill.llm.name,
                                                        decode.llm.name))))
    smallest = min(p.chips + d.chips for p, d, _ in specs)
    if bounds.max_chips is not None and smallest > bounds.max_chips:
        raise InputError(f"{bounds.max_chips} chips cannot hold one prefill and one decode instance of any backend "
                         f"here (the smallest pair takes {smallest})", field="--max-chips")
    unused = [s for s in sets if not any(s in mine for _, _, mine in specs)]
    if unused:
        raise InputError(f"--set {unused[0]!r}: no backend of this plan uses that spec", field="--set")
    with open_executor(executor, jobs, address) as ex:
        return _plan(trace, backends, specs, slo, out_dir, ex, objective, bounds, sets, seed, block_size, jobs,
                     show_progress)


def _plan(trace, backends, specs, slo, out_dir, ex, objective, bounds, sets, seed, block_size, jobs, show_progress):
    all_points: list[dict[str, Any]] = []
    records: dict[str, dict[str, Any]] = {}
    results = []
    for b, (prefill, decode, mine) in zip(backends, specs):
        base = {item.partition("=")[0].strip(): item.partition("=")[2].strip() for item in mine}
        price = prefill.hardware.cost_per_chip_hour_usd

        def chips(p: int, d: int, pc=prefill.chips, dc=decode.chips) -> int:
            return p * pc + d * dc

        def cost(p: int, d: int, price=price) -> float:
            return chips(p, d) * price if objective == "cost" else float(chips(p, d))

        by_cell: dict[tuple[int, int], dict[str, Any]] = {}

        def feasible(cells: list[tuple[int, int]], b=b, base=base, by_cell=by_cell) -> list[bool]:
            points = [make_point(len(all_points) + i, trace, b, {"prefill_instances": p, "decode_instances": d,
                                                                 **base}, seed, slo, block_size)
                      for i, (p, d) in enumerate(cells)]
            all_points.extend(points)
            outcome = run_points(points, out_dir, ex, show_progress=show_progress,
                                 title=f"plan {b.label}: {len(cells)} point(s)")
            records.update(outcome.records)
            by_cell.update({c: pt for c, pt in zip(cells, points)})
            return [judge(outcome.records[pt["id"]]["summary"], Slo(**pt["slo"]))["meets_slo"] for pt in points]

        res = cheapest_feasible(bounds.max_prefill, bounds.max_decode, cost, feasible, width=max(jobs, 1),
                                allowed=lambda p, d: bounds.max_chips is None or chips(p, d) <= bounds.max_chips)
        winner = _summary_row(records[by_cell[res.best]["id"]], by_cell[res.best]) if res.best else None
        misses = [c for c, ok in res.evaluated.items() if not ok and (res.best is None or cost(*c) < cost(*res.best))]
        closest = max(misses, key=lambda c: (cost(*c), c), default=None)
        failed = [by_cell[c] for c in res.evaluated if records[by_cell[c]["id"]]["status"] != "ok"]
        results.append({
            "label": b.label, "backend": b.backend, "prefill": b.prefill, "decode": b.decode,
            "prefill_chips_per_instance": prefill.chips, "decode_chips_per_instance": decode.chips,
            "cost_per_chip_hour_usd": price, "grid_cells": bounds.max_prefill * bounds.max_decode,
            "evaluated": len(res.evaluated), "rounds": res.rounds, "winner": winner,
            "closest_miss": _summary_row(records[by_cell[closest]["id"]], by_cell[closest]) if closest else None,
            "failed_points": [{"point_id": p["id"], "error": records[p["id"]]["error"]} for p in failed],
        })
    key = "cost_per_hour_usd" if objective == "cost" else "chips"
    found = [r for r in results if r["winner"]]
    best = min(found, key=lambda r: (r["winner"][key], r["label"]))["label"] if found else None
    plan = {"kind": "plan", "harness_version": __version__, "created_utc": created_utc(), "trace": trace,
            "slo": judged_slo(slo).as_json(), "objective": objective, "seed": seed, "set": sets,
            "bounds": {"max_prefill_instances": bounds.max_prefill, "max_decode_instances": bounds.max_decode,
                       "max_chips": bounds.max_chips},
            "search": "monotone: walk decode instances up, k-ary search of the fewest prefill instances that "
                      "meet the SLO (never more than the previous decode count needed), cut at the best cost",
            "backends": results, "best": best}
    out = Path(out_dir)
    write_table(build_table(all_points, records), out / "plan.parquet")
    write_json(plan, out / "plan.json")
    return plan
