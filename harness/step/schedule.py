"""One forward step of a deployment: the op graph (`step_ops`) and its fast, vectorised makespan (`step_time_s`).

step_ops(dep, work) -> list[StepOp]
    Every op of every layer and microbatch, list-scheduled in order onto the deployment's streams: an op starts when
    its stream is free and the previous op of its microbatch has ended (the only dependency inside a step).
step_time_s(dep, work) -> seconds (float or array)
    The same schedule in closed form per layer kind: two microbatches reach the steady-state period
    max(busiest stream over both microbatches, one microbatch's chain), plus the pipeline fill of the first layer.
    Agrees with the makespan of step_ops (tests check), and evaluates many batch compositions at once.
Work for a decode step: `decode_work(dep, batch_per_chip, kv_len, mtp_draft_tokens)`; for prefill:
`prefill_work(dep, tokens_per_chip, prompt_len, cached_len)`; a batch of unequal pieces: `prefill_pieces_time_s`.
Either runs with microbatches only where they shorten the step (`as_run`, `best_step_time_s`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.cost.compute import causal_pairs, prefill_attention_work
from harness.step.deployment import Deployment
from harness.step.ops import OpSpec, Work, attention_block, ffn_block, gqa_kv_read_factor, head_block, mtp_proj
from harness.step.streams import stream_of

CATEGORIES = ("gemm", "grouped_gemm", "attention", "moe_dispatch", "moe_combine", "all_reduce", "all_gather",
              "all_to_all", "reduce_scatter", "send_recv", "norm", "elementwise", "copy", "other")


@dataclass
class StepOp:
    name: str
    category: str                    # one of CATEGORIES
    stream: str
    microbatch: int
    layer: int                       # 0..layers-1; layers = LM head; layers+1 = MTP module; -1 = step overhead
    start_s: float
    duration_s: float
    flops: float
    bytes_moved: float
    bytes_sent: float
    deps: list[int] = field(default_factory=list)
    inputs: dict | None = None       # the cost model's inputs beyond flops and bytes (OpSpec.inputs, as scalars)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class StepWork:
    """A step's work per rank: per-microbatch Work for the main layers and for the MTP module (None: off). Decode:
    the module drafts one token per request. Prefill (for a decode that drafts with MTP): it runs over every prompt
    token, since the draft attends over the module's own KV of the whole context, and drafts from the last one."""
    main: Work
    mtp: Work | None
    head_tokens: object              # tokens that need logits per microbatch
    tokens_per_rank: object          # new tokens of the step per rank (all microbatches)
    requests_per_rank: object


def decode_work(dep: Deployment, batch_per_chip, kv_len, mtp_draft_tokens: int | None = None) -> StepWork:
    draft = dep.mtp_draft_tokens if mtp_draft_tokens is None else mtp_draft_tokens
    mb = dep.microbatches
    req = np.asarray(batch_per_chip, float) / dep.hardware.ranks_per_chip
    q = 1.0 + draft
    main = Work(tokens=req * q / mb, requests=req / mb, kv_len=np.asarray(kv_len, float), q=q)
    # The MTP module extends its own KV over every position the step verified (1 + draft, padded: graphs have static
    # shapes), the main layers' work, and drafts from the last, one set of logits per request.
    return StepWork(main, main if draft else None, req * q / mb, req * q, req)


def as_run(dep: Deployment, work_of: Callable[[Deployment], StepWork], eplb: str | None = None) -> Deployment:
    """The deployment as it runs one step: its microbatches only when they shorten the step, else one. Engines
    switch the overlap off where it does not pay (vLLM's dual-batch-overlap token thresholds; SGLang's two-batch
    overlap falls back to one batch when a rank cannot split its requests); the tool takes the best switch point.
    `work_of(d)` builds the step's work for a deployment (work is per microbatch). `microbatching = "always"`
    keeps them on every step."""
    runs = _runs(dep)
    if len(runs) == 1:
        return dep
    times = [float(step_time_s(d, work_of(d), eplb)) for d in runs]
    return runs[times.index(min(times))]   # the deployment's own on a tie


def _runs(dep: Deployment) -> list[Deployment]:
    """The ways `as_run` may run a step: as deployed, and with one microbatch where that is allowed."""
    if dep.microbatches == 1 or dep.microbatching == "always":
        return [dep]
    return [dep, dep.replace(microbatches=1)]


