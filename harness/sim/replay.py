"""A replay: one workload on several backends, each sized per the comparison mode, into result tables.

This is where the hardware-ignorant event loop meets the cost model: it builds each backend's ServingCosts from
spec files, sizes the deployments, runs the simulator and turns its arrays into the output layout.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import InputError
from harness.results.requests import request_table
from harness.results.slo import Slo
from harness.results.summary import distribution, summarize
from harness.results.timeseries import timeseries
from harness.results.write import BackendOutput
from harness.sim.config import SimConfig
from harness.sim.costs import ServingCosts
from harness.sim.engine import simulate
from harness.sim.result import SimResult
from harness.trace.workload import Workload

COMPARISONS = ("as-given", "equal-chips", "equal-cost")


@functools.cache
def defaults() -> dict:
    """harness/sim/defaults.toml: the default backends, comparison mode and deployments per backend."""
    return tomllib.loads((Path(__file__).with_name("defaults.toml")).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class BackendPlan:
    """One backend of a replay: which specs, how many instances, and the run's overrides for it."""

    label: str
    backend: str
    prefill_deployment: str
    decode_deployment: str
    config: SimConfig
    price_usd: float | None = None              # $/chip-hour override; None: the hardware spec's
    sized: frozenset[str] = field(default=frozenset())   # instance counts the user fixed (never resized)


def labels_for(backends: Sequence[str]) -> list[str]:
    """Backend names as labels; a repeated name gets -2, -3, ... so every label (and output folder) is unique."""
    seen: dict[str, int] = {}
    out = []
    for b in backends:
        seen[b] = seen.get(b, 0) + 1
        out.append(b if seen[b] == 1 else f"{b}-{seen[b]}")
    return out


def default_deployment(backend: str) -> dict:
    known = defaults()["deployments"]
    if backend not in known:
        raise InputError(f"no default deployment for backend '{backend}' (known: {', '.join(sorted(known))}); "
                         "name one with --deployment", field="--backend")
    return known[backend]


def specs_used(plan: BackendPlan) -> set[str]:
    """Names of every spec file a backend plan reads: hardware, both deployments and their LLMs."""
    from harness.step import load_deployment

    llms = {load_deployment(name).llm.name for name in (plan.prefill_deployment, plan.decode_deployment)}
    return {plan.backend, plan.prefill_deployment, plan.decode_deployment, *llms}


def overrides_per_plan(plans: Sequence[BackendPlan], overrides: Sequence[str]) -> list[list[str]]:
    """Each plan's share of the run's --set overrides: those naming one of its specs. An override that no backend
    reads is an error, so a misspelt spec name never passes silently."""
    used = [specs_used(p) for p in plans]
    for item in overrides:
        spec = item.split("=", 1)[0].split(".", 1)[0].strip()
        if not any(spec in u for u in used):
            names = ", ".join(sorted(set().union(*used)))
            raise InputError(f"--set {item!r}: '{spec}' is not a spec any backend of this run uses ({names})",
                             field="--set")
    return [[o for o in overrides if o.split("=", 1)[0].split(".", 1)[0].strip() in u] for u in used]


def build_costs(plan: BackendPlan, overrides: Sequence[str] = ()) -> ServingCosts:
    from harness.step.serving import build_serving_costs   # the cost model; imported here so the loop stays free of it
    return build_serving_costs(plan.backend, prefill_deployment=plan.prefill_deployment,
                               decode_deployment=plan.decode_deployment, overrides=tuple(overrides))


def _chips(plan: BackendPlan, costs: ServingCosts) -> int:
    return plan.config.prefill_instances * costs.prefill_chips + plan.config.decode_instances * costs.decode_chips


def _price(plan: BackendPlan, costs: ServingCosts) -> float:
    return float(plan.price_usd if plan.price_usd is not None else costs.cost_per_chip_hour_usd)


