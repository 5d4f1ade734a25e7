"""Step model: schedule invariants, microbatch overlap bounds, vectorised == graph, capacity, ServingCosts."""

from __future__ import annotations

import json
import typing

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.sim.costs import ServingCosts
from harness.step import (CATEGORIES, decode_work, inline_deployment, load_deployment, makespan_s,
                          max_batch_per_chip, memory_plan, prefill_work, step_ops, step_time_s)
from harness.step.serving import build_serving_costs

DECODE = ["cm384-decode", "h800-decode", "h800-decode-ep128", "h100-decode"]
PREFILL = ["cm384-prefill", "h800-prefill"]


def _work(dep, a, b):
    return decode_work(dep, a, b) if dep.phase == "decode" else prefill_work(dep, a, b)


points = st.tuples(st.sampled_from(DECODE + PREFILL), st.floats(1, 256), st.integers(64, 32768),
                   st.sampled_from([1, 2]), st.sampled_from(["default", "perfect"]))


@given(points)
def test_microbatched_step_is_between_longest_stream_and_sum_of_streams(p):
    name, batch, length, mb, eplb = p
    dep = load_deployment(name).replace(microbatches=mb)
    work = decode_work(dep, batch, length) if dep.phase == "decode" else prefill_work(dep, batch * 64, length)
    ops = step_ops(dep, work, eplb)
    busy: dict[str, float] = {}
    for o in ops:
        busy[o.stream] = busy.get(o.stream, 0.0) + o.duration_s
    span = makespan_s(ops)
    assert max(busy.values()) * (1 - 1e-9) <= span <= sum(busy.values()) * (1 + 1e-9)
    assert float(step_time_s(dep, work, eplb)) == pytest.approx(span, rel=1e-9)


@given(st.sampled_from(DECODE + PREFILL))
def test_graph_invariants(name):
    dep = load_deployment(name)
    ops = step_ops(dep, _work(dep, 64 if dep.phase == "decode" else 8192, 4096))
    assert ops and all(o.category in CATEGORIES for o in ops)
    for i, o in enumerate(ops):
        assert all(d < i and ops[d].end_s <= o.start_s + 1e-12 for d in o.deps)
        assert all(d >= 0 for d in o.deps) and o.duration_s >= 0
    for s in {o.stream for o in ops}:  # one op at a time per stream
        on = sorted((o.start_s, o.end_s) for o in ops if o.stream == s)
        assert all(a[1] <= b[0] + 1e-12 for a, b in zip(on, on[1:]))
    assert {o.microbatch for o in ops} == set(range(dep.microbatches))
    layers = {o.layer for o in ops}
    assert set(range(dep.llm.layers)) <= layers


def test_microbatching_hides_gpu_decode_communication():
    """On GPUs the all-to-all runs on its own stream (RDMA, no SMs taken), so overlap can only help at the
    operating point. (On CM384 the 16/8 core split makes it a trade, so no such claim there.)"""
    for name in ["h800-decode", "h800-decode-ep128", "h100-decode"]:
        dep = load_deployment(name)
        one = dep.replace(microbatches=1)
        args = ((dep.batch_per_chip, dep.kv_len) if dep.phase == "decode" else (dep.tokens_per_chip, dep.prompt_len))
        assert float(step_time_s(dep, _work(dep, *args))) <= float(step_time_s(one, _work(one, *args))) * 1.0001


@given(st.sampled_from(DECODE), st.floats(1, 200), st.integers(1, 60000), st.floats(1.01, 2.0))
def test_decode_step_grows_with_batch_and_kv(name, batch, kv, grow):
    dep = load_deployment(name)
    t = float(step_time_s(dep, decode_work(dep, batch, kv)))
    assert float(step_time_s(dep, decode_work(dep, batch * grow, kv))) >= t * (1 - 1e-9)
    assert float(step_time_s(dep, decode_work(dep, batch, int(kv * grow) + 1))) >= t * (1 - 1e-9)


def test_vectorised_equals_scalar():
    dep = load_deployment("cm384-decode")
    b = np.array([1.0, 17.5, 96.0, 180.0])
    k = np.array([100, 4096, 9000, 60000])
    vec = step_time_s(dep, decode_work(dep, b, k))
    assert np.allclose(vec, [float(step_time_s(dep, decode_work(dep, x, y))) for x, y in zip(b, k)])


def test_kv_capacity_matches_memory():
    dep = load_deployment("cm384-decode")
    cap = max_batch_per_chip(dep, 4096)
    assert cap >= 96  # the paper runs batch 96 per NPU at KV 4,096
    assert max_batch_per_chip(dep, 8192) <= cap // 2 + 2
    small = load_deployment("cm384-decode", ["cloudmatrix384.chip.hbm_capacity=20GB"])
    assert max_batch_per_chip(small, 4096) < cap


def test_inline_deployment_defaults():
    dep = inline_deployment("h100-ib", "deepseek-r1", "decode", 72, ep=72)
    assert (dep.ranks, dep.ep, dep.dp, dep.mtp_draft_tokens, dep.microbatches, dep.eplb) == (72, 72, 72, 0, 2,
                                                                                             "default")
    dense = inline_deployment("h100-ib", "llama-3.1-70b", "decode", 8, tp=8)
    assert float(step_time_s(dense, decode_work(dense, 32, 2048))) > 0
    qwen = inline_deployment("cloudmatrix384", "qwen3-235b-a22b", "prefill", 16)
    assert float(step_time_s(qwen, prefill_work(qwen, 8192, 2048))) > 0


