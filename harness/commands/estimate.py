"""`bench estimate`: steady-state step time, TPOT/TTFT, throughput and per-op breakdown of one deployment."""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from harness.commands.common import Finite, console
from harness.commands.ops import MAX_BATCH   # the step model holds up to here (bench ops export has the same bound)
from harness.errors import InputError
from harness.results.slo import parse_durations_ms
from harness.step.capacity import PREFILL_GRANULE_TOKENS, decode_capacity, prefill_capacity
from harness.step.deployment import Deployment, check_deployment, inline_deployment, load_deployment
from harness.step.estimate import deployment_fields
from harness.step.estimate import estimate as run_estimate
from harness.step.memory import check_weights_fit


@click.command()
@click.option("--deployment", "-d", multiple=True,
              help="Deployment spec name (see `bench models list`); repeat it to compare deployments at "
                   "--tpot-slo / --ttft-slo.")
@click.option("--hardware", help="Inline deployment: hardware spec name.")
@click.option("--llm", help="Inline deployment: LLM spec name.")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), help="Inline deployment: phase.")
@click.option("--chips", type=click.IntRange(min=1), help="Inline deployment: chips in the instance.")
@click.option("--ep", type=click.IntRange(min=1), help="Expert-parallel degree (ranks). Inline default: all ranks.")
@click.option("--tp", type=click.IntRange(min=1), help="Attention tensor-parallel degree.")
@click.option("--dp", type=click.IntRange(min=1), help="Attention data-parallel degree.")
@click.option("--precision", type=click.Choice(["bf16", "fp8", "int8"]), help="GEMM precision.")
@click.option("--batch", type=Finite(min=0, min_open=True, max=MAX_BATCH), help="Decode: requests per chip.")
@click.option("--kv-len", type=click.IntRange(min=1), help="Decode: KV length per request (tokens).")
@click.option("--tokens-per-chip", type=click.IntRange(min=1), help="Prefill: new tokens per chip per step.")
@click.option("--prompt-len", type=click.IntRange(min=1), help="Prefill: prompt length (tokens).")
@click.option("--cached-len", type=click.IntRange(min=0), default=0, show_default=True,
              help="Prefill: tokens of each prompt already in the context cache (read, not computed).")
@click.option("--mtp-accept", type=Finite(0, 1),
              help="MTP with one draft token accepted with probability P; 0 turns MTP off.")
@click.option("--microbatch/--no-microbatch", default=None,
              help="Two-microbatch overlap on every step, or off (default: where it shortens the step).")
@click.option("--eplb", type=click.Choice(["perfect", "default"]), help="Expert-load balance model.")
@click.option("--set", "sets", multiple=True, metavar="SPEC.PATH=VALUE",
              help="Override a spec value, e.g. cloudmatrix384.scale_up.bandwidth=98GB/s (repeatable).")
@click.option("--tpot-slo", metavar="TIMES",
              help="Decode: instead of --batch, find the largest batch per chip within each TPOT objective "
                   "(e.g. 15ms,30ms,50ms; bare numbers in ms), microbatching on or off unless given.")
@click.option("--ttft-slo", metavar="TIMES",
              help="Prefill: instead of --tokens-per-chip, find the most tokens per chip within each TTFT objective "
                   "(e.g. 1s,2s; bare numbers in s), microbatching on or off unless given.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def estimate(deployment, hardware, llm, phase, chips, ep, tp, dp, precision, batch, kv_len, tokens_per_chip,
             prompt_len, cached_len, mtp_accept, microbatch, eplb, sets, tpot_slo, ttft_slo, as_json) -> None:
    """Steady-state numbers for one deployment at one operating point, or (--tpot-slo / --ttft-slo) the most
    load it carries within latency objectives."""
    slo_mode = tpot_slo is not None or ttft_slo is not None
    if len(deployment) > 1 and not slo_mode:
        raise InputError("several --deployment compare at a latency objective: add --tpot-slo or --ttft-slo",
                         field="--deployment")
    deps = [_resolve(name, hardware, llm, phase, chips, ep, tp, dp, precision, batch, kv_len, tokens_per_chip,
                     prompt_len, cached_len, mtp_accept, sets) for name in (deployment or (None,))]
    if slo_mode:
        results = [_capacity(d, tpot_slo, ttft_slo, batch, kv_len, tokens_per_chip, prompt_len, cached_len,
                             microbatch, eplb) for d in deps]
        if len(results) == 1:
            click.echo(json.dumps(results[0], indent=2)) if as_json else _print_capacity(results[0])
        else:
            combined = {"objective": results[0]["objective"], "deployments": results}
            click.echo(json.dumps(combined, indent=2)) if as_json else _print_comparison(results)
        return
    (dep,) = deps
    if microbatch is not None:
        dep = dep.replace(microbatches=2, microbatching="always") if microbatch else dep.replace(microbatches=1)
    result = run_estimate(dep, batch, kv_len, tokens_per_chip, prompt_len, eplb, cached_len)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    _print(result)