def size_plans(plans: Sequence[BackendPlan], costs: Sequence[ServingCosts], comparison: str,
               prefill_share: float | None = None) -> list[BackendPlan]:
    """Resize every backend after the first to the first's chip count (equal-chips) or spend (equal-cost), with
    `prefill_share` of the chips in prefill (default: the first's share). Instance counts the user fixed are kept."""
    if comparison not in COMPARISONS:
        raise InputError(f"must be one of {', '.join(COMPARISONS)}", field="--compare")
    for plan, c in zip(plans, costs):
        check_chips(plan, c, "--prefill-instances/--decode-instances")
    if comparison == "as-given" or len(plans) < 2:
        return list(plans)
    ref, ref_costs = plans[0], costs[0]
    ref_chips = _chips(ref, ref_costs)
    if prefill_share is None:
        prefill_share = ref.config.prefill_instances * ref_costs.prefill_chips / ref_chips
    out = [ref]
    for plan, c in zip(plans[1:], costs[1:]):
        target = ref_chips if comparison == "equal-chips" else ref_chips * _price(ref, ref_costs) / _price(plan, c)
        _bounded(plan.label, target, "--price" if comparison == "equal-cost" else "--prefill-instances")
        p, d = _closest_counts(plan, c, target, prefill_share)
        out.append(dataclasses.replace(plan, config=dataclasses.replace(plan.config, prefill_instances=p,
                                                                        decode_instances=d)))
    return out


MAX_CHIPS = 1_000_000  # a sanity bound per backend, ten times the largest clusters built; beyond it sizing and the
                      # simulator's per-instance state would run for hours instead of failing


def _bounded(label: str, chips: float, option: str) -> None:
    if chips > MAX_CHIPS:
        raise InputError(f"{label} would have {chips:,.0f} chips; a backend may have at most {MAX_CHIPS:,}",
                         field=option)


def check_chips(plan: BackendPlan, costs: ServingCosts, option: str) -> None:
    """Refuse a plan beyond MAX_CHIPS (a replay's instance options, a sweep point's knobs)."""
    _bounded(plan.label, _chips(plan, costs), option)


def sizing_notes(plans: Sequence[BackendPlan], costs: Sequence[ServingCosts], comparison: str) -> list[str]:
    """A line for each resized backend whose whole instances land off the reference's chips or spend, so a user
    knows how far the comparison is from as equal as asked (per-chip rates at a fixed offered load move with it)."""
    if comparison == "as-given" or len(plans) < 2:
        return []
    def amount(plan, c):
        chips = _chips(plan, c)
        return chips if comparison == "equal-chips" else chips * _price(plan, c)
    ref = amount(plans[0], costs[0])
    unit = (lambda x: f"{x:,.0f} chips") if comparison == "equal-chips" else (lambda x: f"${x:,.2f}/hour")
    return [f"{plan.label}: {unit(amount(plan, c))} against {plans[0].label}'s {unit(ref)}: the closest whole "
            f"instances ({plan.config.prefill_instances} prefill x {c.prefill_chips} + "
            f"{plan.config.decode_instances} decode x {c.decode_chips} chips)"
            for plan, c in zip(plans[1:], costs[1:]) if abs(amount(plan, c) - ref) > 1e-9 * ref]


def _closest_counts(plan: BackendPlan, c: ServingCosts, target_chips: float, prefill_share: float) -> tuple[int, int]:
    """Whole instance counts (at least one of each) whose chips come closest to the target, ties going to the
    prefill share closest to the reference's; counts the user fixed stay fixed. Rounding each count on its own
    overshoots: with 144-GPU decode instances, 154 target GPUs would round to 2 x 32 + 144 = 208, not 176."""
    def span(n_chips: int, fixed: bool, current: int) -> range:
        return range(current, current + 1) if fixed else range(1, max(1, math.ceil(target_chips / n_chips)) + 2)

    best = None
    for p in span(c.prefill_chips, "prefill" in plan.sized, plan.config.prefill_instances):
        for d in span(c.decode_chips, "decode" in plan.sized, plan.config.decode_instances):
            chips = p * c.prefill_chips + d * c.decode_chips
            key = (abs(chips - target_chips), abs(p * c.prefill_chips / chips - prefill_share), chips)
            if best is None or key < best[0]:
                best = (key, p, d)
    return best[1], best[2]