def test_expert_imbalance_default_is_never_faster_than_perfect():
    for name in DECODE + PREFILL:
        dep = load_deployment(name)
        w = _work(dep, 32 if dep.phase == "decode" else 4096, 2048)
        assert float(step_time_s(dep, w, "default")) >= float(step_time_s(dep, w, "perfect"))


@given(st.sampled_from(DECODE + PREFILL), st.floats(1, 200), st.integers(64, 32768))
def test_split_hbm_is_never_faster_and_only_splits_split_core_streams(name, batch, length):
    """With split_hbm each split-cores stream gets only its share of HBM: never faster; a deployment that does not
    split its cores is unchanged."""
    dep = load_deployment(name)
    w = _work(dep, batch if dep.phase == "decode" else batch * 64, length)
    shared, split = (float(step_time_s(dep.replace(split_hbm=s), w, "default")) for s in (False, True))
    if dep.overlap == "split-cores":
        assert split >= shared * (1 - 1e-12)
    else:
        assert split == shared


@given(st.floats(1, 200), st.integers(64, 32768))
def test_an_older_attention_kernel_prices_only_attention_and_is_never_faster(batch, kv):
    """FlashMLA's February 2025 release (580 of 989 TFLOPS, what DeepSeek's Day 6 figures ran on) instead of the
    April one: only attention ops change, none gets faster, and where attention is compute-bound it takes 660/580
    as long."""
    dep = load_deployment("h800-decode").replace(attention_kernel="flashmla-2025-02")
    w = _work(dep, batch, kv)
    old, new = (step_ops(d, w, "default") for d in (dep, dep.replace(attention_kernel=None)))
    for a, b in zip(old, new):
        assert a.name == b.name
        if a.category == "attention":
            assert a.duration_s >= b.duration_s * (1 - 1e-12)
            assert a.duration_s <= b.duration_s * 0.667 / 0.586 * (1 + 1e-9)
        else:
            assert a.duration_s == b.duration_s
    at_day6 = [(a.duration_s, b.duration_s) for a, b in zip(*(step_ops(d, _work(dep, 92, 4989), "default")
               for d in (dep, dep.replace(attention_kernel=None)))) if a.name == "attention"]
    fixed = dep.hardware.attention_overhead_s   # the kernel's fixed time per call does not scale with the rate
    assert at_day6 and all((a - fixed) / (b - fixed) == pytest.approx(0.667 / 0.586) for a, b in at_day6)


def test_split_hbm_slows_cloudmatrix_decode():
    dep = load_deployment("cm384-decode")
    w = _work(dep, 96, 4096)
    assert float(step_time_s(dep.replace(split_hbm=True), w, "default")) > 1.2 * float(step_time_s(dep, w, "default"))


# ------------------------------------------------------------------------------------------------------ serving

@pytest.fixture(scope="module", params=["cloudmatrix384", "h800-ib", "h100-ib", "h200-ib", "h20-ib"])
def costs(request):
    return build_serving_costs(request.param)


def test_serving_costs_has_the_protocol(costs):
    for name in typing.get_type_hints(ServingCosts):
        assert hasattr(costs, name), name
    for method in ("prefill_step_s", "decode_step_s", "kv_transfer_s", "prefill_read_s", "cache_write_s"):
        assert callable(getattr(costs, method))
    assert costs.decode_kv_capacity_tokens > costs.decode_batch_cap_per_chip * costs.decode_chips * 1000
    # 61 layers (70,272 B in BF16, reference section 6) plus the MTP module's layer: its decode drafts with MTP
    assert costs.cost_per_chip_hour_usd > 0 and costs.kv_bytes_per_token == 70_272 // 61 * 62


@given(st.floats(0.5, 150), st.floats(16, 100_000))
def test_decode_step_table_matches_the_model(b, k):
    costs = _cm()
    assert costs.decode_step_s(b, k) == pytest.approx(costs.decode_step_exact_s(b, k), rel=0.01)


_CM = {}


def _cm():
    if "c" not in _CM:
        _CM["c"] = build_serving_costs("cloudmatrix384")
    return _CM["c"]


def test_prefill_and_transfers(costs):
    one = costs.prefill_step_s(np.array([4096]), np.array([0]))
    two = costs.prefill_step_s(np.array([4096, 4096]), np.array([0, 0]))
    hit = costs.prefill_step_s(np.array([1024]), np.array([3072]))
    assert 0 < one <= two * (1 + 1e-12) and hit < one
    assert costs.prefill_step_s(np.array([], dtype=int), np.array([], dtype=int)) == 0.0
    assert 0 < costs.kv_transfer_s(1000) < costs.kv_transfer_s(2000)
    assert costs.prefill_read_s(0, 4096, 0) >= costs.prefill_read_s(4096, 0, 0) > 0   # another node's DRAM, own
    assert costs.cache_write_s(4096, remote=True) >= costs.cache_write_s(4096, remote=False) > 0
    if costs.cache_uniform_access:
        assert costs.prefill_read_s(0, 4096, 0) == pytest.approx(costs.prefill_read_s(4096, 0, 0), rel=0.01)


