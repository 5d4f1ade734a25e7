"""`bench sweep SWEEP.toml` and `bench plan TRACE`: many replays, locally or on Ray. Thin: parse, call
harness.sweep, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harness.commands.common import deployment_pair, load_shaped, per_label, trace_input_options
from harness.errors import InputError
from harness.outputs import created_utc
from harness.results.slo import parse_slo
from harness.sweep.executors import EXECUTORS

_executor_options = [
    click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Points run at once (local processes, or Ray CPUs when Ray is started here)."),
    click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                 help="local: a process pool on this machine; ray: tasks on a Ray cluster."),
    click.option("--address", default=None, metavar="ADDR",
                 help="Ray cluster to join (e.g. ray://head:10001 or auto); default: start one here."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]


def _num(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _check_address(executor: str, address: str | None) -> None:
    if address and executor != "ray":
        raise InputError("--address names a Ray cluster; add --executor ray", field="--address")


def _check_out(out_dir: str | Path, kind: str) -> None:
    """A sweep or plan adds to its folder; refuse one that another command's results own: a replay's (a later replay
    there replaces the whole folder) or the other kind's (each writes report.html)."""
    out = Path(out_dir)
    other = "plan" if kind == "sweep" else "sweep"
    if (out / "run.json").is_file():
        raise InputError(f"{out_dir} is a replay output folder (run.json): a later replay there would replace it, "
                         f"the {kind}'s results with it; give another folder", field="--out")
    if (out / f"{other}.json").is_file():
        raise InputError(f"{out_dir} holds a bench {other}'s results ({other}.json), whose report.html the {kind}'s "
                         "would replace; give another folder", field="--out")


def _with(options):
    def wrap(command):
        for option in reversed(options):
            command = option(command)
        return command
    return wrap


