"""The most load one deployment carries within a latency objective: the largest decode batch per chip whose TPOT
meets a bound, or the most prefill tokens per chip whose TTFT does (`bench estimate --tpot-slo / --ttft-slo`).

The step model is vectorised, so the search evaluates loads in bulk: every load up to EXACT_UNITS units (a request,
or PREFILL_GRANULE_TOKENS tokens), and beyond that a grid 1% apart up to what fits in HBM, refined to every unit
on both sides of each objective's best grid point. Within the exact range nothing assumes that latency grows with
load; beyond it, only that it does not dip and recover inside one 1% gap. The pick is the load with the highest
throughput that meets the objective."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harness.errors import InputError
from harness.step.deployment import Deployment
from harness.step.estimate import prompts_read_s
from harness.step.memory import check_weights_fit, max_batch_per_chip
from harness.step.schedule import best_step_time_s, decode_work, prefill_work

# Prefill loads are this many new tokens per chip apart: a typical chunk, and finer than any TTFT objective needs
# (one step of a 16K-token batch moves TTFT by under 2%).
PREFILL_GRANULE_TOKENS = 256
EXACT_UNITS = 2048          # loads evaluated one by one; real decode batches per chip stay far below it
GRID_RATIO = 1.01           # spacing of the grid beyond

# (step seconds, latency seconds, throughput tokens/s) at each load of an array
Curve = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def decode_capacity(dep: Deployment, kv_len: int, slos_ms: Sequence[float], microbatches: Sequence[int],
                    eplb: str | None = None) -> list[dict[str, Any]]:
    """Per TPOT objective (ms): the batch per chip (whole requests, up to what fits in HBM at `kv_len`) with the
    highest throughput whose TPOT meets it, trying each microbatch count in `microbatches`."""
    cap = max_batch_per_chip(dep, kv_len)
    if cap < 1:
        check_weights_fit(dep)
        raise InputError(f"not one request of {kv_len:,} tokens fits in HBM next to {dep.name}'s weights",
                         field="--kv-len")

    def at(d: Deployment, batches: np.ndarray):
        step_s = np.asarray(best_step_time_s(d, lambda x: decode_work(x, batches, kv_len), eplb), float)
        tpot_s = step_s / d.tokens_per_step
        return step_s, tpot_s, batches / tpot_s
    curves = _curves(dep, microbatches, at)
    # whole requests per attention group: a TP group spanning chips holds one request at 1/chips-per-group per chip
    unit = min(1.0, dep.hardware.ranks_per_chip / dep.tp)
    return [_priced(dep, p) for p in _search_all(slos_ms, cap, unit, curves, "batch_per_chip", "tpot_ms")]


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
        check_weights_fit(dep)
        raise InputError(f"not one prompt of {prompt_len:,} tokens fits in HBM next to {dep.name}'s weights",
                         field="--prompt-len")

    def at(d: Deployment, tokens: np.ndarray):
        read_s = np.asarray(prompts_read_s(d, tokens, new, cached_len), float)
        step_s = np.asarray(best_step_time_s(d, lambda x: prefill_work(x, tokens, new, cached_len), eplb), float)
        return step_s, read_s + step_s, tokens / (read_s + step_s)
    curves = _curves(dep, microbatches, at)
    return [_priced(dep, p)
            for p in _search_all(slos_ms, cap, PREFILL_GRANULE_TOKENS, curves, "tokens_per_chip", "ttft_ms")]


def _curves(dep: Deployment, microbatches: Sequence[int], at) -> list[tuple[int, Curve]]:
    """`at(deployment, loads)` for each microbatch count."""
    return [(mb, functools.partial(at, dep.replace(microbatches=mb, microbatching="always"))) for mb in microbatches]


def _grid(units: int) -> np.ndarray:
    """Every unit up to EXACT_UNITS, then GRID_RATIO apart, always ending at `units`."""
    exact = np.arange(1, min(units, EXACT_UNITS) + 1)
    if units <= EXACT_UNITS:
        return exact
    n = int(np.ceil(np.log(units / EXACT_UNITS) / np.log(GRID_RATIO))) + 1
    return np.unique(np.concatenate([exact, np.round(np.geomspace(EXACT_UNITS, units, n)).astype(int)]))


def _search_all(slos_ms: Sequence[float], cap: int, granule: float, curves: list[tuple[int, Curve]],
                load_key: str, latency_key: str) -> list[dict[str, Any]]:
    """For each objective, the best load (units of `granule`, the last one `cap`) over every microbatch count;
    when none meets it, the lowest latency any load reaches (so the user sees how far off it is)."""
    grid = _grid(int(-(-cap // granule)))
    coarse = [(mb, at, at(np.minimum(grid * granule, cap).astype(float))) for mb, at in curves]
    lowest = min(float(c[2][1].min()) for c in coarse) * 1e3
    out = []
    for slo in slos_ms:
        best = None     # (throughput, mb, load, step_s, latency_s)
        for mb, at, (step_s, latency_s, throughput) in coarse:
            units, ok = grid, latency_s * 1e3 <= slo
            if not ok.any():
                continue
            i = int(np.flatnonzero(ok)[np.argmax(throughput[ok])])
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            if hi - lo > 2:  # inside the 1% grid: every unit on both sides of the best grid point
                units = np.arange(lo, hi + 1)
                step_s, latency_s, throughput = at(np.minimum(units * granule, cap).astype(float))
                ok = latency_s * 1e3 <= slo
                i = int(np.flatnonzero(ok)[np.argmax(throughput[ok])])
            if best is None or throughput[i] > best[0]:
                best = (float(throughput[i]), mb, float(min(units[i] * granule, cap)), float(step_s[i]),
                        float(latency_s[i]))
        if best is None:
            out.append({"slo_ms": slo, "met": False, load_key: None, "microbatches": None, latency_key: None,
                        "step_time_ms": None, "throughput_per_chip": None, "limited_by": None,
                        "lowest_latency_ms": lowest})
            continue
        throughput, mb, load, step_s, latency_s = best
        out.append({"slo_ms": slo, "met": True, load_key: load, "microbatches": mb, latency_key: latency_s * 1e3,
                    "step_time_ms": step_s * 1e3, "throughput_per_chip": throughput,
                    "limited_by": "memory" if load >= cap else "slo", "lowest_latency_ms": None})
    return out


def _priced(dep: Deployment, point: dict[str, Any]) -> dict[str, Any]:
    """The point's cost per million tokens at the chip's hourly price (as `bench estimate` prices a step)."""
    tps = point["throughput_per_chip"]
    point["cost_per_million_tokens_usd"] = dep.hardware.cost_per_chip_hour_usd / 3600 / tps * 1e6 if tps else None
    return point
