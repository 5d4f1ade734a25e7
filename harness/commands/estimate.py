"""`bench estimate`: steady-state step time, TPOT/TTFT, throughput and per-op breakdown of one deployment."""

from __future__ import annotations

import json

import click
from rich.table import Table

from harness.commands.common import console
from harness.errors import InputError
from harness.step.deployment import inline_deployment, load_deployment
from harness.step.estimate import estimate as run_estimate


@click.command()
@click.option("--deployment", "-d", help="Deployment spec name (see `bench models list`).")
@click.option("--hardware", help="Inline deployment: hardware spec name.")
@click.option("--llm", help="Inline deployment: LLM spec name.")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), help="Inline deployment: phase.")
@click.option("--chips", type=click.IntRange(min=1), help="Inline deployment: chips in the instance.")
@click.option("--ep", type=click.IntRange(min=1), help="Expert-parallel degree (ranks). Inline default: all ranks.")
@click.option("--tp", type=click.IntRange(min=1), help="Attention tensor-parallel degree.")
@click.option("--dp", type=click.IntRange(min=1), help="Attention data-parallel degree.")
@click.option("--precision", type=click.Choice(["bf16", "fp8", "int8"]), help="GEMM precision.")
@click.option("--batch", type=click.FloatRange(min=0, min_open=True), help="Decode: requests per chip.")
@click.option("--kv-len", type=click.IntRange(min=1), help="Decode: KV length per request (tokens).")
@click.option("--tokens-per-chip", type=click.IntRange(min=1), help="Prefill: new tokens per chip per step.")
@click.option("--prompt-len", type=click.IntRange(min=1), help="Prefill: prompt length (tokens).")
@click.option("--cached-len", type=click.IntRange(min=0), default=0, show_default=True,
              help="Prefill: tokens of each prompt already in the context cache (read, not computed).")
@click.option("--mtp-accept", type=click.FloatRange(0, 1),
              help="MTP with one draft token accepted with probability P; 0 turns MTP off.")
@click.option("--microbatch/--no-microbatch", default=None, help="Two-microbatch overlap on or off.")
@click.option("--eplb", type=click.Choice(["perfect", "default"]), help="Expert-load balance model.")
@click.option("--set", "sets", multiple=True, metavar="SPEC.PATH=VALUE",
              help="Override a spec value, e.g. cloudmatrix384.scale_up.bandwidth=98GB/s (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def estimate(deployment, hardware, llm, phase, chips, ep, tp, dp, precision, batch, kv_len, tokens_per_chip,
             prompt_len, cached_len, mtp_accept, microbatch, eplb, sets, as_json) -> None:
    """Steady-state numbers for one deployment at one operating point."""
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
    from harness.step.deployment import _check
    dep = _check(dep, "command line")
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
    if microbatch is not None:
        dep = dep.replace(microbatches=2 if microbatch else 1)
    result = run_estimate(dep, batch, kv_len, tokens_per_chip, prompt_len, eplb, cached_len)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    _print(result)


def _print(r: dict) -> None:
    con = console()
    con.print(f"[bold]{r['deployment']}[/]  {r['llm']} on {r['hardware']}, {r['phase']}, {r['chips']} chips "
              f"({r['ranks']} ranks), EP{r['ep']} DP{r['dp']} TP{r['tp']}, {r['precision']}, "
              f"{r['microbatches']} microbatch(es), EPLB {r['eplb']}"
              + "".join(f", {what} kernel {r[f'{what}_kernel']}" for what in ("attention", "dispatch")
                        if r[f"{what}_kernel"] != "current"))
    con.print("operating point: " + ", ".join(f"{k}={v}" for k, v in r["operating_point"].items()))
    con.print(f"step time        {r['step_time_ms']:10.2f} ms")
    if r["phase"] == "decode":
        con.print(f"TPOT             {r['tpot_ms']:10.2f} ms   ({r['tokens_per_step']:.2f} tokens per step)")
        con.print(f"max batch/chip   {r['max_batch_per_chip_at_kv_len']:10d}      (memory, at this KV length)")
        if not r["fits_in_memory"]:
            con.print("[yellow]warning: this batch's KV cache does not fit in HBM next to the weights[/]")
    else:
        if r["operating_point"]["cached_len"]:
            con.print(f"cache read       {r['cache_read_ms']:10.2f} ms   (cached prefixes into the ranks, before the step)")
        con.print(f"TTFT             {r['ttft_ms']:10.2f} ms")
    if not r["within_context"]:
        length = r["operating_point"]["kv_len" if r["phase"] == "decode" else "prompt_len"]
        con.print(f"[yellow]warning: {length:,} tokens is beyond {r['llm']}'s context window "
                  f"({r['max_context']:,} tokens; --set {r['llm']}.max_context=N widens it)[/]")
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
    t = Table(title="per-op breakdown (microseconds)", show_lines=False)
    for c in ("layer kind", "layers", "op", "stream", "us / microbatch", "ms / step"):
        t.add_column(c, justify="right" if c not in ("layer kind", "op", "stream") else "left")
    for row in r["breakdown"]:
        t.add_row(row["layer_kind"], str(row["layers"]), row["op"], row["stream"], f"{row['us_per_microbatch']:.1f}",
                  f"{row['ms_per_step']:.2f}")
    con.print(t)
