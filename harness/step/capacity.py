"""The most load one deployment carries within a latency objective: the largest decode batch per chip whose TPOT
meets a bound, or the most prefill tokens per chip whose TTFT does (`bench estimate --tpot-slo / --ttft-slo`).

Every candidate load is evaluated at once (the step model is vectorised), so nothing assumes latency grows
monotonically with load, and the pick is the candidate with the highest throughput that meets the objective."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.errors import InputError
from harness.step.deployment import Deployment
from harness.step.estimate import prefix_read_s
from harness.step.memory import max_batch_per_chip, memory_plan
from harness.step.schedule import decode_work, prefill_work, step_time_s

# Prefill candidates are this many new tokens per chip apart: a typical chunk, and finer than any TTFT objective
# needs (one granule of a 16K-token batch moves TTFT by under 2%).
PREFILL_GRANULE_TOKENS = 256


def decode_capacity(dep: Deployment, kv_len: int, slos_ms: Sequence[float], microbatches: Sequence[int],
                    eplb: str | None = None) -> list[dict[str, Any]]:
    """Per TPOT objective (ms): the batch per chip (whole requests, up to what fits in HBM at `kv_len`) with the
    highest throughput whose TPOT meets it, trying each microbatch count in `microbatches`."""
    cap = max_batch_per_chip(dep, kv_len)
    if cap < 1:
        _weights_fit(dep)
        raise InputError(f"not one request of {kv_len:,} tokens fits in HBM next to {dep.name}'s weights",
                         field="--kv-len")
    batches = np.arange(1, cap + 1, dtype=float)
    curves = []
    for mb in microbatches:
        d = dep.replace(microbatches=mb)
        step_s = np.asarray(step_time_s(d, decode_work(d, batches, kv_len), eplb), float)
        tpot_s = step_s / d.tokens_per_step
        curves.append((mb, step_s, tpot_s, batches / tpot_s))
    return [_priced(dep, _pick(slo, batches, curves, "batch_per_chip", "tpot_ms")) for slo in slos_ms]


def prefill_capacity(dep: Deployment, prompt_len: int, cached_len: int, slos_ms: Sequence[float],
                     microbatches: Sequence[int], eplb: str | None = None) -> list[dict[str, Any]]:
    """Per TTFT objective (ms): the new tokens per chip per step (steps of PREFILL_GRANULE_TOKENS, up to the
    prompts whose KV fits in HBM) with the highest throughput whose TTFT (cached-prefix read plus the step) meets
    it, trying each microbatch count in `microbatches`."""
    if not 0 <= cached_len < prompt_len:
        raise InputError(f"the cached prefix ({cached_len} tokens) must be shorter than the prompt ({prompt_len})",
                         field="--cached-len")
    new = prompt_len - cached_len
    cap = max_batch_per_chip(dep, prompt_len) * new
    if cap < 1:
        _weights_fit(dep)
        raise InputError(f"not one prompt of {prompt_len:,} tokens fits in HBM next to {dep.name}'s weights",
                         field="--prompt-len")
    tokens = np.unique(np.append(np.arange(PREFILL_GRANULE_TOKENS, cap + 1, PREFILL_GRANULE_TOKENS), cap))
    tokens = tokens.astype(float)
    read_s = np.asarray(prefix_read_s(dep, tokens / new * cached_len * dep.chips), float)
    curves = []
    for mb in microbatches:
        d = dep.replace(microbatches=mb)
        step_s = np.asarray(step_time_s(d, prefill_work(d, tokens, new, cached_len), eplb), float)
        ttft_s = read_s + step_s
        curves.append((mb, step_s, ttft_s, tokens / ttft_s))
    return [_priced(dep, _pick(slo, tokens, curves, "tokens_per_chip", "ttft_ms")) for slo in slos_ms]


def _priced(dep: Deployment, point: dict[str, Any]) -> dict[str, Any]:
    """The point's cost per million tokens at the chip's hourly price (as `bench estimate` prices a step)."""
    tps = point["throughput_per_chip"]
    point["cost_per_million_tokens_usd"] = dep.hardware.cost_per_chip_hour_usd / 3600 / tps * 1e6 if tps else None
    return point


def _weights_fit(dep: Deployment) -> None:
    """Refuse, naming the chips, a deployment whose weights alone leave no HBM for a KV cache."""
    plan = memory_plan(dep)
    if plan.kv_bytes <= 0:
        raise InputError(f"{dep.name}'s weights ({plan.weights_bytes / 1e9:.1f} GB per rank) and reserve "
                         f"({plan.reserve_bytes / 1e9:.1f} GB) leave no HBM for a KV cache "
                         f"({dep.hardware.hbm_bytes / 1e9:.0f} GB per rank): split them further (--tp, --ep) or over more chips",
                         field="--chips")


def _pick(slo_ms: float, loads: np.ndarray, curves: list, load_key: str, latency_key: str) -> dict[str, Any]:
    """The best candidate over every microbatch count for one objective; when none meets it, the lowest latency
    any candidate reaches (so the user sees how far off it is)."""
    best = None
    for mb, step_s, latency_s, throughput in curves:
        ok = latency_s * 1e3 <= slo_ms
        if not ok.any():
            continue
        i = int(np.flatnonzero(ok)[np.argmax(throughput[ok])])
        if best is None or throughput[i] > best[0][3][best[1]]:
            best = ((mb, step_s, latency_s, throughput), i)
    if best is None:
        lowest = min(float(c[2][0]) for c in curves) * 1e3
        return {"slo_ms": slo_ms, "met": False, load_key: None, "microbatches": None, latency_key: None,
                "step_time_ms": None, "throughput_per_chip": None, "limited_by": None,
                "lowest_latency_ms": lowest}
    (mb, step_s, latency_s, throughput), i = best
    return {"slo_ms": slo_ms, "met": True, load_key: float(loads[i]), "microbatches": mb,
            latency_key: float(latency_s[i]) * 1e3, "step_time_ms": float(step_s[i]) * 1e3,
            "throughput_per_chip": float(throughput[i]),
            "limited_by": "memory" if i == len(loads) - 1 else "slo", "lowest_latency_ms": None}
