"""`bench replay TRACE`: replay a trace on several backends and compare. Thin: parse, call harness.sim, print."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import click

from harness import __version__
from harness.commands.common import Finite, console, load_shaped, trace_input_options
from harness.commands.common import deployment_pair as _deployments
from harness.commands.common import per_label as _per_label
from harness.errors import InputError
from harness.results.slo import parse_slo
from harness.outputs import clobbers_results, created_utc, refuse_overwriting
from harness.results.write import check_replay_folder, dumps, write_replay
from harness.sim.config import CACHE_SCOPES, DP_BALANCE, ROUTING_POLICIES, SimConfig
from harness.sim.replay import (COMPARISONS, BackendPlan, build_costs, default_deployment, defaults, labels_for,
                                overrides_per_plan, run_backend, simulated_seconds, size_plans, sizing_notes,
                                trace_meta)


def _count(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError("must be a whole number of at least 1")
    return n


def _nonneg_int(text: str) -> int:
    n = int(text)
    if n < 0:
        raise ValueError("must be a whole number of at least 0")
    return n


def _size_bytes(text: str) -> int:
    from harness.hardware.units import parse_quantity
    return 0 if text.strip() == "0" else int(parse_quantity(text, "size"))


def _price(text: str) -> float:
    x = float(text)
    if not 0 < x < math.inf:
        raise ValueError("must be a positive $/chip-hour")
    return x


def _choice(choices):
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


_PER = "[LABEL=]"


@click.command()
@click.argument("trace")
@trace_input_options
@click.option("--backend", "backends", multiple=True, metavar="NAME",
              help="Hardware spec to replay on; repeatable (default: cloudmatrix384 and h800-ib).")
@click.option("--deployment", "deployments", multiple=True, metavar=f"{_PER}PREFILL,DECODE",
              help="Deployment spec names for a backend's prefill and decode instances.")
@click.option("--prefill-instances", multiple=True, metavar=f"{_PER}N", help="Prefill instances.")
@click.option("--decode-instances", multiple=True, metavar=f"{_PER}N", help="Decode instances.")
@click.option("--batch-cap", multiple=True, metavar=f"{_PER}N", help="Decode batch cap per chip.")
@click.option("--token-budget", multiple=True, metavar=f"{_PER}N", help="Prefill new tokens per chip per step.")
@click.option("--chunk", multiple=True, metavar=f"{_PER}N", help="Chunk prompts into N-token pieces (0: never).")
@click.option("--cache-capacity", multiple=True, metavar=f"{_PER}SIZE",
              help="DRAM context cache (e.g. 2TB; 0 disables): the whole pool where access is uniform, else per "
                   "prefill instance.")
@click.option("--cache-ssd", multiple=True, metavar=f"{_PER}SIZE",
              help="SSD cache tier, counted like --cache-capacity (0: none).")
@click.option("--cache-scope", multiple=True, metavar=f"{_PER}SCOPE",
              help=f"Cache reach: {', '.join(CACHE_SCOPES)} (default: pool where access is uniform, else sharded).")
@click.option("--routing", multiple=True, metavar=f"{_PER}POLICY",
              help=f"{', '.join(ROUTING_POLICIES)} (default: least-loaded where cache access is uniform, "
                   "else cache-aware).")
@click.option("--dp-balance", multiple=True, metavar=f"{_PER}POLICY",
              help="Decode attention data parallelism: least-kv (default; each request lives on one DP rank, placed "
                   "where the least KV is, and a step waits for the busiest rank) or perfect (work split evenly).")
@click.option("--price", multiple=True, metavar=f"{_PER}USD", help="$/chip-hour, overriding the hardware spec.")
@click.option("--block-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Tokens per cache block when blocks are derived from sessions.")
@click.option("--compare", "comparison", type=click.Choice(COMPARISONS), default=None,
              help="Size backends after the first: equal chips, equal cost, or as given (default: equal-chips).")
@click.option("--prefill-share", type=Finite(0, 1, min_open=True, max_open=True), default=None,
              help="With equal-chips/equal-cost: the share of each resized backend's chips in prefill "
                   "(default: the first backend's).")
@click.option("--slo", "slo_text", default="ttft=2s,tpot=50ms", show_default=True,
              help="Objectives for goodput and attainment; add percentile=P to judge the run at a percentile.")
@click.option("--set", "sets", multiple=True, metavar="SPEC.PATH=VALUE", help="Override a spec file value.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the run's one random generator.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/replay", show_default=True,
              help="Output folder (replaced atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print run.json and every summary as one JSON document.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the HTML report here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def replay(trace: str, backends: tuple[str, ...], deployments: tuple[str, ...], prefill_instances, decode_instances,
           batch_cap, token_budget, chunk, cache_capacity, cache_ssd, cache_scope, routing, dp_balance, price, block_size,
           comparison, prefill_share, slo_text, sets, seed, out_dir, as_json, report_path, quiet, **trace_opts) -> None:
    """Replay TRACE (a file or a bundled trace name) on each backend with prefill/decode disaggregation and a
    context cache; write per-request results, time series and summaries to --out, and compare the backends."""
    slo = parse_slo(slo_text)
    _check_outputs(trace, out_dir, report_path)
    created_utc()   # a malformed SOURCE_DATE_EPOCH fails now, not after the replay
    backends = backends or tuple(defaults()["backends"])
    labels = labels_for(backends)
    per = {name: _per_label(vals, f"--{name.replace('_', '-')}", labels, parse) for name, vals, parse in [
        ("deployment", deployments, _deployments), ("prefill_instances", prefill_instances, _count),
        ("decode_instances", decode_instances, _count), ("batch_cap", batch_cap, _count),
        ("token_budget", token_budget, _count), ("chunk", chunk, _nonneg_int),
        ("cache_capacity", cache_capacity, _size_bytes), ("cache_ssd", cache_ssd, _size_bytes),
        ("cache_scope", cache_scope, _choice(CACHE_SCOPES)), ("routing", routing, _choice(ROUTING_POLICIES)),
        ("dp_balance", dp_balance, _choice(DP_BALANCE)), ("price", price, _price)]}
    plans = []
    for label, backend in zip(labels, backends):
        if label in per["deployment"]:
            prefill_dep, decode_dep = per["deployment"][label]
            d = {"prefill_instances": 1, "decode_instances": 1}
        else:
            d = default_deployment(backend)
            prefill_dep, decode_dep = d["prefill"], d["decode"]
        fixed = {k for k in ("prefill", "decode") if label in per[f"{k}_instances"]}
        config = SimConfig(prefill_instances=per["prefill_instances"].get(label, d["prefill_instances"]),
                           decode_instances=per["decode_instances"].get(label, d["decode_instances"]),
                           routing=per["routing"].get(label), cache_scope=per["cache_scope"].get(label),
                           dp_balance=per["dp_balance"].get(label, "least-kv"),
                           token_budget_per_chip=per["token_budget"].get(label), chunk_tokens=per["chunk"].get(label),
                           batch_cap_per_chip=per["batch_cap"].get(label),
                           cache_pool_bytes=per["cache_capacity"].get(label),
                           cache_ssd_bytes=per["cache_ssd"].get(label),
                           block_size=block_size, seed=seed)
        plans.append(BackendPlan(label, backend, prefill_dep, decode_dep, config, per["price"].get(label),
                                 frozenset(fixed)))
    comparison = comparison or defaults()["comparison"]
    if prefill_share is not None and (comparison == "as-given" or len(plans) < 2):   # else silently unused
        raise InputError("splits the chips of backends resized to the first; it needs a second backend and "
                         "--compare equal-chips or equal-cost", field="--prefill-share")
    workload = load_shaped(trace, **trace_opts)
    if len(workload) == 0:
        raise InputError("no requests left after loading and shaping", path=trace)
    costs = [build_costs(p, own) for p, own in zip(plans, overrides_per_plan(plans, sets))]
    plans = size_plans(plans, costs, comparison, prefill_share)
    notes = [f"{comparison}: {note}" for note in sizing_notes(plans, costs, comparison)]
    for note in notes:
        click.echo(f"note: {note}", err=True)

    started = time.perf_counter()
    outputs = []
    show = not quiet and sys.stdout.isatty() and not as_json
    for plan, c in zip(plans, costs):
        if show:
            from rich.markup import escape
            from rich.progress import Progress
            with Progress(transient=True) as bar:
                task = bar.add_task(escape(plan.label), total=len(workload))
                outputs.append(run_backend(workload, plan, c, slo, lambda k: bar.update(task, completed=k)))
        else:
            outputs.append(run_backend(workload, plan, c, slo))
    wall_s = time.perf_counter() - started

    run = {"harness_version": __version__, "created_utc": created_utc(), "seed": seed,
           "trace": trace_meta(workload), "slo": slo.as_json(), "comparison": comparison,
           "options": {"backends": [{"label": p.label, "backend": p.backend, "prefill": p.prefill_deployment,
                                     "decode": p.decode_deployment, "price_usd": p.price_usd,
                                     **{k: v for k, v in dataclasses.asdict(p.config).items() if k != "record_steps"}}
                                    for p in plans],
                       "prefill_share": prefill_share, "set": list(sets),
                       "trace_options": {k: v for k, v in trace_opts.items() if v is not None}},
           "backends": [p.label for p in plans], "notes": notes}
    path = write_replay(out_dir, run, outputs)
    if report_path:
        from harness.report import render_report
        render_report([str(path)], report_path)
    if as_json:
        click.echo(dumps({"run": run, "summaries": {o.label: o.summary for o in outputs}}), nl=False)
        return
    _print_table(outputs, slo)
    sim_s = simulated_seconds(outputs)
    click.echo(f"wrote {path}/ ({len(workload):,} requests x {len(outputs)} backends; "
               f"{sim_s:,.0f} simulated s in {wall_s:.1f} s wall, {sim_s / max(wall_s, 1e-9):,.0f} sim-s per wall-s)")
    if report_path:
        click.echo(f"wrote {report_path}")


def _chips_cell(s: dict) -> str:
    p, d = s["deployment"]["prefill"], s["deployment"]["decode"]
    return f"{s['chips']} ({p['chips_per_instance']}x{p['instances']} + {d['chips_per_instance']}x{d['instances']})"


def _print_table(outputs, slo) -> None:
    from rich.table import Table

    def fmt(x, spec=",.1f"):
        return "-" if x is None else format(x, spec)

    # Goodput and attainment count the requests that meet this SLO: the title names it.
    table = Table(title=f"bench replay (SLO: TTFT <= {slo.ttft_s:g} s, TPOT <= {slo.tpot_ms:g} ms)")
    table.add_column("metric")
    for o in outputs:
        table.add_column(o.label, justify="right")
    rows = [
        ("chips (prefill x n + decode x n)", _chips_cell),
        ("requests completed / rejected", lambda s: f"{s['requests_completed']:,} / {s['requests_rejected']:,}"),
        ("input tokens/s per chip", lambda s: fmt(s["input_tokens_per_s_per_chip"])),
        ("output tokens/s per chip", lambda s: fmt(s["output_tokens_per_s_per_chip"])),
        ("TTFT p50 / p99 (s)", lambda s: f"{fmt(s['ttft_s']['p50'], '.3f')} / {fmt(s['ttft_s']['p99'], '.3f')}"),
        ("TPOT p50 / p99 (ms)", lambda s: f"{fmt(s['tpot_ms']['p50'])} / {fmt(s['tpot_ms']['p99'])}"),
        ("E2E p50 / p99 (s)", lambda s: f"{fmt(s['e2e_s']['p50'], '.2f')} / {fmt(s['e2e_s']['p99'], '.2f')}"),
        ("goodput (req/s)", lambda s: fmt(s["goodput_req_per_s"], ".2f")),
        ("SLO attainment (requests)", lambda s: fmt(s["slo_attainment"], ".1%")),
        *([(f"SLO met at p{outputs[0].summary['slo_percentile']['percentile']:g}",
            lambda s: "met" if s["slo_percentile"]["met"] else "missed")]
          if "slo_percentile" in outputs[0].summary else []),
        ("cache hit (tokens)", lambda s: fmt(s["cache_hit_token_ratio"], ".1%")),
        ("busy prefill / decode (time)", lambda s: f"{fmt(s['utilisation']['prefill'], '.0%')} / "
                                                   f"{fmt(s['utilisation']['decode'], '.0%')}"),
        ("$ per 1M output tokens", lambda s: fmt(s["cost_per_million_output_tokens"], ",.2f")),
        ("$ per hour, all chips", lambda s: fmt(s["cost_per_chip_hour_usd"] * s["chips"], ",.2f")),
    ]
    for name, cell in rows:
        table.add_row(name, *[cell(o.summary) for o in outputs])
    console().print(table)


def _check_outputs(trace: str, out_dir: str, report_path: str | None) -> None:
    """Before the replay runs: the output folder is one it may replace, and replacing it loses neither the trace
    nor the report (a report directly in the folder is kept: it is written after the folder)."""
    check_replay_folder(out_dir)
    refuse_overwriting({"--report": report_path}, [trace])
    out = Path(out_dir).resolve()
    if Path(trace).exists() and out in Path(trace).resolve().parents:
        raise InputError(f"the trace {trace} is inside the output folder {out_dir}, which the replay replaces; "
                         "give another --out", field="--out")
    if report_path:
        report = Path(report_path).resolve()
        if clobbers_results(out, report):
            raise InputError(f"{report_path} is one of the replay's own output files or folders; put the report "
                             f"directly in {out_dir} under another name, or elsewhere", field="--report")