def describe_deployment(plan: BackendPlan, costs: ServingCosts) -> dict:
    """Each phase's deployment as the run used it (--set overrides applied), MTP included: the bundled specs take
    each source's acceptance (CloudMatrix 70%, DeepSeek 85%), which moves decode throughput."""
    def one(dep, chips: int, instances: int) -> dict:
        out = {"name": dep.name, "chips_per_instance": int(chips), "instances": int(instances),
               "parallelism": {"ep": dep.ep, "dp": dep.dp, "tp": dep.tp}, "precision": dep.precision}
        if dep.phase == "decode":
            out["mtp"] = {"draft_tokens": dep.mtp_draft_tokens, "accept": dep.mtp_accept}
        return out

    return {"prefill": one(costs.prefill, costs.prefill_chips, plan.config.prefill_instances),
            "decode": one(costs.decode, costs.decode_chips, plan.config.decode_instances)}


def representative_steps(result: SimResult, costs: ServingCosts) -> dict[str, dict[str, float]]:
    """A representative step of each phase that ran: the run's mean prefill step (mean piece, mean pieces per step)
    and its mean decode step (mean batch per chip, and the KV length decode steps were priced at: the busiest DP
    rank's, spread over the batch); as keyword arguments of ServingCosts.step_breakdown / step_span_s."""
    out: dict[str, dict[str, float]] = {}
    if result.prefill_steps:
        out["prefill"] = {"tokens": result.prefill_piece_tokens_sum / result.prefill_pieces,
                          "cached_tokens": result.prefill_cached_sum / result.prefill_pieces,
                          "requests": result.prefill_pieces / result.prefill_steps}
    if result.decode_steps:
        out["decode"] = {"batch_per_chip": result.decode_batch_sum / result.decode_steps / costs.decode_chips,
                         "mean_kv_len": result.decode_busiest_kv_sum / result.decode_steps}
    return out


def step_breakdown(result: SimResult, costs: ServingCosts) -> dict:
    """Per-category busy seconds of each phase's representative step (streams overlap: they may sum to more than
    the step), and that step's time under "step_s"."""
    return {phase: {"step_s": float(costs.step_span_s(phase, **step)),
                    "busy_s": {k: float(v) for k, v in costs.step_breakdown(phase, **step).items()}}
            for phase, step in representative_steps(result, costs).items()}


def trace_duration_s(workload: Workload) -> float:
    a = workload.requests.get_column("arrival_s")
    return float(a.max() - a.min()) if a.len() else 0.0


def trace_meta(workload: Workload) -> dict:
    req = workload.requests
    path = workload.source_path
    digest = None
    if path and Path(path).is_file():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
    duration = trace_duration_s(workload)
    return {"name": workload.name, "path": path, "sha256": digest, "format": workload.source_format,
            "requests": req.height, "duration_s": duration,
            "rate_req_s": (req.height - 1) / duration if duration > 0 else None,
            "input_tokens": distribution(req.get_column("input_tokens").cast(float)),
            "output_tokens": distribution(req.get_column("output_tokens").cast(float))}


def run_backend(workload: Workload, plan: BackendPlan, costs: ServingCosts, slo: Slo,
                progress: Callable[[int], None] | None = None) -> BackendOutput:
    result = simulate(workload, costs, plan.config, progress)
    table = request_table(result, workload)
    summary = summarize(table, result, backend=plan.backend, label=plan.label,
                        deployment=describe_deployment(plan, costs), cost_per_chip_hour_usd=_price(plan, costs),
                        slo=slo, trace_duration_s=trace_duration_s(workload),
                        step_breakdown=step_breakdown(result, costs))
    summary["seed"] = plan.config.seed
    summary["notes"] = []
    return BackendOutput(plan.label, summary, table, timeseries(result, workload))


def simulated_seconds(outputs: Sequence[BackendOutput]) -> float:
    return float(np.sum([o.summary["simulated_duration_s"] for o in outputs]))