def test_serving_costs_errors():
    from harness.errors import InputError
    with pytest.raises(InputError, match="not prefill"):
        build_serving_costs("cloudmatrix384", prefill_deployment="cm384-decode")
    with pytest.raises(InputError, match="runs on 'h800-ib'"):
        build_serving_costs("cloudmatrix384", decode_deployment="h800-decode")
    with pytest.raises(InputError, match="eplb"):
        build_serving_costs("cloudmatrix384", eplb="magic")
    what_if = build_serving_costs("cloudmatrix384", overrides=["cloudmatrix384.scale_up.bandwidth=20GB/s"])
    assert what_if.decode_step_s(96, 4096) > _cm().decode_step_s(96, 4096)


def test_step_ops_by_name_matches_explicit_work():
    dep = load_deployment("cm384-decode")
    by_name = step_ops(deployment="cm384-decode", batch=48, phase="decode")   # 48 requests per die
    explicit = step_ops(dep, decode_work(dep, 96, dep.kv_len))
    assert makespan_s(by_name) == pytest.approx(makespan_s(explicit))
    from harness.errors import InputError
    with pytest.raises(InputError, match="not prefill"):
        step_ops(deployment="cm384-decode", batch=48, phase="prefill")


def test_tensor_parallel_shards_gqa_kv_and_dense_weights():
    one = inline_deployment("h100-ib", "llama-3.1-70b", "decode", 8, tp=1)
    eight = inline_deployment("h100-ib", "llama-3.1-70b", "decode", 8, tp=8)
    assert memory_plan(eight).weights_bytes < memory_plan(one).weights_bytes / 4
    assert memory_plan(eight).kv_split == 8 and memory_plan(one).kv_split == 1
    # TP8 spreads one token's KV over 8 GPUs: per chip it holds as many requests as the TP1 copy, minus weights
    assert max_batch_per_chip(eight, 2048) >= max_batch_per_chip(one, 2048)
    # with more TP ranks than KV heads (8) each rank reads one replicated KV head for all the group's requests
    sixteen = inline_deployment("h100-ib", "llama-3.1-70b", "decode", 16, tp=16)
    def attention(d):
        return next(o for o in step_ops(d, decode_work(d, 8, 2048)) if o.name == "attention")
    assert attention(sixteen).bytes_moved == pytest.approx(2 * attention(eight).bytes_moved)
    assert attention(sixteen).flops == pytest.approx(attention(eight).flops)
    # replicated TP: norms, residuals and the FFN shards see all the group's tokens; the FFN's flops per rank stay
    def ops(d):
        return {o.name: o for o in step_ops(d, decode_work(d, 8, 2048)) if o.layer == 3 and o.microbatch == 0}
    assert ops(eight)["ffn_norm"].bytes_moved == pytest.approx(8 * ops(one)["ffn_norm"].bytes_moved)
    assert ops(eight)["ffn_gate_up"].flops == pytest.approx(ops(one)["ffn_gate_up"].flops)
    assert "tp_all_reduce" in ops(eight) and "tp_all_reduce" not in ops(one)
    mla = inline_deployment("h100-ib", "deepseek-r1", "decode", 16, tp=2)
    assert memory_plan(mla).kv_split == 1  # MLA's latent KV is replicated on every TP rank


def test_prefill_for_an_mtp_decode_runs_the_mtp_module_over_the_prompt():
    """The draft attends over the MTP module's own KV of the whole context, so a prefill feeding an MTP decode runs
    the module over every prompt token, and its LM head once per prompt (the first draft)."""
    dep = load_deployment("cm384-prefill")
    off = dep.replace(mtp_draft_tokens=0)
    assert dep.mtp_draft_tokens == 1
    w = prefill_work(dep, 16384, 4096)
    ops = [o for o in step_ops(dep, w) if o.microbatch == 0]
    mtp = {o.name: o for o in ops if o.layer == dep.llm.layers + 1}
    main = {o.name: o for o in ops if o.layer == 10}
    assert mtp["experts_gate_up"].flops == pytest.approx(main["experts_gate_up"].flops)   # every prompt token
    head = next(o for o in ops if o.name == "lm_head")
    assert mtp["mtp_lm_head"].flops == pytest.approx(head.flops)                           # one row per prompt
    assert not any(o.layer == off.llm.layers + 1 for o in step_ops(off, prefill_work(off, 16384, 4096)))
    assert float(step_time_s(dep, w)) > float(step_time_s(off, prefill_work(off, 16384, 4096)))
    # and the KV it hands over carries the module's layer too
    assert dep.kv_bytes_per_token() == off.kv_bytes_per_token() * 62 // 61


def _rank_flops(dep, work) -> float:
    return sum(float(o.flops) for o in step_ops(dep, work) if o.microbatch == 0)