@click.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: out/sweep/<sweep name>); finished points in it are reused.")
@click.option("--retry-failed", is_flag=True, help="Run failed points again instead of reusing their error.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@_with(_executor_options)
def sweep(sweep_file: str, out_dir: str | None, retry_failed: bool, no_report: bool, jobs: int, executor: str,
          address: str | None, quiet: bool, as_json: bool) -> None:
    """Run every point of SWEEP_FILE (traces x backends x knob values; one replay each) into one table
    (sweep.parquet), sweep.json and report.html. Interrupted sweeps resume: finished points are not rerun."""
    from harness.sweep.run import run_sweep
    from harness.sweep.spec import load_sweep

    _check_address(executor, address)
    created_utc()   # a malformed SOURCE_DATE_EPOCH fails now, not after every point has run
    spec = load_sweep(sweep_file)
    out = Path(out_dir or Path("out/sweep") / spec.name)
    _check_out(out, "sweep")
    table, meta = run_sweep(spec, out, executor=executor, jobs=jobs, address=address, retry_failed=retry_failed,
                            show_progress=not quiet and not as_json and sys.stdout.isatty(), report=not no_report)
    if as_json:
        click.echo(json.dumps(meta, indent=2, default=str))
        return
    meets = int(table.get_column("meets_slo").sum())
    click.echo(f"{meta['points']} points ({meta['computed']} run, {meta['reused']} reused, {meta['failed']} failed; "
               f"{meets} meet the SLO) in {meta['wall_s']:.1f} s")
    from harness.sweep.report import best_per_backend
    for b in best_per_backend(table):
        r = b["row"]
        if r is None:
            click.echo(f"  {b['label']}: no point meets the SLO")
            continue
        knobs = ", ".join(f"{c.removeprefix('knob:')}={r[c]}" for c in table.columns
                          if c.startswith("knob:") and r[c] is not None)
        click.echo(f"  {b['label']}: best point {r['point']} ({knobs or 'defaults'}): {r['chips']} chips, "
                   f"{_num(r['output_tokens_per_s_per_chip'], ',.1f')} output tok/s/chip, p99 TPOT "
                   f"{_num(r['tpot_ms_p99'], '.1f')} ms, ${_num(r['cost_per_million_output_tokens'], '.3f')} per 1M "
                   "output tokens")
    click.echo(f"wrote {out}/sweep.parquet, sweep.json" + ("" if no_report else ", report.html"))


@click.command()
@click.argument("trace")
@trace_input_options
@click.option("--backend", "backends", multiple=True, metavar="NAME",
              help="Hardware spec to plan for; repeatable (default: cloudmatrix384 and h800-ib).")
@click.option("--deployment", "deployments", multiple=True, metavar="[LABEL=]PREFILL,DECODE",
              help="Deployment specs of a backend's instances, or of every backend without LABEL= (default: the "
                   "backend's standard ones).")
@click.option("--slo", "slo_text", default="ttft=2s,tpot=50ms", show_default=True,
              help="Objectives; met at percentile=P (default 99), rejected requests counting as misses.")
@click.option("--objective", type=click.Choice(["cost", "chips"]), default="cost", show_default=True,
              help="Cheapest deployment, or fewest chips.")
@click.option("--max-prefill", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="Most prefill instances to consider.")
@click.option("--max-decode", type=click.IntRange(1, 10_000), default=4, show_default=True,
              help="Most decode instances to consider.")
@click.option("--max-chips", type=click.IntRange(min=1), default=None, help="Most chips in all.")
@click.option("--set", "sets", multiple=True, metavar="SPEC.PATH=VALUE", help="Override a spec file value.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of every evaluated replay's random generator.")
@click.option("--block-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Tokens per cache block when blocks are derived from sessions.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/plan", show_default=True,
              help="Output folder; points evaluated before are reused.")
@_with(_executor_options)
def plan(trace: str, backends: tuple[str, ...], deployments: tuple[str, ...], slo_text: str, objective: str,
         max_prefill: int, max_decode: int, max_chips: int | None, sets: tuple[str, ...], seed: int, block_size: int,
         out_dir: str, jobs: int, executor: str, address: str | None, quiet: bool, as_json: bool,
         **trace_opts) -> None:
    """Find, per backend, the cheapest (or fewest-chip) prefill/decode instance counts that meet the SLO on TRACE,
    with a monotone search instead of the full grid; print the winner and its margin; write plan.json,
    plan.parquet and report.html to --out."""
    from harness.sim.replay import default_deployment, defaults, labels_for
    from harness.sweep.plan import Bounds, plan_deployments
    from harness.sweep.report import render_sweep_report
    from harness.sweep.spec import Backend, trace_ref

    _check_address(executor, address)
    created_utc()   # a malformed SOURCE_DATE_EPOCH fails now, not after the search
    _check_out(out_dir, "plan")
    slo = parse_slo(slo_text)
    backends = backends or tuple(defaults()["backends"])
    labels = labels_for(backends)
    chosen = per_label(deployments, "--deployment", labels, deployment_pair)
    items = []
    for label, name in zip(labels, backends):
        if label in chosen:
            prefill, decode = chosen[label]
        else:
            d = default_deployment(name)
            prefill, decode = d["prefill"], d["decode"]
        items.append(Backend(label, name, prefill, decode, {"prefill_instances": 1, "decode_instances": 1}))
    ref = trace_ref(trace, {"format": trace_opts["fmt"], "strict": trace_opts["strict"] or None,
                            **{k: trace_opts[k] for k in ("limit", "window", "time_scale", "rate")}})
    # Load once here so a bad trace or shaping option fails now, with one clear line, not in every point.
    workload = load_shaped(ref["path"], warn=False, **trace_opts)
    if len(workload) == 0:
        raise InputError("no requests left after loading and shaping", path=trace)
    result = plan_deployments(ref, items, slo, out_dir, objective=objective,
                              bounds=Bounds(max_prefill, max_decode, max_chips), sets=list(sets), seed=seed,
                              block_size=block_size, executor=executor, jobs=jobs, address=address,
                              show_progress=not quiet and not as_json and sys.stdout.isatty())
    render_sweep_report(out_dir, Path(out_dir) / "report.html")
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"plan for {trace} ({len(workload):,} requests), SLO TTFT <= {slo.ttft_s:g} s, TPOT <= "
               f"{slo.tpot_ms:g} ms at p{result['slo']['percentile']:g}; objective: {objective}")
    for b in result["backends"]:
        head = (f"  {b['label']}: {b['evaluated']} of {b['grid_cells']} deployments evaluated "
                f"({b['prefill']} x {b['prefill_chips_per_instance']} chips, {b['decode']} x "
                f"{b['decode_chips_per_instance']} chips)")
        click.echo(head)
        w, c = b["winner"], b["closest_miss"]
        why = c and (f"failed: {c['error']}" if c["status"] != "ok" else
                     f"p99 TTFT {_num(c['slo_ttft_s'], '.3f')} s, TPOT {_num(c['slo_tpot_ms'], '.1f')} ms, "
                     f"{c['requests_rejected']} rejected")
        if w is None:
            click.echo("    no deployment in the space meets the SLO" +
                       (f" ({len(b['failed_points'])} points failed; see plan.json)" if b["failed_points"] else ""))
            if c:
                click.echo(f"    the largest evaluated ({c['prefill_instances']} + {c['decode_instances']}) misses: "
                           f"{why}; raise --max-prefill / --max-decode / --max-chips to search further")
            continue
        click.echo(f"    winner: {w['prefill_instances']} prefill + {w['decode_instances']} decode instances = "
                   f"{w['chips']} chips, ${w['cost_per_hour_usd']:,.2f}/hour; "
                   f"p99 TTFT {_num(w['slo_ttft_s'], '.3f')} s, "
                   f"TPOT {_num(w['slo_tpot_ms'], '.1f')} ms (margin {_num(w['slo_margin'], '.0%')}); "
                   f"{_num(w['output_tokens_per_s_per_chip'], ',.1f')} output tok/s/chip")
        if c:
            smaller = "cheaper" if objective == "cost" else "smaller"
            click.echo(f"    next {smaller} evaluated ({c['prefill_instances']} + {c['decode_instances']}) misses: "
                       f"{why}")
    click.echo(f"best: {result['best'] or 'none'}")
    click.echo(f"wrote {out_dir}/plan.json, plan.parquet, report.html")
