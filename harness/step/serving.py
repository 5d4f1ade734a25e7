"""The serving simulator's view of a backend (implements harness.sim.costs.ServingCosts).

build_serving_costs(hardware, prefill_deployment=None, decode_deployment=None, overrides=(), eplb="default")
    -> BackendCosts. Defaults: the backend's standard deployments (cm384-prefill / cm384-decode on
    cloudmatrix384; h800-prefill / h800-decode on h800-ib; h100-*, h200-* likewise). `overrides` are
    `--set SPEC.path=value` strings for either deployment, the hardware or the LLM.

Every step runs with microbatches only where they shorten it (harness.step.schedule.as_run).
decode_step_s is a bilinear interpolation in a table of full step-model evaluations over (batch per chip, mean KV
length) built once, vectorised (bilinear is exact for the batch x KV attention term; the table is dense enough
that the rest is within a fraction of a percent). prefill_step_s prices the busiest attention group: the longer of
an even share, interpolated (trilinear) in a table over (new tokens, cached tokens, the batch's attention pairs as
a share between their least and most for those totals), and each heavy piece alone in its group, in a second table
over (its new tokens, its cached tokens, the instance's new tokens over its own): within 1% of the exact model
(`prefill_step_exact_s`) over random batches, tens of microseconds a call where an exact evaluation takes a few
milliseconds. Outside the tables, the exact model, memoised on values rounded to 1%. The tables are built with the
BackendCosts (about 0.1 s for all three) and shared by every replay of the same deployments in a process.
prefill_read_s: the busiest group's cached-prefix read (harness.cost.comm.host_path and ssd_read_s);
cache_write_s: one write of a prompt's new blocks to the pool.
step_breakdown / step_span_s: busy seconds per op category of one step (as `bench estimate` counts them) and that
step's time, memoised.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.errors import InputError
from harness.step.deployment import Deployment, load_deployment, standard_deployment
from harness.step.estimate import rank_kv_share
from harness.step.memory import max_batch_per_chip, memory_plan
from harness.cost.comm import host_path, ssd_read_s
from harness.cost.compute import causal_pairs
from harness.step.schedule import (CATEGORIES, as_run, best_step_time_s, busiest_pieces, decode_work, heavy_pieces,
                                   makespan_s, one_piece_work, prefill_pieces_time_s, prefill_work_group,
                                   prefill_work_totals, step_ops, step_times_by_run)

_BATCH_POINTS = 40
_KV_POINTS_PER_DECADE = 29  # the streams' bound switches along KV: 12 per decade left 2% between them, 29 leave 0.3%
_CACHED_POINTS = 40  # cached-prefix tokens of a prefill batch
_PIECE_POINTS = 96  # prompt-piece lengths: dense enough that the quadratic attention term interpolates within 0.3%
_SHARE_POINTS = 24  # where a batch's attention pairs lie between their least and most (geometric: 1/k for k pieces)
_RATIO_POINTS = 16  # a lone piece's instance tokens over its own (the routed experts' load: close to linear)


def _grid(hi: float, n: int, first: float) -> np.ndarray:
    """0, then geometric from `first` to `hi` (dense where step time bends, sparse where it is linear)."""
    return np.concatenate([[0.0], np.geomspace(first, hi, n - 1)])


@dataclass
class BackendCosts:
    backend: str
    prefill: Deployment
    decode: Deployment
    eplb: str
    prefill_chips: int = 0
    decode_chips: int = 0
    prefill_token_budget_per_chip: int = 0
    prefill_chunk_tokens: int | None = None
    decode_batch_cap_per_chip: int = 0
    decode_kv_capacity_tokens: int = 0
    decode_dp_ranks: int = 1
    prefill_kv_capacity_tokens: int = 0
    max_context_tokens: int = 0
    mtp_draft_tokens: int = 0
    mtp_accept: float = 0.0
    cost_per_chip_hour_usd: float = 0.0
    kv_bytes_per_token: int = 0
    cache_pool_bytes: int = 0
    cache_ssd_bytes: int = 0
    cache_uniform_access: bool = True
    _axes: tuple = field(default=(), repr=False)  # decode: (batch per chip, mean KV length)
    _table: list = field(default=None, repr=False)  # type: ignore[assignment]  # one per way to run a step
    _piece_axes: tuple = field(default=(), repr=False)
    _piece_table: list = field(default=None, repr=False)  # type: ignore[assignment]  # one per way to run a step
    _one_axes: tuple = field(default=(), repr=False)
    _one_table: list = field(default=None, repr=False)  # type: ignore[assignment]  # likewise (dp > 1 only)

    def __post_init__(self) -> None:
        p, d, hw = self.prefill, self.decode, self.decode.hardware
        self.prefill_chips, self.decode_chips = p.chips, d.chips
        self.prefill_token_budget_per_chip = p.prefill_token_budget_per_chip
        self.max_context_tokens = d.llm.max_context
        self.mtp_draft_tokens, self.mtp_accept = d.mtp_draft_tokens, d.mtp_accept
        self.cost_per_chip_hour_usd = hw.cost_per_chip_hour_usd
        self.kv_bytes_per_token = d.kv_bytes_per_token()
        self.decode_kv_capacity_tokens = int(memory_plan(d).kv_tokens_per_rank_of_instance * d.ranks)
        self.decode_dp_ranks = d.dp
        self.prefill_kv_capacity_tokens = int(memory_plan(p).kv_tokens_per_rank_of_instance * p.ranks)
        # the deployment's configured batch is its cap, unless memory at its KV length holds fewer
        self.decode_batch_cap_per_chip = max(min(int(d.batch_per_chip), max_batch_per_chip(d, d.kv_len)), 1)
        pool_nodes = hw.chips // hw.chips_per_node if hw.host_uniform else math.ceil(p.chips / hw.chips_per_node)
        self.cache_pool_bytes = int(hw.dram_per_node_bytes * pool_nodes)
        self.cache_ssd_bytes = int(hw.ssd_per_node_bytes * pool_nodes)
        self.cache_uniform_access = hw.host_uniform
        # from a quarter request per chip: below one the busiest stream can switch (a fixed all-to-all overhead
        # against attention over long contexts)
        batch = _grid(max(self.decode_batch_cap_per_chip * 2.0, 8.0), _BATCH_POINTS, 0.25)
        # A step is priced at its busiest DP rank's KV spread over the batch (harness.sim.engine), which for a few
        # requests on many ranks reaches one full context per rank.
        kv_hi = float(self.max_context_tokens) * d.dp
        kv = _grid(kv_hi, math.ceil(_KV_POINTS_PER_DECADE * math.log10(kv_hi / 64.0)) + 2, 64.0)
        b, k = np.meshgrid(np.maximum(batch, 1e-6), kv, indexing="ij", sparse=True)
        self._axes = (batch.tolist(), kv.tolist())
        self._table = _tables(step_times_by_run(d, lambda x: decode_work(x, b, k), self.eplb), self._axes)
        self._build_piece_table()
        if p.dp > 1:   # one attention group holds every piece otherwise: no piece outlasts the even share
            self._build_one_piece_table()

    # ---- decode
    def decode_step_s(self, batch_per_chip: float, mean_kv_len: float) -> float:
        got = _bilinear(self._axes, self._table, float(batch_per_chip), float(mean_kv_len))
        return got if got is not None else self._direct_decode(float(batch_per_chip), float(mean_kv_len))

    def decode_step_exact_s(self, batch_per_chip: float, mean_kv_len: float) -> float:
        return self._direct_decode(float(batch_per_chip), float(mean_kv_len))

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per backend, lives as long as the replay
    def _direct_decode(self, batch_per_chip: float, mean_kv_len: float) -> float:
        b = max(batch_per_chip, 1e-9)
        return float(best_step_time_s(self.decode, lambda d: decode_work(d, b, mean_kv_len), self.eplb))

    # ---- prefill
    def prefill_step_s(self, new_tokens: np.ndarray, cached_tokens: np.ndarray) -> float:
        """Priced at the batch's busiest attention group (harness.step.schedule.prefill_pieces_time_s): the longer
        of an even share, by trilinear interpolation in a table of exact step times over (new tokens, cached
        tokens, where the batch's attention pairs lie between their least and most for those totals), and each heavy
        piece alone in its group (a second table, `_build_one_piece_table`); outside a table, the exact model,
        memoised."""
        if type(new_tokens) is not list:   # an array of any shape, or a scalar: its pieces, flat (the simulator
            new_tokens, cached_tokens = np.ravel(new_tokens), np.ravel(cached_tokens)   # passes flat lists)
        if len(new_tokens) == 1:   # the simulator's usual step: one piece, all of its pairs and its own heavy piece
            n, c = float(new_tokens[0]), float(cached_tokens[0])
            if n <= 0:
                return 0.0
            got = _trilinear_min(self._piece_axes, self._piece_table, n, c, 1.0)
            t = got if got is not None else self._prefill_cached(_round(n), _round(c),
                                                                 _round(n * c + n * (n + 1) / 2), 1)
            return max(t, self._lone_piece_s(n, c, n)) if self.prefill.dp > 1 else t
        new, cached = np.asarray(new_tokens, float).ravel(), np.asarray(cached_tokens, float).ravel()
        n = float(new.sum())
        if n <= 0:
            return 0.0
        c = float(cached.sum())
        pairs = float(causal_pairs(new, cached).sum())
        got = _trilinear_min(self._piece_axes, self._piece_table, n, c, _pairs_share(n, c, pairs))
        t = got if got is not None else self._prefill_cached(_round(n), _round(c), _round(pairs), int(new.size))
        for a, b in heavy_pieces(self.prefill, new, cached):
            t = max(t, self._lone_piece_s(a, b, n))
        return t

    def _lone_piece_s(self, a: float, b: float, n: float) -> float:
        """A piece of `a` new after `b` cached tokens alone in its group, of `n` new tokens in the instance."""
        got = _trilinear_min(self._one_axes, self._one_table, a, b, n / a)
        return got if got is not None else self._prefill_one_piece(_round(a), _round(b), _round(n))

    def prefill_step_exact_s(self, new_tokens: np.ndarray, cached_tokens: np.ndarray) -> float:
        new = np.asarray(new_tokens, float).ravel()
        if not new.sum() > 0:
            return 0.0
        return prefill_pieces_time_s(self.prefill, new, np.asarray(cached_tokens, float).ravel(), self.eplb)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per backend, lives as long as the replay
    def _prefill_one_piece(self, new: float, cached: float, instance_new: float) -> float:
        return float(best_step_time_s(self.prefill, lambda d: one_piece_work(d, new, cached, instance_new),
                                      self.eplb))

    def _build_one_piece_table(self) -> None:
        """A piece alone in its group, over (its new tokens, its cached tokens, the instance's new tokens over its
        own, up to 4 x dp: a heavier instance is rare, and exact): one vectorised evaluation like the even table's."""
        p = self.prefill
        new, cached = self._prefill_axes()
        ratio = np.geomspace(1.0, 4.0 * p.dp, _RATIO_POINTS)
        a, c, r = np.meshgrid(new, cached, ratio, indexing="ij", sparse=True)
        self._one_axes = (new.tolist(), cached.tolist(), ratio.tolist())
        self._one_table = _tables(step_times_by_run(p, lambda d: one_piece_work(d, a, c, a * r), self.eplb),
                                  self._one_axes)

    def _prefill_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """The prefill tables' new-token and cached-token axes: up to a whole batch, and up to any context."""
        p = self.prefill
        top = float(max(p.prefill_token_budget_per_chip * p.chips, self.max_context_tokens))
        cached_top = float(max(self.max_context_tokens, self.prefill_kv_capacity_tokens))
        return np.geomspace(1.0, top, _PIECE_POINTS), _grid(cached_top, _CACHED_POINTS, 16.0)

    def _build_piece_table(self) -> None:
        """One vectorised evaluation of the step model (about 92k batch compositions, each with one and with the
        deployment's microbatches: about 0.07 s). The pieces of a batch only set the LM head's rows (one per piece;
        under 0.01% of a step at 300 pieces), so the table takes the piece count of equal pieces with that share of
        pairs (about 1 / share)."""
        p = self.prefill
        new, cached = self._prefill_axes()
        share = np.concatenate([[0.0], np.geomspace(1.0 / 8192, 1.0, _SHARE_POINTS - 1)])
        n, c, r = np.meshgrid(new, cached, share, indexing="ij", sparse=True)
        lo, hi = n + c, n * c + n * (n + 1) / 2
        pieces = np.clip(1.0 / np.maximum(r, 1e-12), 1.0, n)
        self._piece_axes = (new.tolist(), cached.tolist(), share.tolist())
        self._piece_table = _tables(step_times_by_run(
            p, lambda d: prefill_work_totals(d, n, c, lo + r * (hi - lo), pieces), self.eplb), self._piece_axes)

    def __hash__(self) -> int:
        return id(self)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one instance per backend, lives as long as the replay
    def _prefill_cached(self, new_sum: float, cached_sum: float, pairs_sum: float, pieces: int) -> float:
        return float(best_step_time_s(
            self.prefill, lambda d: prefill_work_totals(d, new_sum, cached_sum, pairs_sum, pieces), self.eplb))

    # ---- data movement
    def kv_transfer_s(self, tokens: int) -> float:
        """Prefill rank to decode rank over the RDMA plane (CloudMatrix keeps it off UB; GPUs use their NIC)."""
        f = self.decode.hardware.scale_out
        return _copy_s(tokens * self.kv_bytes_per_token, f.bandwidth_bytes_per_s, f.latency_s)

    def prefill_read_s(self, local: float, remote: float, ssd: float,
                       largest: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> float:
        """The busiest attention group's read: the longer of an even share of the step's reads and the largest
        prefix alone (`largest`: its local, remote and SSD tokens), since a prefix lands in one group. Each rank of
        a group reads the group's KV (its KV heads' part under GQA); a node's drives carry every rank's SSD share."""
        p = self.prefill
        rank = self.kv_bytes_per_token * rank_kv_share(p)
        hw, readers = p.hardware, min(p.ranks, p.hardware.ranks_per_node)
        node_ssd = ssd / p.dp * rank * readers  # the node's drives serve an even share for each of its ranks

        def group_s(l_: float, r_: float, s_: float) -> float:
            t = sum(_copy_s(n * rank, *host_path(hw, "read", far)) for n, far in ((l_, False), (r_, True)) if n)
            return t + (ssd_read_s(s_ * rank, hw, 1, node_bytes=max(node_ssd, s_ * rank)) if s_ else 0.0)
        return max(group_s(local / p.dp, remote / p.dp, ssd / p.dp), group_s(*largest))

    def cache_write_s(self, tokens: int, remote: bool) -> float:
        return _copy_s(tokens * self.kv_bytes_per_token, *host_path(self.prefill.hardware, "write", remote))

    # ---- report
    def step_breakdown(self, phase: str, **step: float) -> dict[str, float]:
        """Busy seconds per op category (harness.step.CATEGORIES) of one representative step: every op's duration
        summed over layers and microbatches, as `bench estimate`'s breakdown counts it, plus graph launches
        ("other"). Categories on overlapping streams run at once, so the sum can exceed the step time.
        prefill: step=dict(tokens=, cached_tokens=, requests=) (`requests` equal pieces, each `tokens` new after
        `cached_tokens` cached); decode: step=dict(batch_per_chip=, mean_kv_len=)."""
        return dict(self._breakdown(phase, *_step_key(phase, step))[0])

    def step_span_s(self, phase: str, **step: float) -> float:
        """The step time of that representative step (its ops overlap, so it is below their summed busy time)."""
        return self._breakdown(phase, *_step_key(phase, step))[1]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per backend, lives as long as the replay
    def _breakdown(self, phase: str, a: float, b: float, pieces: float) -> tuple[tuple[tuple[str, float], ...], float]:
        if phase == "prefill":  # equal pieces: the busiest group holds an even share, or one whole piece
            k = float(busiest_pieces(pieces, self.prefill.dp))

            def work_of(d):
                return prefill_work_group(d, a * k, b * k, k * (a * b + a * (a + 1) / 2), k, a * pieces)
            dep = self.prefill
        else:
            def work_of(d):
                return decode_work(d, max(a, 1e-9), b)
            dep = self.decode
        dep = as_run(dep, work_of, self.eplb)
        work = work_of(dep)
        busy = dict.fromkeys(CATEGORIES, 0.0)
        ops = step_ops(dep, work, self.eplb)
        for op in ops:
            busy[op.category] += op.duration_s
        return tuple((c, s) for c, s in busy.items() if s > 0), makespan_s(ops)


def _step_key(phase: str, step: dict[str, float]) -> tuple[float, float, float]:
    if phase == "prefill":
        return float(step["tokens"]), float(step["cached_tokens"]), max(float(step["requests"]), 1.0)
    if phase == "decode":
        return float(step["batch_per_chip"]), float(step["mean_kv_len"]), 0.0
    raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")


def _tables(runs: list, axes: tuple) -> list:
    """Step times over a grid, one nested list per way to run a step. The grid is built sparse (numpy broadcasts
    it), so an op whose work follows one axis (most GEMMs follow the new tokens) is priced once per value of it."""
    return [np.broadcast_to(t, tuple(len(a) for a in axes)).tolist() for t in runs]


def _bilinear(axes: tuple, tables: list, x: float, y: float) -> float | None:
    """Bilinear interpolation in nested lists over two sorted axes, the least over tables (one per way to run a
    step, each smooth where their least bends); plain floats: called per decode step. None outside the tables."""
    idx = _cell(axes, (x, y))
    if idx is None:
        return None
    (i, u), (j, v) = idx
    best = math.inf
    for t in tables:
        a, b = t[i], t[i + 1]
        got = (1 - u) * ((1 - v) * a[j] + v * a[j + 1]) + u * ((1 - v) * b[j] + v * b[j + 1])
        if got < best:
            best = got
    return best


def _pairs_share(n: float, c: float, pairs: float) -> float:
    """Where `pairs` lies between the least a batch of n new after c cached tokens can have (one-token pieces:
    n + c) and the most (one piece: n c + n (n + 1) / 2), as 0..1."""
    lo, hi = n + c, n * c + n * (n + 1) / 2
    return min(max((pairs - lo) / (hi - lo), 0.0), 1.0) if hi > lo else 1.0


def _cell(axes: tuple, point: tuple) -> list[tuple[int, float]] | None:
    """Per axis, the index of the interval holding the point's coordinate and its fraction along it (sorted axes);
    None outside them. Plain floats and no builtins in the loop: called twice or three times per simulated step."""
    idx = []
    for axis, v in zip(axes, point):
        if not axis[0] <= v <= axis[-1]:
            return None
        i = bisect.bisect_right(axis, v) - 1
        if i > len(axis) - 2:
            i = len(axis) - 2
        lo = axis[i]
        idx.append((i, (v - lo) / (axis[i + 1] - lo)))
    return idx


def _trilinear_at(table: list, idx: list[tuple[int, float]]) -> float:
    """Trilinear interpolation in nested lists at a point `_cell` located (plain floats: called per prefill step)."""
    (i, u), (j, v), (k, w) = idx
    a, b = table[i], table[i + 1]
    out = 0.0
    for fu, rows in ((1 - u, a), (u, b)):
        r0, r1 = rows[j], rows[j + 1]
        out += fu * (1 - v) * ((1 - w) * r0[k] + w * r0[k + 1])
        out += fu * v * ((1 - w) * r1[k] + w * r1[k + 1])
    return out


def _trilinear_min(axes: tuple, tables: list, x: float, y: float, z: float) -> float | None:
    """Trilinear interpolation over three sorted axes, the least over tables (one per way to run a step, each smooth
    where their least bends), which share the axes, so the point is located once; None outside the tables."""
    idx = _cell(axes, (x, y, z))
    if idx is None:
        return None
    best = math.inf
    for t in tables:
        got = _trilinear_at(t, idx)
        if got < best:
            best = got
    return best


def _copy_s(nbytes: float, bytes_per_s: float, latency_s: float) -> float:
    """transfer_time_s for one scalar, in plain floats (called per request by the simulator)."""
    return latency_s + nbytes / bytes_per_s if nbytes > 0 else 0.0


def _round(x: float, rel: float = 0.01) -> float:
    if x <= 0:
        return 0.0
    step = math.log1p(rel)
    return math.exp(round(math.log(x) / step) * step)


def build_serving_costs(hardware: str, prefill_deployment: str | None = None, decode_deployment: str | None = None,
                        overrides: Sequence[str] = (), eplb: str = "default") -> BackendCosts:
    """ServingCosts for one backend and a (prefill, decode) deployment pair."""
    if eplb not in ("default", "perfect"):
        raise InputError(f"eplb must be 'default' or 'perfect', got {eplb!r}", field="eplb")
    p_name = prefill_deployment or standard_deployment(hardware, "prefill")
    d_name = decode_deployment or standard_deployment(hardware, "decode")
    p, d = _load_pair(p_name, d_name, tuple(overrides))
    for dep, phase in ((p, "prefill"), (d, "decode")):
        if dep.phase != phase:
            raise InputError(f"deployment '{dep.name}' is a {dep.phase} deployment, not {phase}", field=phase)
        if dep.hardware.name != hardware:
            raise InputError(f"deployment '{dep.name}' runs on '{dep.hardware.name}', not '{hardware}'", field=phase)
    if p.llm.name != d.llm.name:
        raise InputError(f"prefill serves '{p.llm.name}' but decode serves '{d.llm.name}'", field="decode")
    return _costs(hardware, p, d, eplb)


@functools.lru_cache(maxsize=16)
def _costs(hardware: str, p: Deployment, d: Deployment, eplb: str) -> BackendCosts:
    """One BackendCosts per (deployments, EPLB) in a process: its tables take about 0.1 s to build, and a
    sweep's worker replays the same backend for many points. It holds nothing a replay changes but memos."""
    return BackendCosts(backend=hardware, prefill=p, decode=d, eplb=eplb)


def _load_pair(p_name: str, d_name: str, sets: tuple[str, ...]) -> tuple[Deployment, Deployment]:
    """Apply each --set to whichever of the two deployments (or their shared hardware/LLM) it names."""
    def mine(name: str) -> list[str]:
        dep_names = {p_name, d_name}
        return [s for s in sets if s.split(".", 1)[0] not in dep_names - {name}]
    return load_deployment(p_name, mine(p_name)), load_deployment(d_name, mine(d_name))