def step_times_by_run(dep: Deployment, work_of: Callable[[Deployment], StepWork], eplb: str | None = None) -> list:
    """`step_time_s` under each way `as_run` may run the step (the deployment's microbatches, and one where that
    is allowed), vectorised over the arrays `work_of` builds. Each is smooth where their minimum has a kink, so
    tables keep them apart and take the minimum after interpolating."""
    return [step_time_s(d, work_of(d), eplb) for d in _runs(dep)]


def best_step_time_s(dep: Deployment, work_of: Callable[[Deployment], StepWork], eplb: str | None = None):
    """`step_time_s` of the step as `as_run` runs it, vectorised over the arrays `work_of` builds."""
    return functools.reduce(np.minimum, step_times_by_run(dep, work_of, eplb))


def _prefill_mtp(dep: Deployment, main: Work) -> Work | None:
    return main if dep.mtp_draft_tokens and dep.llm.mtp_modules else None


def prefill_work(dep: Deployment, tokens_per_chip, prompt_len, cached_len=0) -> StepWork:
    """Prompts of `prompt_len` new tokens (after `cached_len` cached ones), `tokens_per_chip` per chip over the
    instance; the busiest attention group holds an even share of them, or one whole prompt if that is more
    (`busiest_pieces`)."""
    total = np.asarray(tokens_per_chip, float) * dep.chips
    prompts = total / np.asarray(prompt_len, float)
    k = busiest_pieces(prompts, dep.dp)
    pairs = causal_pairs(prompt_len, cached_len)
    return prefill_work_group(dep, k * prompt_len, k * cached_len, k * pairs, k, total)


def busiest_pieces(pieces, groups: int):
    """Equal prompt pieces in the busiest of `groups` attention groups: one (or all there are), or an even share if
    that is more (the rule of `prefill_pieces_time_s`)."""
    p = np.asarray(pieces, float)
    return np.maximum(p / groups, np.minimum(p, 1.0))


def prefill_pieces_time_s(dep: Deployment, new: np.ndarray, cached: np.ndarray, eplb: str | None = None) -> float:
    """A step over a batch of prompt pieces, priced at its busiest attention group: a piece stays in one group, so
    the busiest carries at least any one piece and at least an even share of the batch; the step takes the longest
    of these (the bound any packing meets, which a balancing scheduler, such as DeepSeek's prefill load
    balancer (Day 6), reaches but for the last partial round). Each runs as `as_run` says."""
    new, cached = np.asarray(new, float).ravel(), np.asarray(cached, float).ravel()
    n = float(new.sum())
    t = float(best_step_time_s(dep, lambda d: prefill_work_totals(
        d, n, float(cached.sum()), float(causal_pairs(new, cached).sum()), new.size), eplb))
    for a, c in heavy_pieces(dep, new, cached):
        t = max(t, float(best_step_time_s(dep, lambda d: one_piece_work(d, a, c, n), eplb)))
    return t


def one_piece_work(dep: Deployment, new: float, cached: float, instance_new: float) -> StepWork:
    """A group holding one prompt piece, the routed experts seeing the instance's `instance_new` tokens
    (vectorised over the arrays given)."""
    return prefill_work_group(dep, new, cached, causal_pairs(new, cached), 1.0, instance_new)


def heavy_pieces(dep: Deployment, new: np.ndarray, cached: np.ndarray) -> list[tuple[float, float]]:
    """The distinct (new, cached) pieces that may set the busiest attention group: those weighing over half an even
    share (at most 2 x dp of them; lighter ones cannot outlast the even share) that no other piece outdoes in both
    new and cached tokens. Weight: FLOPs per layer that stay in the piece's group (projections of its new tokens,
    MLA's K/V up-projection of its whole context, attention)."""
    if dep.dp <= 1 or new.size == 0:
        return []
    per_new, per_context = group_flops_per_token(dep)
    weight = per_new * new + per_context * (new + cached) + prefill_attention_work(
        dep.llm, new, cached, causal_pairs(new, cached))[0]
    heavy = 2 * weight * dep.dp > weight.sum()
    pieces = sorted(set(zip(new[heavy].tolist(), cached[heavy].tolist())), reverse=True)
    # a piece with no more new and no more cached tokens than another cannot take longer alone: skip it
    front, most_cached = [], -1.0
    for a, c in pieces:  # by new tokens, descending
        if c > most_cached:
            front.append((a, c))
            most_cached = c
    return front