@pytest.mark.parametrize("llm", ["deepseek-r1", "qwen3-235b-a22b"])
def test_staged_attention_tp_moves_the_same_work_over_collectives(llm):
    """CloudMatrix-Infer's SP/TP attention: at tp = 1 it is data parallel; with a TP group every rank does the same
    GEMM and attention work as without one (own tokens before and after, the group's tokens for its heads), plus an
    all-gather of the down-projected tokens and an all-to-all of the attention outputs. Replicated (Megatron) TP
    recomputes MLA's down-projections on every rank of the group instead."""
    dp = inline_deployment("cloudmatrix384", llm, "prefill", 16)
    staged = inline_deployment("cloudmatrix384", llm, "prefill", 16, tp=4)  # no more ranks than KV heads
    replicated = staged.replace(attention_tp="replicated")
    assert (dp.attention_tp, staged.attention_tp) == ("staged", "staged")
    def work(d):
        return prefill_work(d, 16384, 4096)
    assert not any(o.name.startswith("tp_") for o in step_ops(dp, work(dp)))
    assert _rank_flops(staged, work(staged)) == pytest.approx(_rank_flops(dp, work(dp)), rel=1e-9)
    extra = _rank_flops(replicated, work(replicated)) / _rank_flops(staged, work(staged)) - 1.0
    assert extra > 1e-3 if staged.llm.attention == "mla" else extra == pytest.approx(0.0, abs=1e-12)
    ops = {o.name: o for o in step_ops(staged, work(staged)) if o.layer == 10 and o.microbatch == 0}
    own = 16384 / 2 / 2                                   # tokens per die per microbatch
    m = staged.llm
    gathered = m.q_lora_rank + m.kv_lora_rank + m.qk_rope_dim if m.attention == "mla" else m.hidden
    out = m.v_head_dim if m.attention == "mla" else m.head_dim
    assert ops["tp_all_gather"].bytes_sent == pytest.approx(own * gathered * 2)
    assert ops["tp_all_to_all"].bytes_sent == pytest.approx(own * m.heads * out * 2)
    assert "tp_all_reduce" in {o.name for o in step_ops(replicated, work(replicated))}
    assert float(step_time_s(staged, work(staged))) > float(step_time_s(dp, work(dp)))


@pytest.mark.parametrize("args", [("h100-ib", "llama-3.1-70b", "decode", 8, None, 8),
                                  ("cloudmatrix384", "qwen3-235b-a22b", "prefill", 16, None, 1),
                                  ("cloudmatrix384", "deepseek-r1", "prefill", 16, None, 4),
                                  ("h200-ib", "qwen3-235b-a22b", "decode", 16, 16, 1)])
def test_fast_schedule_equals_the_op_graph_on_inline_deployments(args):
    hw, llm, phase, chips, ep, tp = args
    dep = inline_deployment(hw, llm, phase, chips, ep=ep, tp=tp)
    for a, b in ((8, 1024), (64, 4096), (200, 30000)):
        w = decode_work(dep, a, b) if phase == "decode" else prefill_work(dep, a * 64, b)
        assert float(step_time_s(dep, w)) == pytest.approx(makespan_s(step_ops(dep, w)), rel=1e-9)


@given(st.sampled_from(DECODE + PREFILL), st.floats(1.0, 4.0), st.sampled_from(["compute", "memory", "fabric"]))
def test_step_never_slower_on_better_hardware(name, factor, what):
    """Fixed issue order and dependencies make the makespan a max-plus (monotone) function of op durations."""
    import dataclasses
    dep = load_deployment(name)
    hw = dep.hardware
    if what == "compute":
        better = dataclasses.replace(hw, peak_flops=tuple((p, v * factor) for p, v in hw.peak_flops))
    elif what == "memory":
        better = dataclasses.replace(hw, hbm_bytes_per_s=hw.hbm_bytes_per_s * factor)
    else:
        better = dataclasses.replace(
            hw, scale_up=dataclasses.replace(hw.scale_up, bandwidth_bytes_per_s=hw.scale_up.bandwidth_bytes_per_s * factor),
            scale_out=dataclasses.replace(hw.scale_out,
                                          bandwidth_bytes_per_s=hw.scale_out.bandwidth_bytes_per_s * factor))
    fast = dep.replace(hardware=better)
    args = (48, 4096) if dep.phase == "decode" else (8192, 4096)
    assert float(step_time_s(fast, _work(fast, *args))) <= float(step_time_s(dep, _work(dep, *args))) * (1 + 1e-9)


@given(st.floats(1, 200_000), st.floats(0, 150_000))
def test_single_piece_prefill_matches_the_model(n, c):
    """One piece lands in one attention group (memoised on values rounded to 1%)."""
    costs = _cm()
    exact = costs.prefill_step_exact_s(np.array([n]), np.array([c]))
    assert costs.prefill_step_s(np.array([n]), np.array([c])) == pytest.approx(exact, rel=0.03)


@pytest.mark.parametrize("name", PREFILL)
def test_one_prompt_is_not_spread_over_the_attention_groups(name):
    """A lone long prompt's attention and projections run in its own group: far longer than an even spread over the
    instance, and no longer than every group that busy."""
    from harness.step.schedule import best_step_time_s, prefill_pieces_time_s, prefill_work_totals
    dep = load_deployment(name)
    n = 16384.0
    alone = prefill_pieces_time_s(dep, np.array([n]), np.array([0.0]))
    spread = float(best_step_time_s(dep, lambda d: prefill_work_totals(d, n, 0.0, n * (n + 1) / 2, 1.0)))
    full = float(best_step_time_s(dep, lambda d: prefill_work_totals(d, n * d.dp, 0.0, d.dp * n * (n + 1) / 2,
                                                                     d.dp)))
    assert spread * 3 < alone <= full * (1 + 1e-9)


@pytest.mark.parametrize("name", PREFILL)
def test_a_long_cached_prefix_weighs_on_its_group(name):
    """A piece of few new tokens after a long cached prefix still loads its group (MLA up-projects the prefix's
    K/V; attention reads it): growing the prefix never shortens the step, and there is no cliff."""
    from harness.step.schedule import prefill_pieces_time_s
    dep = load_deployment(name)
    others = np.full(dep.dp - 1, 512.0)
    times = [prefill_pieces_time_s(dep, np.append(others, 64.0), np.append(np.zeros(dep.dp - 1), c))
             for c in np.linspace(0, 96_000, 49)]
    assert np.all(np.diff(times) >= -1e-9)
    assert max(np.diff(times) / times[:-1]) < 0.1          # 2,000 more cached tokens: a small step, not a jump
    alone = prefill_pieces_time_s(dep, np.array([64.0]), np.array([96_000.0]))
    assert times[-1] >= alone * (1 - 1e-9)


