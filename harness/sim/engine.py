"""The event loop: arrivals, routing, prefill steps, KV handoff, decode steps, cache write-back.

It knows nothing about hardware: every duration and capacity comes from the ServingCosts object. Events are
instance-step completions (not tokens) on one heap with sequence-number tie-breaks, so runs are deterministic.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable
from itertools import accumulate

import numpy as np

from harness.sim.blocks import prefix_blocks
from harness.sim.cache import ContextCache
from harness.sim.config import SimConfig, resolve
from harness.sim.costs import ServingCosts
from harness.sim.decode import DecodeInstance, Plan, Uniforms, tokens_per_step
from harness.sim.prefill import PrefillInstance, form_batch
from harness.sim.result import COMPLETED, DECODE_KV, EMPTY, PREFILL_KV, REJECTED, TOO_LONG, SimResult
from harness.sim.routing import Router
from harness.trace.workload import Workload

PREFILL_DONE, DECODE_DONE, KV_ARRIVED, CACHE_WRITTEN, KICK_PREFILL, KICK_DECODE = range(6)

# Decode step times are memoised on (batch, mean KV length rounded to this many tokens): a 16-token step in KV
# length moves a decode step's time by far less than 0.1%, and the memo makes long replays loop-bound.
KV_QUANTUM_TOKENS = 16

# A decode instance plans up to this many steps at once (1: step by step); see _start_decode.
BLOCK_STEPS = 32


def simulate(workload: Workload, costs: ServingCosts, config: SimConfig,
             progress: Callable[[int], None] | None = None) -> SimResult:
    """Replay every request of `workload` on one backend; every request ends completed or rejected."""
    return _Run(workload, costs, config, progress).run()


class _Run:
    def __init__(self, workload: Workload, costs: ServingCosts, config: SimConfig,
                 progress: Callable[[int], None] | None) -> None:
        req = workload.requests
        self.costs, self.config, self.progress = costs, config, progress
        self.caps = caps = resolve(costs, config)
        self.arrival = req.get_column("arrival_s").to_numpy().astype(np.float64)
        self.order = np.argsort(self.arrival, kind="stable")
        if req.height and not self.arrival.min() >= 0:
            raise ValueError("arrival times must be finite and >= 0 (shape the workload first)")
        self.inp = req.get_column("input_tokens").fill_null(0).to_numpy().astype(np.int64)
        self.out = req.get_column("output_tokens").fill_null(0).to_numpy().astype(np.int64)
        n = self.n = req.height
        self.blocks = prefix_blocks(req, workload.block_size, config.block_size)
        self.block_size = self.blocks.block_size
        block_bytes = int(costs.kv_bytes_per_token) * self.block_size
        self.cache = ContextCache(caps.cache_scope, config.prefill_instances, caps.cache_shard_bytes,
                                  caps.cache_ssd_shard_bytes, block_bytes)
        span = float(self.arrival.max() - self.arrival.min()) if n else 0.0
        self.res = SimResult(n, caps, config.prefill_instances, config.decode_instances, self.block_size,
                             cell_s=max(span / 1000.0, 1e-3))
        self.use_cache = self.cache.enabled and not self.blocks.empty
        self.router = Router(caps.routing)
        self.prefills = [PrefillInstance(i, caps.prefill_chips) for i in range(config.prefill_instances)]
        # Each decode instance draws its MTP acceptances from its own stream, spawned from the run's seed, so its
        # draws do not depend on how its steps interleave with other instances' (see _start_decode).
        streams = np.random.SeedSequence(config.seed).spawn(config.decode_instances)
        self.decodes = [DecodeInstance(i, caps.decode_batch_cap, caps.decode_kv_tokens,
                                       Uniforms(np.random.default_rng(streams[i])), caps.decode_dp_ranks)
                        for i in range(config.decode_instances)]
        self.pending: deque[int] = deque()          # admitted, waiting for decode KV to be reserved
        self.remaining = self.inp.copy()            # prompt tokens still to compute
        self.done = np.zeros(n, dtype=np.int64)     # prompt tokens already in KV (cache hits, earlier chunks)
        self.looked_up = np.zeros(n, dtype=bool)
        self.hit_blocks = np.zeros(n, dtype=np.int64)
        self.heap: list[tuple] = []
        self.seq = 0
        self.now = 0.0
        self._decode_memo: dict[int, dict[int, float]] = {}   # batch -> quantised KV -> step seconds
        self._step_reads = [0, 0, 0, (0, 0, 0)]     # tokens read this step: local, remote, SSD; the largest
                                                    # prefix's (local, remote, SSD)

    # ---- the loop -------------------------------------------------------------------------------------------
    def run(self) -> SimResult:
        heap, arrival, order = self.heap, self.arrival, self.order
        n = self.n
        handlers = {PREFILL_DONE: self._prefill_done, DECODE_DONE: self._decode_done, KV_ARRIVED: self._kv_arrived,
                    CACHE_WRITTEN: self._cache_written, KICK_PREFILL: self._kick_prefill,
                    KICK_DECODE: self._kick_decode}
        i = 0
        while i < n or heap:
            # Arrivals at time t go before events at t, so same-instant arrivals share the next step.
            if i < n and (not heap or arrival[order[i]] <= heap[0][0]):
                r = int(order[i])
                self.now = float(arrival[r])
                i += 1
                self._arrive(r)
                if self.progress is not None and (i & 4095) == 0:
                    self.progress(i)
                continue
            t, _, kind, idx, payload = heapq.heappop(heap)
            self.now = t
            handlers[kind](idx, payload)
        if self.progress is not None:
            self.progress(n)
        res = self.res
        unfinished = np.flatnonzero(res.status == 0)
        if unfinished.size:  # a scheduler bug, never the user's input
            raise RuntimeError(f"simulation ended with {unfinished.size} requests unaccounted for")
        return res

    def _push(self, t: float, kind: int, idx: int, payload=None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, idx, payload))

    # ---- arrival, admission, routing ------------------------------------------------------------------------
    def _arrive(self, r: int) -> None:
        caps, inp, out = self.caps, int(self.inp[r]), int(self.out[r])
        reason = 0
        if inp <= 0 or out <= 0:
            reason = EMPTY
        elif inp + out > caps.max_context_tokens:
            reason = TOO_LONG
        elif inp > caps.prefill_kv_tokens:
            reason = PREFILL_KV
        elif out > 1 and inp + out > caps.decode_kv_tokens:
            reason = DECODE_KV
        if reason:
            self.res.status[r] = REJECTED
            self.res.reason[r] = reason
            return
        if self.pending or not self._dispatch(r):
            self.pending.append(r)

    def _dispatch(self, r: int) -> bool:
        """Reserve decode KV (if the request needs decode), then send it to a prefill instance."""
        res, out = self.res, int(self.out[r])
        if out > 1:
            need = int(self.inp[r]) + out
            inst = self.router.decode(self.decodes, need)
            if inst is None:
                return False
            inst.reserved_tokens += need
            inst.reserved_requests += 1
            res.decode_instance[r] = inst.index
        res.reserve_s[r] = self.now
        p = self.router.prefill(self.prefills, self._new_tokens_by_instance(r))
        res.prefill_instance[r] = p.index
        p.queue.append(r)
        p.load_tokens += int(self.inp[r])
        self._kick(p.index, KICK_PREFILL, p)
        return True

    def _new_tokens_by_instance(self, r: int) -> list[int]:
        inp = int(self.inp[r])
        if self.router.policy != "cache-aware" or not self.use_cache:
            return [inp] * len(self.prefills)
        blocks = self.blocks.of(r)
        return [inp - min(self.cache.match(blocks, p.index).local * self.block_size, inp - 1) for p in self.prefills]

    def _retry_pending(self) -> None:
        while self.pending and self._dispatch(self.pending[0]):
            self.pending.popleft()

    def _kick(self, idx: int, kind: int, inst) -> None:
        if not inst.busy and not inst.kicked:
            inst.kicked = True
            self._push(self.now, kind, idx)

    # ---- prefill --------------------------------------------------------------------------------------------
    def _lookup(self, r: int) -> None:
        """First time r is considered for a step on its instance: fetch its cached prefix."""
        self.looked_up[r] = True
        if not self.use_cache:
            return
        inst = int(self.res.prefill_instance[r])
        m = self.cache.fetch(self.blocks.of(r), inst)
        if m.blocks == 0:
            return
        inp, bs = int(self.inp[r]), self.block_size
        hit = min(m.blocks * bs, inp - 1)       # the last prompt token is always computed (it yields logits)
        local = min(m.local * bs, hit)
        remote = min(m.remote * bs, hit - local)
        reads = self._step_reads
        reads[0] += local
        reads[1] += remote
        reads[2] += hit - local - remote
        if hit > sum(reads[3]):
            reads[3] = (local, remote, hit - local - remote)
        self.hit_blocks[r] = m.blocks
        self.res.cached_tokens[r] = hit
        self.done[r] = hit
        self.remaining[r] = inp - hit
        self.prefills[inst].load_tokens -= hit

    def _kick_prefill(self, idx: int, _payload) -> None:
        inst = self.prefills[idx]
        inst.kicked = False
        if inst.busy or not inst.queue:
            return
        caps, res = self.caps, self.res
        self._step_reads = [0, 0, 0, (0, 0, 0)]
        batch = form_batch(inst.queue, self.remaining, self.done, self.looked_up, caps.prefill_budget_tokens,
                           caps.chunk_tokens, caps.prefill_kv_tokens, self._lookup)
        # plain lists: a batch is usually one piece, where numpy's per-call cost dominates
        rids, new = [b[0] for b in batch], [b[1] for b in batch]
        cached = self.done[rids].tolist()
        start = res.prefill_start_s
        for r in rids:
            if math.isnan(start[r]):
                start[r] = self.now
        dur = float(self.costs.prefill_step_s(new, cached))
        local, remote, ssd, largest = self._step_reads
        read_s = float(self.costs.prefill_read_s(local, remote, ssd, largest)) if local + remote + ssd else 0.0
        res.cache_busy_s += read_s
        dur += read_s                          # the step cannot compute before its cached prefix is in HBM
        inst.busy = True
        inst.batch = batch
        new_sum, cached_sum = sum(new), sum(cached)
        res.prefill_steps += 1
        res.prefill_pieces += len(batch)
        res.prefill_piece_tokens_sum += new_sum
        res.prefill_cached_sum += cached_sum
        res.computed_prefill_tokens += new_sum
        res.prefill_busy_s += dur
        res.prefill_busy_grid.add_interval(self.now, self.now + dur)
        if self.config.record_steps:
            res.steps.append((0, idx, self.now, self.now + dur, new_sum + cached_sum, len(batch),
                              (new_sum + cached_sum) / len(batch)))
        self._push(self.now + dur, PREFILL_DONE, idx)

    def _prefill_done(self, idx: int, _payload) -> None:
        inst, res, now = self.prefills[idx], self.res, self.now
        inst.busy = False
        first_tokens = 0
        for r, piece, completes in inst.batch:
            self.done[r] += piece
            self.remaining[r] -= piece
            inst.load_tokens -= piece
            if not completes:
                continue
            res.prefill_end_s[r] = now
            res.first_token_s[r] = now           # prefill's last position yields the first token
            first_tokens += 1
            self._write_back(inst, r)
            if self.out[r] <= 1:
                res.finish_s[r] = now
                res.status[r] = COMPLETED
                continue
            links = inst.links_free_s            # a min-heap of when each link is free
            done = max(now, links[0]) + float(self.costs.kv_transfer_s(int(self.inp[r])))
            heapq.heapreplace(links, done)
            self._push(done, KV_ARRIVED, int(res.decode_instance[r]), r)
        inst.batch = []
        res.output_tokens_grid.add_at(now, first_tokens)
        self._kick(idx, KICK_PREFILL, inst)

    def _write_back(self, inst: PrefillInstance, r: int) -> None:
        """Asynchronously write the prompt's new blocks to the cache; they are readable once written."""
        if not self.use_cache:
            return
        blocks = self.blocks.of(r)[self.hit_blocks[r]:]
        if blocks.size == 0:
            return
        tokens = int(self.inp[r]) - int(self.res.cached_tokens[r])
        start = max(self.now, inst.write_free_s)
        write_s = float(self.costs.cache_write_s(tokens, False))
        inst.write_free_s = start + write_s
        self.res.cache_busy_s += write_s
        self._push(inst.write_free_s, CACHE_WRITTEN, inst.index, blocks.tolist())

    def _cache_written(self, idx: int, blocks: list[int]) -> None:
        self.cache.insert(blocks, idx)

    # ---- decode ---------------------------------------------------------------------------------------------
    # A decode instance plans its next steps at once (their MTP draws, who finishes, their durations) up to the
    # first step in which a request finishes, and schedules one event at the end of the plan. Nothing outside can
    # change a running batch except a request joining, which cuts the plan at the step boundary after its KV
    # arrives. Every request's times are exactly those of one event per step (BLOCK_STEPS = 1), with far fewer
    # events; float totals over several decode instances add in another order, so they agree to rounding only.

    def _kv_arrived(self, idx: int, r: int) -> None:
        inst = self.decodes[idx]
        inst.waiting.append(r)
        plan = inst.plan
        if plan is None:
            self._kick(idx, KICK_DECODE, inst)
            return
        j = bisect.bisect_left(plan.ends, self.now)     # the step under way: the request joins after it
        if j < plan.m - 1:
            plan.m = j + 1
            inst.gen += 1
            self._push(plan.ends[j], DECODE_DONE, idx, inst.gen)

    def _kick_decode(self, idx: int, _payload) -> None:
        inst = self.decodes[idx]
        inst.kicked = False
        if not inst.busy:
            self._start_decode(inst)

    def _step_times(self, n: int, busiest_kv: list[int]) -> list[float]:
        """Durations of decode steps of n requests whose busiest DP rank holds busiest_kv[j] tokens of KV: each
        priced as a step where every rank's attention reads that much (the mean KV length that gives it)."""
        memo = self._decode_memo.get(n)
        if memo is None:
            memo = self._decode_memo[n] = {}
        ranks, price, chips = self.caps.decode_dp_ranks, self.costs.decode_step_s, self.caps.decode_chips
        out = []
        for b in busiest_kv:   # per planned step: plain ints and floats, the batch's memo held in a local
            q = int(b * ranks / n / KV_QUANTUM_TOKENS + 0.5)
            dur = memo.get(q)
            if dur is None:
                dur = memo[q] = float(price(n / chips, q * KV_QUANTUM_TOKENS or 1))
            out.append(dur)
        return out

    def _start_decode(self, inst: DecodeInstance) -> None:
        joined = inst.join(self.inp, self.out)
        n = inst.running
        if n == 0:
            return
        if joined.size:
            self.res.decode_start_s[joined] = self.now
        draft = self.caps.mtp_draft_tokens
        k = inst.next_plan_steps
        u = inst.uniforms.take(k * n * draft)
        tokens = tokens_per_step(u, k * n, draft, self.caps.mtp_accept).reshape(k, n)
        emitted = tokens.cumsum(axis=0)
        # steps in which nobody finishes (a leading run: each request's count only grows); the plan ends at the
        # first step in which someone does, or at its last
        clear = int((emitted < inst.remaining).all(axis=1).sum())
        last = min(clear, k - 1)
        per_step = tokens[:last + 1].sum(axis=1).tolist()
        busiest = inst.busiest_rank_kv(emitted, last + 1)
        durs = self._step_times(n, busiest)
        ends = list(accumulate(durs, initial=self.now))[1:]
        held = list(accumulate(per_step[:last], initial=inst.kv_sum))   # KV held at each step's start
        inst.plan = Plan(self.now, k, n, ends, durs, held, per_step, emitted, last + 1, busiest, clear < k)
        inst.busy = True
        inst.gen += 1
        self._push(ends[-1], DECODE_DONE, inst.index, inst.gen)

    def _decode_done(self, idx: int, gen: int) -> None:
        inst = self.decodes[idx]
        if gen != inst.gen:         # a plan cut short by a joining request left this event behind
            return
        plan, res, m = inst.plan, self.res, inst.plan.m
        inst.plan = None
        inst.busy = False
        n, ends = plan.n, plan.ends[:m]
        res.decode_steps += m
        res.decode_batch_sum += n * m   # whole numbers: the same sum in one addition
        # Float sums add step by step, as one event per step would: the same bits on one decode instance; with
        # several, a plan's steps go in together, between other instances' plans, so the last bits may differ.
        kv_sum, busiest_sum, busy_s = res.decode_kv_sum, res.decode_busiest_kv_sum, res.decode_busy_s
        for j in range(m):
            kv_sum += plan.held[j] / n
            busiest_sum += plan.busiest[j] * inst.ranks / n
            busy_s += plan.durs[j]
        res.decode_kv_sum, res.decode_busiest_kv_sum, res.decode_busy_s = kv_sum, busiest_sum, busy_s
        res.decode_busy_grid.add_intervals(plan.start_s, ends)
        if self.config.record_steps:
            res.steps.extend((1, idx, start, end, plan.held[j], n, plan.held[j] / n)
                             for j, (start, end) in enumerate(zip([plan.start_s] + ends[:-1], ends)))
        total, finished = inst.advance(plan.emitted[m - 1], finishing=plan.finishes and m == len(plan.ends))
        # The last step's tokens are capped at what each request still needed.
        counts = plan.per_step[:m - 1]
        res.output_tokens_grid.add_counts(ends, counts + [total - sum(counts)])
        inst.uniforms.give_back((plan.k - m) * plan.n * self.caps.mtp_draft_tokens)
        # Plan about twice as far as the last plan got (long when nothing joins, short when joins are frequent),
        # and at least 256 request-steps: up to there a plan's array work costs per call, not per element.
        inst.next_plan_steps = min(BLOCK_STEPS, max(2 * m, 256 // n))
        if finished.size:
            res.finish_s[finished] = self.now
            res.status[finished] = COMPLETED
            inst.reserved_tokens -= int((self.inp[finished] + self.out[finished]).sum())
            inst.reserved_requests -= int(finished.size)
            self._retry_pending()
        self._start_decode(inst)


__all__ = ["simulate", "BLOCK_STEPS", "KV_QUANTUM_TOKENS"]