def group_flops_per_token(dep: Deployment) -> tuple[float, float]:
    """GEMM FLOPs per layer that stay in a token's attention group, per new token (attention projections, and the
    dense FFN of dense models or the shared experts of MoE ones unless they have ranks of their own) and per token
    of context (MLA up-projects the K/V of cached tokens too)."""
    llm = dep.llm
    if not llm.routed_experts:
        ffn = llm.dense_ffn_params()
    else:
        ffn = 0 if dep.shared_expert_placement == "dedicated" else llm.shared_experts * llm.expert_params()
    context = llm.kv_lora_rank * llm.heads * (llm.qk_nope_dim + llm.v_head_dim) if llm.attention == "mla" else 0
    return 2.0 * (llm.attention_params() - context + ffn), 2.0 * context


def prefill_work_totals(dep: Deployment, new_sum: float, cached_sum: float, pairs_sum: float,
                        pieces: float) -> StepWork:
    """A batch from its totals over the instance (new and cached tokens, attention (query, key) pairs, pieces),
    spread evenly over the instance's attention groups."""
    g = dep.dp
    return prefill_work_group(dep, new_sum / g, cached_sum / g, pairs_sum / g, pieces / g, new_sum)


def prefill_work_group(dep: Deployment, new, cached, pairs, pieces, instance_new) -> StepWork:
    """A prefill step priced at its busiest attention group (DP rank, or TP group of tp ranks): `new`, `cached`,
    `pairs`, `pieces` are that group's totals (a prompt piece stays in one group), while the routed experts see the
    instance's `instance_new` tokens spread over every rank."""
    mb, tp = dep.microbatches, dep.tp
    f, b = prefill_attention_work(dep.llm, new, cached, pairs, dep.kv_cache_precision)
    if dep.llm.attention == "gqa":
        b = b * gqa_kv_read_factor(dep)
    t, p = np.asarray(new, float) / tp, np.asarray(pieces, float) / tp
    main = Work(tokens=t / mb, pieces=p / mb, attn_flops=f / tp / mb, attn_bytes=b / tp / mb,
                kv_tokens=(np.asarray(new, float) + cached) / tp / mb,
                expert_tokens=np.asarray(instance_new, float) / dep.ranks / mb)
    return StepWork(main, _prefill_mtp(dep, main), p / mb, t, p)


def layer_kinds(dep: Deployment, work: StepWork, eplb: str) -> list[tuple[str, int, Callable[[], list[OpSpec]]]]:
    """(kind, repeat count, chain of one microbatch) in execution order."""
    llm = dep.llm
    kinds: list[tuple[str, int, Callable[[], list[OpSpec]]]] = []

    def layer(w: Work, moe: bool) -> Callable[[], list[OpSpec]]:
        return functools.cache(lambda: attention_block(dep, w) + ffn_block(dep, w, moe, eplb))
    main_layer = {moe: layer(work.main, moe) for moe in (False, True)}
    if llm.dense_layers or not llm.routed_experts:
        kinds.append(("dense", llm.layers if not llm.routed_experts else llm.dense_layers, main_layer[False]))
    if llm.moe_layers:
        kinds.append(("moe", llm.moe_layers, main_layer[True]))
    head = functools.cache(lambda: head_block(dep, work.head_tokens))
    kinds.append(("lm_head", 1, head))
    if work.mtp is not None and llm.mtp_modules:
        mtp, moe = work.mtp, llm.routed_experts > 0
        # over the main layers' tokens the module's layer is one of theirs: the same ops, evaluated once
        body = main_layer[moe] if mtp is work.main else layer(mtp, moe)
        if dep.phase == "prefill":   # it drafts from each prompt's last token: the main LM head's rows
            def drafts() -> list[OpSpec]:
                return [dataclasses.replace(o, name=f"mtp_{o.name}") for o in head()]
        else:                        # one draft per request
            def drafts() -> list[OpSpec]:
                return head_block(dep, mtp.requests, "mtp_lm_head")
        kinds.append(("mtp", llm.mtp_modules, lambda: mtp_proj(dep, mtp.tokens) + body() + drafts()))
    return kinds


def _launch_s(dep: Deployment, work: StepWork) -> float:
    graphs = 1 + (1 if work.mtp is not None else 0)
    return 0.0 if dep.launch_overlapped else graphs * dep.hardware.graph_launch_s