@pytest.mark.parametrize("name", PREFILL)
def test_adding_a_piece_never_shortens_a_prefill_step(name):
    from harness.step.schedule import prefill_pieces_time_s
    dep = load_deployment(name)
    big, small = np.array([8192.0]), np.full(3000, 256.0)
    times = [prefill_pieces_time_s(dep, np.append(big, small[:k]), np.zeros(k + 1)) for k in range(0, 3000, 150)]
    assert np.all(np.diff(times) >= -1e-9)


@pytest.mark.parametrize("name, fabric", [("cm384-prefill", "cloudmatrix384.ub.bandwidth=67.5GB/s"),
                                          ("h800-prefill", "h800-ib.ib.bandwidth=23.5GB/s")])
def test_a_slower_fabric_slows_the_prefill_all_to_all(name, fabric):
    """The bulk all-to-all's bandwidth follows its fabric: a what-if on UB or the NIC reaches prefill."""
    base, slow = load_deployment(name), load_deployment(name, [fabric])

    def dispatch_s(dep):
        return max(o.duration_s for o in step_ops(dep, _work(dep, 8192, 4096)) if o.name == "moe_dispatch")

    assert dispatch_s(slow) > 1.5 * dispatch_s(base)
    assert float(step_time_s(slow, _work(slow, 8192, 4096))) > float(step_time_s(base, _work(base, 8192, 4096)))


def test_inline_deployments_keep_only_what_fits_their_model():
    """The template's MoE-only choices do not leak into what-ifs: at most one redundant expert per rank, and a
    dense model holds no SMs for all-to-all kernels and splits its FFN (replicated TP, not staged)."""
    small = inline_deployment("h200-ib", "deepseek-r1", "decode", 8)
    assert small.redundant_experts == 8
    assert inline_deployment("h800-ib", "deepseek-r1", "decode", 144).redundant_experts == 32
    for hw in ("cloudmatrix384", "h800-ib"):
        llama = inline_deployment(hw, "llama-3.1-70b", "prefill", 8, tp=8)
        assert llama.comm_compute_share == 0.0 and llama.attention_tp == "replicated"