def _resolve(deployment, hardware, llm, phase, chips, ep, tp, dp, precision, batch, kv_len, tokens_per_chip,
             prompt_len, cached_len, mtp_accept, sets) -> Deployment:
    """One deployment from its spec name (with the command line's changes) or from the inline description."""
    inline = [n for n, v in (("--hardware", hardware), ("--llm", llm), ("--phase", phase), ("--chips", chips))
              if v is not None]
    if deployment and inline:
        raise InputError(f"give either --deployment or an inline description, not both ({', '.join(inline)})",
                         field="--deployment")
    if deployment:
        if mtp_accept is not None:  # as overrides, so the file's MTP setting is never checked against another LLM
            sets = (*sets, f"{deployment}.mtp_draft_tokens={int(mtp_accept > 0)}", f"{deployment}.mtp_accept={mtp_accept}")
        dep = load_deployment(deployment, sets)
        changes = {k: v for k, v in (("ep", ep), ("tp", tp), ("dp", dp), ("precision", precision)) if v is not None}
        if changes:
            dep = dep.replace(**changes)
            if "dp" not in changes and ("tp" in changes):
                dep = dep.replace(dp=dep.ranks // dep.tp)
    else:
        missing = [n for n, v in (("--hardware", hardware), ("--llm", llm), ("--phase", phase), ("--chips", chips))
                   if v is None]
        if missing:
            raise InputError(f"give --deployment, or describe one inline (missing {', '.join(missing)})",
                             field=missing[0])
        dep = inline_deployment(hardware, llm, phase, chips, ep=ep, tp=tp or 1, dp=dp, precision=precision,
                                overrides=sets)
    dep = check_deployment(dep, "command line")
    check_weights_fit(dep)
    if dep.phase == "decode" and (tokens_per_chip or prompt_len or cached_len):
        raise InputError("--tokens-per-chip / --prompt-len / --cached-len are for prefill; this is a decode deployment",
                         field="--tokens-per-chip")
    if dep.phase == "prefill" and (batch or kv_len or mtp_accept):
        raise InputError("--batch / --kv-len / --mtp-accept are for decode; this is a prefill deployment",
                         field="--batch")
    if mtp_accept is not None:
        if mtp_accept > 0 and not dep.llm.mtp_modules:
            raise InputError(f"{dep.llm.name} has no MTP module", field="--mtp-accept")
        dep = dep.replace(mtp_draft_tokens=1 if mtp_accept > 0 else 0, mtp_accept=mtp_accept)
    return dep


def _capacity(dep, tpot_slo, ttft_slo, batch, kv_len, tokens_per_chip, prompt_len, cached_len, microbatch,
              eplb) -> dict:
    """The most load within each objective (harness.step.capacity), with the header fields of an estimate."""
    slo, option, load = (tpot_slo, "--tpot-slo", ("--batch", batch)) if tpot_slo is not None else \
        (ttft_slo, "--ttft-slo", ("--tokens-per-chip", tokens_per_chip))
    if tpot_slo is not None and ttft_slo is not None:
        raise InputError("give --tpot-slo (decode) or --ttft-slo (prefill), not both", field="--tpot-slo")
    wanted = "decode" if tpot_slo is not None else "prefill"
    if dep.phase != wanted:
        raise InputError(f"{option} is for {wanted}; {dep.name} is a {dep.phase} deployment", field=option)
    if load[1] is not None:
        raise InputError(f"{option} searches for the load; drop {load[0]}", field=load[0])
    slos = parse_durations_ms(slo, option, bare_unit="ms" if wanted == "decode" else "s")
    tried = (2 if microbatch else 1,) if microbatch is not None else (1, 2)
    eplb = eplb or dep.eplb
    if wanted == "decode":
        kv = kv_len if kv_len is not None else dep.kv_len
        point = {"kv_len": kv, "mtp_draft_tokens": dep.mtp_draft_tokens, "mtp_accept": dep.mtp_accept}
        points = decode_capacity(dep, kv, slos, tried, eplb)
    else:
        plen = prompt_len if prompt_len is not None else dep.prompt_len
        point = {"prompt_len": plen, "cached_len": cached_len}
        points = prefill_capacity(dep, plen, cached_len, slos, tried, eplb)
    return {**deployment_fields(dep, eplb), "microbatches_tried": list(tried),
            "objective": "tpot" if wanted == "decode" else "ttft", "operating_point": point, "points": points}


def _capacity_cells(p: dict, name: str, load_key: str) -> tuple[str, ...]:
    """Load, microbatches, latency, throughput, cost and limit of one SLO point, as table cells."""
    if not p["met"]:
        return "-", "-", "-", "-", "-", f"not met (lowest {p['lowest_latency_ms']:.2f} ms)"
    load = p[load_key]  # a TP group spanning chips holds one request at a fraction of one per chip
    return (f"{load:,.0f}" if load == int(load) else f"{load:,.3f}", str(p["microbatches"]), f"{p['tpot_ms' if name == 'TPOT' else 'ttft_ms']:.2f}",
            f"{p['throughput_per_chip']:,.1f}", f"{p['cost_per_million_tokens_usd']:.3f}",
            "HBM" if p["limited_by"] == "memory" else name)


def _print_comparison(results: list[dict]) -> None:
    """Several deployments at the same objectives: one row per (objective, deployment)."""
    decode = results[0]["objective"] == "tpot"
    name, load_key = ("TPOT", "batch_per_chip") if decode else ("TTFT", "tokens_per_chip")
    t = Table(title=f"most load within each {name} objective, per deployment")
    cols = (f"{name} objective", "deployment", "chips", "KV len" if decode else "prompt len",
            *(("MTP accept",) if decode else ()), "batch / chip" if decode else "tokens / chip", "microbatches",
            f"{name} ms", "tokens/s / chip", "USD / M tokens", "limited by")
    for c in cols:
        t.add_column(c, justify="left" if c in ("deployment", "limited by") else "right")
    length = "kv_len" if decode else "prompt_len"
    for i in range(len(results[0]["points"])):
        for r in results:
            p = r["points"][i]
            mtp = r["operating_point"].get("mtp_accept") if r["operating_point"].get("mtp_draft_tokens") else None
            head = (f"{p['slo_ms']:g} ms", r["deployment"], str(r["chips"]), f"{r['operating_point'][length]:,}",
                    *(("off" if mtp is None else f"{mtp:.2f}",) if decode else ()))
            t.add_row(*head, *_capacity_cells(p, name, load_key))
        t.add_section()
    console().print(t)


def _header(r: dict, microbatches: str) -> None:
    con = console()
    con.print(Text(r["deployment"], style="bold"), f" {r['llm']} on {r['hardware']}, {r['phase']}, {r['chips']} chips "
              f"({r['ranks']} ranks), " + (f"EP{r['ep']} " if r["routed_experts"] else "")
              + f"DP{r['dp']} TP{r['tp']}, {r['precision']}, {microbatches} microbatch(es)"
              + (f", EPLB {r['eplb']}" if r["routed_experts"] else "")
              + "".join(f", {what} kernel {r[f'{what}_kernel']}" for what in ("attention", "dispatch")
                        if r[f"{what}_kernel"] != "current"))
    con.print("operating point: " + ", ".join(f"{k}={v}" for k, v in r["operating_point"].items()))


def _print_capacity(r: dict) -> None:
    con = console()
    _header(r, " or ".join(map(str, r["microbatches_tried"])))
    decode = r["objective"] == "tpot"
    name, load_key, unit = ("TPOT", "batch_per_chip", "batch / chip") if decode else \
        ("TTFT", "tokens_per_chip", "tokens / chip")
    t = Table(title=f"most load within each {name} objective")
    for c in (f"{name} objective", unit, "microbatches", f"{name} ms", "tokens/s / chip", "USD / M tokens",
              "limited by"):
        t.add_column(c, justify="left" if c == "limited by" else "right")
    for p in r["points"]:
        t.add_row(f"{p['slo_ms']:g} ms", *_capacity_cells(p, name, load_key))
    con.print(t)
    more = "one more request" if decode else f"{PREFILL_GRANULE_TOKENS} more tokens"
    con.print(f"limited by {name}: {more} per chip would miss the objective; HBM: the largest load that fits "
              "in memory", style="dim")
    con.print(f"per-op breakdown of a row: bench estimate ... --{'batch' if decode else 'tokens-per-chip'} N",
              style="dim")


def _print(r: dict) -> None:
    con = console()
    _header(r, str(r["microbatches"]))
    con.print(f"step time        {r['step_time_ms']:10.2f} ms")
    if r["phase"] == "decode":
        con.print(f"TPOT             {r['tpot_ms']:10.2f} ms   ({r['tokens_per_step']:.2f} tokens per step)")
        con.print(f"max batch/chip   {r['max_batch_per_chip_at_kv_len']:10d}      (memory, at this KV length)")
        if not r["fits_in_memory"]:
            con.print("warning: this batch's KV cache does not fit in HBM next to the weights", style="yellow")
    else:
        if r["operating_point"]["cached_len"]:
            con.print(f"cache read       {r['cache_read_ms']:10.2f} ms   (cached prefixes into the ranks, before the step)")
        con.print(f"TTFT             {r['ttft_ms']:10.2f} ms")
    if not r["within_context"]:
        length = r["operating_point"]["kv_len" if r["phase"] == "decode" else "prompt_len"]
        con.print(f"warning: {length:,} tokens is beyond {r['llm']}'s context window "
                  f"({r['max_context']:,} tokens; --set {r['llm']}.max_context=N widens it)", style="yellow")
    con.print(f"throughput/chip  {r['throughput_per_chip']:10.1f} tokens/s" + ("" if r["phase"] == "decode" else
                                                                              "   (computed)"))
    if r["phase"] == "prefill" and r["operating_point"]["cached_len"]:
        con.print(f"prompt tokens    {r['prompt_tokens_per_s_per_chip']:10.1f} tokens/s   (per chip, cache hits included)")
    con.print(f"tokens/s/TFLOPS  {r['tokens_per_s_per_tflops']:10.3f}      (peak {r['peak_tflops_per_chip']:.0f} "
              f"TFLOPS per chip at {r['precision']})")
    con.print(f"cost             {r['cost_per_million_tokens_usd']:10.3f} USD per million tokens")
    w = r["weight_load_s"]
    con.print(f"weight load      {w['object_store']:10.1f} s    from the object store ({w['model_gb']:.0f} GB checkpoint), "
              f"{w['memory_pool']:.2f} s from the memory pool ({r['memory_per_rank_gb']['weights']:.1f} GB per rank)")
    con.print("stream busy      " + ", ".join(f"{s} {v:.2f} ms" for s, v in r["stream_busy_ms"].items()))
    t = Table(title="per-op breakdown (per op: us per microbatch, ms per step)", show_lines=False)
    for c in ("layer kind", "layers", "op", "stream", "us / microbatch", "ms / step"):
        t.add_column(c, justify="right" if c not in ("layer kind", "op", "stream") else "left")
    for row in r["breakdown"]:
        t.add_row(row["layer_kind"], str(row["layers"]), row["op"], row["stream"], f"{row['us_per_microbatch']:.1f}",
                  f"{row['ms_per_step']:.2f}")
    con.print(t)