def _chain(dep: Deployment, work: StepWork, eplb: str) -> list[tuple[int, OpSpec, str]]:
    """One microbatch's ops through the whole step: (layer index, spec, stream)."""
    chain: list[tuple[int, OpSpec, str]] = []
    layer = 0
    for kind, count, make in layer_kinds(dep, work, eplb):
        specs = [(sp, stream_of(dep, sp.role, sp.category)[0]) for sp in make()]
        for _ in range(count):
            index = layer if kind in ("dense", "moe") else (dep.llm.layers if kind == "lm_head" else dep.llm.layers + 1)
            chain += [(index, sp, st) for sp, st in specs]
            layer += kind in ("dense", "moe")
    return chain


def _issue_order(chain: list[tuple[int, OpSpec, str]], microbatches: int) -> list[tuple[int, int]]:
    """(microbatch, chain position) in issue order: the chain is cut into stages where the stream changes, and
    stages are issued in turn for each microbatch, so one microbatch computes while the other communicates."""
    stage = np.cumsum([0] + [chain[j][2] != chain[j - 1][2] for j in range(1, len(chain))])
    return [(m, j) for _, m, j in sorted((int(stage[j]), m, j) for j in range(len(chain))
                                          for m in range(microbatches))]


@dataclass(frozen=True)
class _Plan:
    """A step's structure, independent of batch sizes (memoised per deployment)."""
    positions: list[tuple[int, int, int]]   # chain position -> (layer index, kind number, op number in kind)
    streams: list[str]                      # chain position -> stream name
    order: list[tuple[int, int]]            # issue order: (microbatch, chain position)
    stream_index: list[int]                 # chain position -> stream number
    n_streams: int
    flat_index: list[int]                   # chain position -> index into the kinds' concatenated op lists
    runs: list[tuple[int, int, int, int]]   # see _periodic_runs


_WARMUP_LAYERS = 3  # identical layers reach their steady period after a few; then the schedule repeats


@functools.lru_cache(maxsize=256)
def _plan(dep: Deployment, has_mtp: bool, eplb: str) -> _Plan:
    probe = decode_work(dep, 1.0, 1.0, 1 if has_mtp else 0) if dep.phase == "decode" else prefill_work(dep, 1.0, 1.0)
    chain = _chain(dep, probe, eplb)
    kinds = layer_kinds(dep, probe, eplb)
    positions, offsets, layer = [], [0], 0
    for k, (kind, count, make) in enumerate(kinds):
        n = len(make())
        offsets.append(offsets[-1] + n)
        for _ in range(count):
            index = layer if kind in ("dense", "moe") else (dep.llm.layers if kind == "lm_head" else dep.llm.layers + 1)
            positions += [(index, k, i) for i in range(n)]
            layer += kind in ("dense", "moe")
    streams = [c[2] for c in chain]
    order = _issue_order(chain, dep.microbatches)
    names = sorted(set(streams))
    return _Plan(positions, streams, order, [names.index(st) for st in streams], len(names),
                 [offsets[k] + i for _, k, i in positions], _periodic_runs(dep, kinds, positions, order))


def _periodic_runs(dep: Deployment, kinds, positions, order) -> list[tuple[int, int, int, int]]:
    """For each long run of identical layers: (start, end) in the issue order of one layer in its steady state,
    where to resume after it, and how many identical layers in between are skipped by extrapolation."""
    first: dict[int, int] = {}
    for i, (_, j) in enumerate(order):
        first.setdefault(positions[j][0], i)
    runs, lo = [], 0
    for kind, count, _ in kinds:
        if kind not in ("dense", "moe"):
            continue
        hi, w = lo + count, lo + _WARMUP_LAYERS
        if count >= _WARMUP_LAYERS + 4:
            runs.append((first[w], first[w + 1], first[hi - 1], hi - 1 - (w + 1)))
        lo = hi
    return runs


def _run(dep: Deployment, work: StepWork, eplb: str, record: bool):
    """List-schedule the step: an op starts when its stream is free and its microbatch's previous op ended.
    Durations may be arrays (many batch compositions scheduled at once); scalars take a pure-float path.
    Without `record`, runs of identical layers are simulated until steady and then extrapolated (exact once
    the schedule is periodic; tests compare with the full graph)."""
    plan = _plan(dep, work.mtp is not None, eplb)
    kinds = [make() for _, _, make in layer_kinds(dep, work, eplb)]
    launch = _launch_s(dep, work)
    flat = [op.duration_s for specs in kinds for op in specs]
    scalar = all(np.ndim(d) == 0 for d in flat)
    if scalar:
        flat = [float(d) for d in flat]
    if record:
        return _record(dep, plan, kinds, flat, launch)
    sidx, fidx, base = plan.stream_index, plan.flat_index, plan.n_streams
    state = [launch] * (base + dep.microbatches)  # stream free times, then microbatch ready times

    def advance(entries) -> None:
        for m, j in entries:
            s, r = sidx[j], base + m
            if scalar:
                start = state[s] if state[s] > state[r] else state[r]
            else:
                start = np.maximum(state[s], state[r])
            state[s] = state[r] = start + flat[fidx[j]]

    pos = 0
    for start, period_end, resume, periods in plan.runs:
        advance(plan.order[pos:start])
        before = list(state)
        advance(plan.order[start:period_end])
        for i in range(len(state)):  # every clock advances by the same step per identical layer: jump ahead
            state[i] = state[i] + (state[i] - before[i]) * periods
        pos = resume
    advance(plan.order[pos:])
    ready = state[base:]
    return [], (max(ready) if scalar else np.maximum.reduce([np.asarray(v, float) for v in ready]))