def test_staged_tp_holds_the_weights_it_runs_with_all_heads():
    """Staged TP (CM384 prefill) splits only MLA's up-projections over the group: the down-projections and o_proj
    run on a rank's own tokens with every head, so each rank holds them whole."""
    from harness.step.memory import weights_per_rank_bytes
    dep = load_deployment("cm384-prefill")
    llm = dep.llm
    replicated = weights_per_rank_bytes(dep.replace(attention_tp="replicated"))
    whole = (llm.attention_params() - llm.head_parallel_params()) * (1 - 1 / dep.tp)
    extra = (llm.layers + llm.mtp_modules) * whole + llm.dense_layers * llm.dense_ffn_params() * (1 - 1 / dep.tp)
    vocab = 2 * llm.vocab * llm.hidden * 2 * (1 - 1 / dep.tp)  # BF16 tables, vocabulary-parallel when replicated
    assert dep.precision == "int8"  # one byte per weight
    assert weights_per_rank_bytes(dep) - replicated == pytest.approx(extra + vocab, rel=1e-9)


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_replicated_tp_splits_the_vocabulary(phase):
    """Megatron / vLLM run the LM head (and embedding) vocabulary-parallel: a rank scores the group's rows over an
    eighth of the vocabulary at TP8, and holds an eighth of both tables."""
    from harness.step.memory import weights_per_rank_bytes
    tp8 = inline_deployment("h100-ib", "llama-3.1-70b", phase, 8, tp=8, precision="bf16")
    tp1 = tp8.replace(tp=1, dp=8)
    work = _work(tp8, 8, 4096)
    head = next(o for o in step_ops(tp8, work) if o.name == "lm_head")
    assert head.inputs["gemm"][1] == -(-tp8.llm.vocab // 8)
    vocab = 2 * tp8.llm.vocab * tp8.llm.hidden * 2
    layers = tp8.llm.layers * (tp8.llm.attention_params() + tp8.llm.dense_ffn_params()) * 2
    assert weights_per_rank_bytes(tp8) == pytest.approx((layers + vocab) / 8, rel=1e-9)
    assert weights_per_rank_bytes(tp1) == pytest.approx(layers + vocab, rel=1e-9)


def test_gqa_prefix_reads_follow_the_kv_heads_a_rank_holds():
    """Each rank of a TP group reads its KV heads' part of the group's cached prefixes: at a fixed chip count the
    read per rank does not grow with TP (it did: the whole group's KV on every rank)."""
    from harness.step.estimate import prefix_read_s
    reads = [prefix_read_s(inline_deployment("h100-ib", "llama-3.1-70b", "prefill", 8, tp=tp), 245_760)
             for tp in (1, 2, 4, 8)]
    assert reads == pytest.approx([reads[0]] * 4, rel=1e-9)


def test_the_bulk_all_to_all_inside_one_node_crosses_nvlink():
    """DeepEP's normal kernels inside one node send over NVLink: the time follows its bandwidth (it was one
    latency, free of bytes)."""
    dep = inline_deployment("h200-ib", "deepseek-r1", "prefill", 8)
    slow = inline_deployment("h200-ib", "deepseek-r1", "prefill", 8, overrides=["h200-ib.nvlink.bandwidth=45GB/s"])

    def dispatch_s(d):
        return max(o.duration_s for o in step_ops(d, _work(d, 8192, 4096)) if o.name == "moe_dispatch")

    assert dispatch_s(dep) > 20 * dep.hardware.scale_up.latency_s
    assert dispatch_s(slow) > 5 * dispatch_s(dep)


@pytest.mark.parametrize("name", DECODE + PREFILL)
def test_microbatches_run_only_where_they_shorten_the_step(name):
    """A step splits into microbatches only where that is faster (half a request per microbatch read every weight
    twice): at one request (or a handful of tokens) per group one batch, at the deployment's own operating point its
    microbatches; estimate, the vectorised path and the replay's table agree, with no cliff where they switch."""
    from harness.step.estimate import estimate
    from harness.step.schedule import best_step_time_s
    dep = load_deployment(name)
    one = dep.replace(microbatches=1)
    small, own = (dep.hardware.ranks_per_chip / dep.tp, dep.batch_per_chip) if dep.phase == "decode" else \
        (64.0 / dep.chips, dep.tokens_per_chip)

    def est(d, load):
        kw = dict(batch_per_chip=load, kv_len=4096) if d.phase == "decode" else dict(tokens_per_chip=load,
                                                                                    prompt_len=64)
        return estimate(d, **kw)
    assert est(dep, small)["microbatches"] == 1
    assert est(dep, small)["step_time_ms"] == pytest.approx(est(one, small)["step_time_ms"], rel=1e-12)
    if dep.phase == "decode":
        assert est(dep, own)["microbatches"] == dep.microbatches
        loads = np.geomspace(small, own, 40)
        got = best_step_time_s(dep, lambda d: decode_work(d, loads, 4096)) * 1e3
        assert got == pytest.approx([est(dep, b)["step_time_ms"] for b in loads], rel=1e-9)
        assert np.all(np.diff(got) >= -1e-9)
        costs = build_serving_costs(dep.hardware.name, decode_deployment=name)
        assert [costs.decode_step_s(b, 4096) * 1e3 for b in loads] == pytest.approx(got, rel=0.01)


def test_tpot_search_goes_below_one_request_per_chip_for_tp_groups():
    """A TP8 group over 8 GPUs holds whole requests at 1/8 per chip: an objective that one request per chip misses
    is met with fewer (it was 'not met')."""
    from harness.step.capacity import decode_capacity
    from harness.step.estimate import estimate
    dep = inline_deployment("h100-ib", "llama-3.1-70b", "decode", 8, tp=8, precision="bf16")
    floor = decode_capacity(dep, 4096, [0.0], [1])[0]["lowest_latency_ms"]
    slo = estimate(dep.replace(microbatches=1), batch_per_chip=1.0, kv_len=4096)["tpot_ms"] * 0.999
    got = decode_capacity(dep, 4096, [slo], [1])[0]
    assert got["met"] and got["batch_per_chip"] < 1 and (got["batch_per_chip"] * 8).is_integer()
    assert floor < got["tpot_ms"] <= slo


@pytest.mark.parametrize("hw", ["cloudmatrix384", "h800-ib"])
def test_the_report_breakdown_is_the_step_the_replay_charged(hw):
    costs = build_serving_costs(hw)
    for pieces, new, cached in ((1, 4096, 0), (3, 1105, 2048), (200, 2000, 0)):
        charged = costs.prefill_step_exact_s(np.full(pieces, float(new)), np.full(pieces, float(cached)))
        span = costs.step_span_s("prefill", tokens=new, cached_tokens=cached, requests=pieces)
        assert span == pytest.approx(charged, rel=1e-9)


def test_ttft_search_reads_prefixes_as_estimate_does():
    from harness.step.capacity import prefill_capacity
    from harness.step.estimate import estimate
    dep = load_deployment("h800-prefill")
    point = prefill_capacity(dep, 31024, 30000, [500.0], [1, 2])[0]
    assert point["met"] and point["tokens_per_chip"] * dep.chips < 1024 * dep.dp  # fewer prompts than groups
    est = estimate(dep.replace(microbatches=point["microbatches"]), tokens_per_chip=point["tokens_per_chip"],
                   prompt_len=31024, cached_len=30000)
    assert point["ttft_ms"] == pytest.approx(est["ttft_ms"], rel=1e-9)


def test_prefix_reads_wait_for_the_group_reading_the_most():
    """A prefix lands in one attention group: a lone 30K prefix from SSD is read by one H800 GPU as fast as one
    reader of the node's drives allows; adding reads elsewhere, in any tier, never shortens the step's read
    (the drives still carry every rank's even share)."""
    from harness.cost.comm import ssd_read_s
    costs = build_serving_costs("h800-ib")
    alone = ssd_read_s(30_000 * costs.kv_bytes_per_token, costs.prefill.hardware, 1)
    assert costs.prefill_read_s(0, 0, 30_000, (0, 0, 30_000)) == pytest.approx(alone, rel=1e-12)
    for cm in (costs, build_serving_costs("cloudmatrix384")):
        base = cm.prefill_read_s(0, 30_000, 0, (0, 30_000, 0))
        assert cm.prefill_read_s(100_000, 30_000, 0, (0, 30_000, 0)) >= base
        ssd = [cm.prefill_read_s(0, 0, 100_000, (0, 0, x)) for x in (1_000, 6_244, 6_256, 30_000, 100_000)]
        assert np.all(np.diff(ssd) >= 0)


def test_microbatching_always_keeps_the_overlap_on_every_step():
    """`microbatching = "always"` (and `bench estimate --microbatch`) pins two microbatches where "auto" would
    drop them; the validation's what-if on HBM under the core split pins them too, so it shows that bound."""
    from click.testing import CliRunner

    from harness.cli import main
    from harness.step.estimate import estimate
    dep = load_deployment("cm384-decode")
    assert estimate(dep, batch_per_chip=2, kv_len=4096)["microbatches"] == 1
    assert estimate(dep.replace(microbatching="always"), batch_per_chip=2, kv_len=4096)["microbatches"] == 2
    out = CliRunner().invoke(main, ["estimate", "-d", "cm384-decode", "--batch", "2", "--microbatch", "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["microbatches"] == 2
    split = estimate(dep.replace(split_hbm=True, microbatching="always"))["tpot_ms"]
    assert split > 1.2 * estimate(dep)["tpot_ms"]


def _layer_ops(dep, work, layer: int = 3, eplb: str | None = None) -> dict:
    return {o.name: o for o in step_ops(dep, work, eplb) if o.layer == layer and o.microbatch == 0}


def test_tensor_parallel_attention_work_per_rank_by_hand():
    """Replicated TP, hand-computed per rank and microbatch (8 requests per GPU, 2 microbatches: 4 requests, so a
    TP8 group's 32 tokens). Llama 3.1 70B (64 query heads, 8 KV heads of 128, hidden 8192): Q, K and V for one KV head
    and 8 query heads per rank, N = (8 + 2) x 128; o_proj's partial sums all-reduced in BF16 (32 x 8192 x 2 bytes).
    DeepSeek-R1 at TP2: each rank runs half the heads over the group's requests, so the same attention FLOPs as TP1
    but every rank reads the whole latent KV of twice the requests."""
    llama = inline_deployment("h100-ib", "llama-3.1-70b", "decode", 8, tp=8)
    assert llama.microbatches == 2
    ops = _layer_ops(llama, decode_work(llama, 8, 2048))
    assert ops["qkv_proj"].inputs["gemm"] == (32.0, (8 + 2) * 128, 8192, 1)
    assert ops["qkv_proj"].flops == pytest.approx(2 * 32 * 1280 * 8192)
    reduces = [o for o in step_ops(llama, decode_work(llama, 8, 2048))
               if o.layer == 3 and o.microbatch == 0 and o.name == "tp_all_reduce"]
    assert [o.bytes_sent for o in reduces] == pytest.approx([32 * 8192 * 2] * 2)  # after attention and the FFN
    one, two = (inline_deployment("h100-ib", "deepseek-r1", "decode", 16, tp=tp) for tp in (1, 2))
    a1, a2 = (_layer_ops(d, decode_work(d, 8, 2048))["attention"] for d in (one, two))
    assert a1.flops == pytest.approx(2 * 4 * 128 * (576 + 512) * 2048)    # 4 requests, one query each
    assert a2.flops == pytest.approx(a1.flops)
    assert a1.bytes_moved == pytest.approx(4 * 2048 * 576 * 2)
    assert a2.bytes_moved == pytest.approx(2 * a1.bytes_moved)


def test_expert_ranks_carry_the_busiest_load_by_hand():
    """CloudMatrix384 decode (96 requests per chip = 48 per die, 2 microbatches, one MTP draft: 48 tokens per die
    per microbatch; EP 320 = 288 routed-expert dies + 32 shared-expert dies). A routed die receives 48 x 8 x 320 / 288
    token-expert pairs; a shared die every token of 10 dies (480). Perfect EPLB: the shared dies are the busiest and
    set the expert GEMMs' rows. Default: the routed dies' Poisson routing noise, L + sqrt(2 L ln 320) (balls into
    bins, Raab & Steger 1998), makes them the busiest. Redundant experts are experts a rank runs (grouped GEMM)."""
    import math
    dep = load_deployment("cm384-decode")
    work = decode_work(dep, 96, 4096)
    routed = 48 * 8 * 320 / 288
    perfect = _layer_ops(dep, work, 10, "perfect")
    assert perfect["experts_gate_up"].inputs["gemm"][0] == pytest.approx(480.0)
    default = _layer_ops(dep, work, 10, "default")
    assert default["experts_act"].inputs["rows"] == pytest.approx(routed + math.sqrt(2 * routed * math.log(320)))
    # H800 prefill (EP32, 256 routed + 32 redundant experts: 9 per GPU; 16,384 tokens per GPU in 2 microbatches):
    # 8,192 x 8 token-expert pairs per GPU, spread over its 9 experts' grouped GEMM
    prefill = load_deployment("h800-prefill")
    ops = _layer_ops(prefill, prefill_work(prefill, 16384, 4096), 10, "perfect")
    assert ops["experts_act"].inputs["rows"] == pytest.approx(8192 * 8)
    assert ops["experts_gate_up"].inputs["gemm"] == pytest.approx((8192 * 8 / 9, 2 * 2048, 7168, 9))


def test_kv_capacity_per_chip_by_hand():
    """What HBM holds for the KV cache: capacity less weights less the deployment's reserve. Under TP a GQA token's
    KV is split over the group's GPUs (its KV heads), so a chip holds free HBM / KV bytes per token of distinct
    tokens; MLA's latent is replicated on every rank of a TP group, so a TP2 chip holds half as many, and so is a
    GQA KV head once TP exceeds the KV heads."""
    for llm, tp, chips, share in (("llama-3.1-70b", 8, 8, 1), ("llama-3.1-70b", 1, 8, 1), ("deepseek-r1", 2, 16, 2),
                                  ("llama-3.1-70b", 16, 16, 2)):  # TP16 over 8 KV heads: each held on two ranks
        dep = inline_deployment("h100-ib", llm, "decode", chips, tp=tp)
        plan = memory_plan(dep)
        assert dep.memory_reserve_bytes > 0
        assert plan.kv_bytes == pytest.approx(dep.hardware.hbm_bytes - plan.weights_bytes - dep.memory_reserve_bytes)
        assert max_batch_per_chip(dep, 2048) == int(plan.kv_bytes / dep.kv_bytes_per_token() / share / 2048)


def test_a_decode_that_drafts_launches_two_graphs_unless_launches_overlap():
    """The main model's graph and the MTP module's: each launch costs the spec's graph_launch before the step's ops
    (CloudMatrix-Infer's optimised MTP overlaps them: launch_overlapped)."""
    dep = load_deployment("cm384-decode").replace(launch_overlapped=False)
    assert dep.mtp_draft_tokens == 1
    for d, graphs in ((dep, 2), (dep.replace(mtp_draft_tokens=0), 1)):
        launch = [o for o in step_ops(d, decode_work(d, 96, 4096)) if o.name == "graph_launch"]
        assert [o.duration_s for o in launch] == pytest.approx([graphs * d.hardware.graph_launch_s])
    assert not any(o.name == "graph_launch" for o in step_ops(load_deployment("cm384-decode"),
                                                               decode_work(dep, 96, 4096)))


def test_the_busiest_expert_rank_holds_whole_experts():
    """256 routed experts plus 32 redundant copies over EP128: 2.25 per rank, so some rank holds 3 and its HBM must
    fit them, as much as with 128 redundant (3 per rank), more than with none (2)."""
    from harness.step.memory import weights_per_rank_bytes
    dep = load_deployment("h800-decode-ep128")
    zero, some, three = (weights_per_rank_bytes(dep.replace(redundant_experts=r)) for r in (0, 32, 128))
    assert some == three > zero


def test_one_prompt_reads_its_whole_prefix_into_one_group():
    """One prompt on a DP32 prefill instance: its cached prefix lands in one attention group, which reads all of it
    (MLA: every rank of the group the whole latent), not a 32nd of it."""
    from harness.cost import host_path, transfer_time_s
    from harness.step.estimate import prompts_read_s
    dep = load_deployment("h800-prefill")
    one = float(prompts_read_s(dep, 4096 / dep.chips, 4096, 8192))
    assert one == pytest.approx(float(transfer_time_s(8192 * dep.kv_bytes_per_token(),
                                                      *host_path(dep.hardware, "read", False))))


def test_memory_limits_prefill_capacity_by_whole_prompts():
    """A prefill's KV cache holds whole prompts (cached prefix and new tokens): with no TTFT bound to speak of, the
    most load is as many prompts of 8,192 tokens as fit, times the 4,096 each computes."""
    from harness.step.capacity import prefill_capacity
    dep = load_deployment("h800-prefill")
    [point] = prefill_capacity(dep, 8192, 4096, [1e9], [1, 2])
    assert point["limited_by"] == "memory"
    assert point["tokens_per_chip"] == max_batch_per_chip(dep, 8192) * 4096


def test_the_replay_caps_decode_batches_at_what_memory_holds():
    """cm384-decode is configured for 96 requests per chip; at a 128K KV only 8 fit, and the replay's cap says so."""
    costs = build_serving_costs("cloudmatrix384", overrides=["cm384-decode.operating_point.kv_len=131072"])
    assert costs.decode.batch_per_chip == 96
    assert costs.decode_batch_cap_per_chip == max_batch_per_chip(costs.decode, 131072) < 96


def test_head_parallel_weights_are_the_projections_split_over_heads():
    """Staged TP splits only the head-parallel projections: GQA's Q, K and V (all of attention but o_proj), MLA's
    q_b and kv_b up-projections (DeepSeek-R1: 1536 x 128 x 192 + 512 x 128 x (128 + 128))."""
    from harness.llm import load_llm
    llama, ds = load_llm("llama-3.1-70b"), load_llm("deepseek-r1")
    assert llama.head_parallel_params() == llama.attention_params() - 64 * 128 * 8192
    assert llama.head_parallel_params() == 8192 * (64 + 2 * 8) * 128
    assert ds.head_parallel_params() == 1536 * 128 * 192 + 512 * 128 * 256


def test_kv_transfer_pays_the_rdma_latency_and_bytes():
    """Prefill to decode over the RDMA plane: one latency plus the prompt's KV bytes at its bandwidth."""
    costs = build_serving_costs("h800-ib")
    f = costs.decode.hardware.scale_out
    assert costs.kv_transfer_s(4096) == pytest.approx(f.latency_s + 4096 * costs.kv_bytes_per_token
                                                      / f.bandwidth_bytes_per_s)
    assert costs.kv_transfer_s(0) == 0.0
