"""Steady-state numbers of one deployment at one operating point (`bench estimate`, `bench validate`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from harness.cost.comm import host_path, transfer_time_s
from harness.errors import InputError
from harness.step.deployment import Deployment
from harness.step.loading import object_store_load_s, pool_load_s
from harness.step.memory import max_batch_per_chip, memory_plan, model_bytes
from harness.step.ops import gqa_kv_read_factor
from harness.step.schedule import (as_run, busiest_pieces, decode_work, layer_kinds, makespan_s,
                                   prefill_work, step_ops)
from harness.step.streams import stream_of


def prefix_read_s(dep: Deployment, cached_tokens, remote: bool = False):
    """A prefill step's cached prefixes (`cached_tokens` over the instance) from the context-cache pool: EMS over UB
    on CloudMatrix384; host DRAM over PCIe (`remote`: another node's, over RDMA) on GPUs. The ranks read at once,
    each its attention group's share of the step's prompts (`cached_tokens` / dp: callers pass the busiest group's
    prefixes times dp), so one share crosses one rank's path: all of the group's KV under MLA (every TP rank holds
    the whole latent), its KV heads' part under GQA. Vectorised over `cached_tokens`."""
    if np.ndim(cached_tokens) == 0 and cached_tokens <= 0:  # the simulator's common case, per prefill step
        return 0.0
    per_rank = np.asarray(cached_tokens, float) / dep.dp * dep.kv_bytes_per_token() * rank_kv_share(dep)
    t = transfer_time_s(per_rank, *host_path(dep.hardware, "read", remote))  # 0 where nothing is cached
    return float(t) if t.ndim == 0 else t


def rank_kv_share(dep: Deployment) -> float:
    """The share of its attention group's KV a rank holds: all of it under MLA (every TP rank keeps the whole
    latent), its KV heads' part under GQA."""
    return gqa_kv_read_factor(dep) / dep.tp if dep.llm.attention == "gqa" else 1.0


def prompts_read_s(dep: Deployment, tokens_per_chip, new_len: int, cached_len: int):
    """The cached prefixes of equal prompts (`new_len` computed after `cached_len` cached), `tokens_per_chip` new
    tokens per chip: the busiest attention group's share (`busiest_pieces`). Vectorised over `tokens_per_chip`."""
    if cached_len <= 0:
        return np.zeros_like(np.asarray(tokens_per_chip, float))
    prompts = np.asarray(tokens_per_chip, float) / new_len * dep.chips
    return prefix_read_s(dep, busiest_pieces(prompts, dep.dp) * cached_len * dep.dp)


def deployment_fields(dep: Deployment, eplb: str) -> dict[str, Any]:
    """What an estimate's output says about the deployment it priced (also heads `--tpot-slo` results)."""
    return {"deployment": dep.name, "hardware": dep.hardware.name, "llm": dep.llm.name, "phase": dep.phase,
            "chips": dep.chips, "ranks": dep.ranks, "routed_experts": dep.llm.routed_experts, "ep": dep.ep,
            "dp": dep.dp, "tp": dep.tp,
            "precision": dep.precision, "eplb": eplb, "attention_kernel": dep.attention_kernel or "current",
            "dispatch_kernel": dep.dispatch_kernel or "current"}


def estimate(dep: Deployment, batch_per_chip: float | None = None, kv_len: int | None = None,
             tokens_per_chip: int | None = None, prompt_len: int | None = None,
             eplb: str | None = None, cached_len: int = 0) -> dict[str, Any]:
    """Step time, TPOT (decode) or TTFT (prefill), throughput per chip and a per-op breakdown. Prefill with
    `cached_len` > 0: that many tokens of each prompt come from the context cache (read before the step, which
    computes the rest); `tokens_per_chip` counts computed tokens."""
    eplb = eplb or dep.eplb
    hw = dep.hardware
    if dep.phase == "decode":
        batch = batch_per_chip if batch_per_chip is not None else dep.batch_per_chip
        kv = kv_len if kv_len is not None else dep.kv_len
        def work_of(d):
            return decode_work(d, batch, kv)
        point = {"batch_per_chip": batch, "kv_len": kv, "mtp_draft_tokens": dep.mtp_draft_tokens,
                 "mtp_accept": dep.mtp_accept}
    else:
        tokens = tokens_per_chip if tokens_per_chip is not None else dep.tokens_per_chip
        plen = prompt_len if prompt_len is not None else dep.prompt_len
        if not 0 <= cached_len < plen:
            raise InputError(f"the cached prefix ({cached_len} tokens) must be shorter than the prompt ({plen})",
                             field="--cached-len")
        def work_of(d):
            return prefill_work(d, tokens, plen - cached_len, cached_len)
        point = {"tokens_per_chip": tokens, "prompt_len": plen, "cached_len": cached_len}
    dep = as_run(dep, work_of, eplb)
    work = work_of(dep)
    ops = step_ops(dep, work, eplb)
    step_s = makespan_s(ops)
    peak_tflops = hw.peak(dep.precision) * hw.ranks_per_chip / 1e12
    out: dict[str, Any] = {**deployment_fields(dep, eplb), "microbatches": dep.microbatches,
                           "operating_point": point, "step_time_ms": step_s * 1e3}
    if dep.phase == "decode":
        tpot_s = step_s / dep.tokens_per_step
        out["tokens_per_step"] = dep.tokens_per_step
        out["tpot_ms"] = tpot_s * 1e3
        out["throughput_per_chip"] = point["batch_per_chip"] / tpot_s
        out["max_batch_per_chip_at_kv_len"] = max_batch_per_chip(dep, point["kv_len"])
        out["fits_in_memory"] = point["batch_per_chip"] <= out["max_batch_per_chip_at_kv_len"]
    else:
        prompts_per_chip = point["tokens_per_chip"] / (point["prompt_len"] - cached_len)
        read_s = float(prompts_read_s(dep, point["tokens_per_chip"], point["prompt_len"] - cached_len, cached_len))
        out["cache_read_ms"] = read_s * 1e3
        out["ttft_ms"] = (read_s + step_s) * 1e3  # a prompt of this batch: its prefix read and its step, no queueing
        out["throughput_per_chip"] = point["tokens_per_chip"] / (read_s + step_s)
        out["prompt_tokens_per_s_per_chip"] = prompts_per_chip * point["prompt_len"] / (read_s + step_s)
    # the longest sequence this point implies (decode: context plus the draft) against the LLM's window
    longest = point["kv_len"] + dep.mtp_draft_tokens if dep.phase == "decode" else point["prompt_len"]
    out["max_context"] = dep.llm.max_context
    out["within_context"] = longest <= dep.llm.max_context
    out["tokens_per_s_per_tflops"] = out["throughput_per_chip"] / peak_tflops
    out["peak_tflops_per_chip"] = peak_tflops
    out["cost_per_million_tokens_usd"] = hw.cost_per_chip_hour_usd / 3600 / out["throughput_per_chip"] * 1e6
    plan = memory_plan(dep)
    out["memory_per_rank_gb"] = {"hbm": hw.hbm_bytes / 1e9, "weights": plan.weights_bytes / 1e9,
                                 "reserve": plan.reserve_bytes / 1e9, "kv_cache": plan.kv_bytes / 1e9}
    out["weight_load_s"] = {"model_gb": model_bytes(dep.llm, dep.precision) / 1e9,
                            "object_store": object_store_load_s(dep), "memory_pool": pool_load_s(dep)}
    busy: dict[str, float] = defaultdict(float)
    for o in ops:
        busy[o.stream] += o.duration_s
    out["stream_busy_ms"] = {s: v * 1e3 for s, v in sorted(busy.items())}
    out["breakdown"] = breakdown(dep, work, eplb)
    return out


def breakdown(dep: Deployment, work, eplb: str) -> list[dict[str, Any]]:
    """Per layer kind and op: stream, microseconds per microbatch and per layer (all microbatches)."""
    rows = []
    for kind, count, make in layer_kinds(dep, work, eplb):
        for op in make():
            us = float(op.duration_s) * 1e6
            rows.append({"layer_kind": kind, "layers": count, "op": op.name, "category": op.category,
                         "stream": stream_of(dep, op.role, op.category)[0], "us_per_microbatch": us,
                         "us_per_layer": us * dep.microbatches, "ms_per_step": us * dep.microbatches * count / 1e3})
    return rows