def _record(dep: Deployment, plan: _Plan, kinds, flat, launch: float):
    ops: list[StepOp] = []
    if launch:
        ops.append(StepOp("graph_launch", "other", "host", -1, -1, 0.0, launch, 0.0, 0.0, 0.0))
    free: dict[str, float] = {}
    ready: dict[int, float] = {m: launch for m in range(dep.microbatches)}
    last: dict[int, int | None] = {m: (0 if ops else None) for m in range(dep.microbatches)}
    for m, j in plan.order:
        index, k, i = plan.positions[j]
        spec, stream = kinds[k][i], plan.streams[j]
        start = max(free.get(stream, launch), ready[m])
        d = float(flat[plan.flat_index[j]])
        free[stream] = ready[m] = start + d
        ops.append(StepOp(spec.name, spec.category, stream, m, index, start, d, float(spec.flops),
                          float(spec.bytes_moved), float(spec.bytes_sent), [last[m]] if last[m] is not None else [],
                          _scalars(spec.inputs)))
        last[m] = len(ops) - 1
    return ops, max(ready.values())


def _scalars(value):
    """OpSpec.inputs with numpy scalars (the recorded, scalar path) as plain numbers."""
    if isinstance(value, dict):
        return {k: _scalars(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_scalars(v) for v in value)
    if isinstance(value, np.ndarray | np.generic):
        return float(value)
    return value


def step_time_s(dep: Deployment, work: StepWork, eplb: str | None = None):
    """Makespan of one step; vectorised over the arrays inside `work` (same schedule as step_ops)."""
    return _run(dep, work, eplb or dep.eplb, record=False)[1]


def step_ops(dep: Deployment | str | None = None, work: StepWork | None = None, eplb: str | None = None, *,
             deployment: Deployment | str | None = None, batch: float | None = None, phase: str | None = None,
             kv_len: int | None = None, prompt_len: int | None = None) -> list[StepOp]:
    """The timed op graph of one step (scalar work only). Each microbatch runs one long chain (all layers in
    order); its stages are issued in turn for each microbatch (two-microbatch overlap, as in the paper and in
    DeepSeek's system). deps holds the previous op of the same microbatch; stream order is implied by start_s.

    Two ways to call it: step_ops(dep, work[, eplb]) with a Deployment and a StepWork, or by name,
    step_ops(deployment="cm384-decode", batch=48, phase="decode"[, kv_len=4096 | prompt_len=4096]) where `batch`
    is per rank (decode: requests; prefill: new tokens) and missing values come from the deployment's operating
    point."""
    dep = dep if dep is not None else deployment
    if isinstance(dep, str):
        from harness.step.deployment import load_deployment
        dep = load_deployment(dep)
    if dep is None:
        raise TypeError("step_ops needs a deployment")
    if phase is not None and phase != dep.phase:
        from harness.errors import InputError
        raise InputError(f"deployment '{dep.name}' is a {dep.phase} deployment, not {phase}", field="--phase")
    if work is None:
        per_chip = None if batch is None else batch * dep.hardware.ranks_per_chip
        if dep.phase == "decode":
            def work_of(d):
                return decode_work(d, per_chip or d.batch_per_chip, kv_len or d.kv_len)
        else:
            def work_of(d):
                return prefill_work(d, per_chip or d.tokens_per_chip, prompt_len or d.prompt_len)
        dep = as_run(dep, work_of, eplb)
        work = work_of(dep)
    return _run(dep, work, eplb or dep.eplb, record=True)[0]


def makespan_s(ops: list[StepOp]) -> float:
    return max((o.end_s for o in ops), default=0.0)
