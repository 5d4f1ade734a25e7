"""The serving cost model the simulator calls: SSD tier, cache paths, step breakdown, and the fast prefill table."""

from __future__ import annotations

import functools
import json
from collections import defaultdict

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from harness.cli import main
from harness.cost.comm import collective_time_s, host_path
from harness.errors import InputError
from harness.hardware import load_hardware
from harness.step import CATEGORIES, load_deployment
from harness.step.estimate import estimate
from harness.step.serving import build_serving_costs

BACKENDS = ["cloudmatrix384", "h800-ib", "h100-ib", "h200-ib"]


@functools.cache
def costs(backend: str, *sets: str):
    return build_serving_costs(backend, overrides=sets)


# ---- SSD tier and context-cache paths

@pytest.mark.parametrize("backend", BACKENDS)
def test_ssd_read_is_slower_than_dram_and_grows_with_tokens(backend):
    c = costs(backend)
    assert c.prefill_read_s(0, 0, 0) == 0.0
    for tokens in (128, 4096, 100_000):
        ssd = c.prefill_read_s(0, 0, tokens)
        assert ssd > c.prefill_read_s(tokens, 0, 0) > 0
        assert c.prefill_read_s(0, 0, tokens + 128) > ssd


def test_ssd_read_is_paced_by_the_slower_of_drive_and_host_path():
    hw = load_hardware("cloudmatrix384")
    c = costs("cloudmatrix384")
    share = 4096 / c.prefill.dp * c.kv_bytes_per_token   # each rank reads its attention group's share of the batch
    readers = hw.ranks_per_node                          # a node's 16 dies share its volume link
    assert c.prefill.ranks >= readers == 16
    # the VPC link (400 Gb/s per node) is slower than UB, so it paces the copy; the latencies add
    bw, lat = host_path(hw, "read", False)
    assert hw.ssd_read_bytes_per_s == pytest.approx(50e9)
    assert hw.ssd_read_bytes_per_s < bw
    assert c.prefill_read_s(0, 0, 4096) == pytest.approx(hw.ssd_latency_s + lat + share * readers / 50e9)
    # a faster volume path than UB: UB paces it
    fast = costs("cloudmatrix384", "cloudmatrix384.host.ssd_read_bandwidth=10TB/s")
    assert fast.prefill_read_s(0, 0, 4096) == pytest.approx(hw.ssd_latency_s + lat + share / bw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_steps_prefixes_are_read_by_the_instance_ranks_at_once(backend):
    """A batch's cached KV reaches the instance's ranks in parallel, each over its own path: one attention group's
    share crosses one rank's link (not the whole batch through one link)."""
    c = costs(backend)
    bw, lat = host_path(c.prefill.hardware, "read", False)
    tokens = 64 * 4096
    assert c.prefill_read_s(tokens, 0, 0) == pytest.approx(lat + tokens / c.prefill.dp * c.kv_bytes_per_token / bw)
    assert c.prefill.dp > 1


def test_pooled_dram_mixes_same_node_and_other_node_paths():
    """EMS stripes blocks over all 48 nodes: 1/48 of a fetch is in the reader's node (Table 1 intra figures)."""
    hw = load_hardware("cloudmatrix384")
    bw, lat = host_path(hw, "read", False)
    assert host_path(hw, "read", True) == (bw, lat)          # a uniform pool has no remote
    assert 147e9 < bw < 151e9 and 1.0e-6 < lat < 1.7e-6
    assert 1 / bw == pytest.approx((1 / 48) / 151e9 + (47 / 48) / 147e9)
    wbw, wlat = host_path(hw, "write", False)
    assert 107e9 < wbw < 110e9 and wlat == pytest.approx((1.1 + 47 * 1.9) / 48 * 1e-6)
    gpu = load_hardware("h800-ib")                            # node-local DRAM: PCIe here, RDMA elsewhere
    assert host_path(gpu, "read", False)[0] == pytest.approx(64e9)
    assert host_path(gpu, "read", True)[0] == pytest.approx(25e9)


def test_ub_collectives_use_the_same_node_figures_only_inside_a_node():
    sets = [("scale_up.intra_node_bandwidth", "1GB/s")]
    slow_intra = load_hardware("cloudmatrix384", sets)
    hw = load_hardware("cloudmatrix384")
    inside, across = hw.ranks_per_node, 2 * hw.ranks_per_node
    assert collective_time_s("all_gather", 1 << 20, inside, slow_intra) > collective_time_s("all_gather", 1 << 20,
                                                                                           inside, hw)
    assert collective_time_s("all_gather", 1 << 20, across, slow_intra) == collective_time_s("all_gather", 1 << 20,
                                                                                             across, hw)


def test_fabric_paths_default_to_the_one_figure():
    f = load_hardware("h800-ib").scale_up
    assert {f.path(op, same) for op in ("read", "write") for same in (True, False)} == {
        (f.bandwidth_bytes_per_s, f.latency_s)}


@pytest.mark.parametrize("value, message", [("fast", "needs a unit of bandwidth"),
                                            ("5 us", "needs a unit of bandwidth"), ("0GB/s", "greater than zero"),
                                            ("-5GB/s", "'-5GB/s' is negative")])
def test_bad_ssd_bandwidth_is_a_clear_error(value, message):
    with pytest.raises(InputError, match=message) as err:
        load_hardware("h800-ib", [("host.ssd_read_bandwidth", value)])
    assert "ssd_read_bandwidth" in str(err.value)


def test_replay_with_ssd_tier_hits_more_of_the_cache():
    """Mooncake conversations, a DRAM pool too small for them: the SSD tier serves the evicted prefixes."""
    def hit_ratio(*extra: str) -> tuple[float, dict]:
        result = CliRunner().invoke(main, ["replay", "mooncake-conv", "--limit", "2000", "--time-scale", "0.2",
                                           "--backend", "cloudmatrix384", "--cache-capacity", "1GB", "--quiet",
                                           "--json", *extra])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)["summaries"]["cloudmatrix384"]
        return summary["cache_hit_token_ratio"], summary

    without, _ = hit_ratio()
    with_ssd, summary = hit_ratio("--cache-ssd", "1TB")
    assert with_ssd > without + 0.1
    assert summary["notes"] == []
    assert set(summary["step_breakdown"]) == {"prefill", "decode"}


# ---- step breakdown

@pytest.mark.parametrize("name", ["cm384-prefill", "cm384-decode", "h800-prefill", "h800-decode"])
def test_step_breakdown_matches_estimate_breakdown(name):
    """Busy seconds per category = `bench estimate`'s per-op breakdown summed by category (plus launches)."""
    dep = load_deployment(name)
    c = costs(dep.hardware.name)
    est = estimate(dep)
    if dep.phase == "decode":
        got = c.step_breakdown("decode", batch_per_chip=dep.batch_per_chip, mean_kv_len=dep.kv_len)
    else:
        got = c.step_breakdown("prefill", tokens=dep.prompt_len, cached_tokens=0,
                               requests=dep.tokens_per_chip * dep.chips / dep.prompt_len)
    want: dict[str, float] = defaultdict(float)
    for row in est["breakdown"]:
        want[row["category"]] += row["ms_per_step"] / 1e3
    if not dep.launch_overlapped:
        want["other"] += (1 + (dep.phase == "decode" and dep.mtp_draft_tokens > 0)) * dep.hardware.graph_launch_s
    assert set(got) <= set(CATEGORIES)
    assert got == pytest.approx({k: v for k, v in want.items() if v > 0}, rel=1e-9)
    # busy time over overlapping streams is at least the step time, which is the estimate's
    assert sum(got.values()) >= est["step_time_ms"] / 1e3 * (1 - 1e-9)
    point = ({"batch_per_chip": dep.batch_per_chip, "mean_kv_len": dep.kv_len} if dep.phase == "decode" else
             {"tokens": dep.prompt_len, "cached_tokens": 0, "requests": dep.tokens_per_chip * dep.chips / dep.prompt_len})
    assert c.step_span_s(dep.phase, **point) == pytest.approx(est["step_time_ms"] / 1e3, rel=1e-9)


def test_step_breakdown_rejects_an_unknown_phase():
    with pytest.raises(ValueError, match="phase"):
        costs("cloudmatrix384").step_breakdown("verify", tokens=1.0)


# ---- prefill table

pieces = st.lists(st.tuples(st.integers(1, 20_000), st.integers(0, 60_000) | st.just(0)), min_size=1, max_size=40)


@given(st.sampled_from(["cloudmatrix384", "h800-ib"]), pieces, st.integers(1, 30))
@example("h800-ib", [(275, 0)], 4)  # where the microbatch choice switches: interpolating the least of two runs missed 1%
def test_prefill_table_is_within_one_percent_of_the_model(backend, batch, repeat):
    c = costs(backend)
    new = np.array([n for n, _ in batch] * repeat)
    cached = np.array([k for _, k in batch] * repeat)
    budget = c.prefill_token_budget_per_chip * c.prefill_chips
    keep = np.cumsum(new) <= budget
    keep[0] = True
    new, cached = new[keep], cached[keep]
    assert c.prefill_step_s(new, cached) == pytest.approx(c.prefill_step_exact_s(new, cached), rel=0.01)


def test_prefill_pieces_price_the_same_in_any_shape():
    """The simulator passes plain lists; arrays of any shape (and scalars) are their pieces, flattened, as
    prefill_step_exact_s takes them: the one-piece fast path must not read a (1, k) array as one piece."""
    c = costs("h800-ib")
    one, two = c.prefill_step_s([3000], [1000]), c.prefill_step_s([3000, 20000], [1000, 0])
    assert one < two
    for new, cached in [(np.array([3000]), np.array([1000])), (np.array([[3000]]), np.array([[1000]])),
                        ((3000,), (1000,)), (3000, 1000), (np.int64(3000), np.float64(1000))]:
        assert c.prefill_step_s(new, cached) == one
    assert c.prefill_step_s(np.array([[3000, 20000]]), np.array([[1000, 0]])) == two
    assert c.prefill_step_s(np.array([[3000], [20000]]), np.array([[1000], [0]])) == two


LLAMA = tuple(f"{d}.{k}" for d in ("h800-prefill", "h800-decode")
              for k in ("llm=llama-3.1-70b", "ep=1", "mtp_draft_tokens=0", "redundant_experts=0"))


@pytest.mark.parametrize("backend, sets", [("cloudmatrix384", ()), ("h800-ib", ()),
                                           ("h800-ib", LLAMA),   # dense FFN, GQA attention: other ops
                                           ("h800-ib", ("h800-prefill.dp=1", "h800-prefill.tp=32"))])
def test_table_nodes_are_the_step_model_itself(backend, sets):
    """At its grid points each table holds the step model evaluated there alone (the tables are built on sparse,
    broadcast grids: an op whose work summed or counted across the grid would break this)."""
    from harness.step.schedule import best_step_time_s, decode_work, one_piece_work, prefill_work_totals

    c = costs(backend, *sets)
    rng = np.random.default_rng(1)
    for _ in range(12):
        i, j = (int(rng.integers(len(a))) for a in c._axes)
        b, k = c._axes[0][i], c._axes[1][j]
        want = float(best_step_time_s(c.decode, lambda d: decode_work(d, max(b, 1e-6), k), c.eplb))
        assert min(t[i][j] for t in c._table) == pytest.approx(want, rel=1e-12)
        i, j, m = (int(rng.integers(len(a))) for a in c._piece_axes)
        n, ca, share = (a[x] for a, x in zip(c._piece_axes, (i, j, m)))
        lo, hi = n + ca, n * ca + n * (n + 1) / 2
        want = float(best_step_time_s(c.prefill, lambda d: prefill_work_totals(
            d, n, ca, lo + share * (hi - lo), min(max(1.0 / max(share, 1e-12), 1.0), n)), c.eplb))
        assert min(t[i][j][m] for t in c._piece_table) == pytest.approx(want, rel=1e-12)
        if c.prefill.dp == 1:   # no piece outlasts the even share: no lone-piece table
            assert c._one_table is None
            continue
        i, j, m = (int(rng.integers(len(a))) for a in c._one_axes)
        a, ca, ratio = (ax[x] for ax, x in zip(c._one_axes, (i, j, m)))
        want = float(best_step_time_s(c.prefill, lambda d: one_piece_work(d, a, ca, a * ratio), c.eplb))
        assert min(t[i][j][m] for t in c._one_table) == pytest.approx(want, rel=1e-12)


def test_prefill_beyond_the_table_falls_back_to_the_model():
    c = costs("h800-ib")
    huge = np.array([4 * c.prefill_token_budget_per_chip * c.prefill_chips])
    assert c.prefill_step_s(huge, np.array([0])) == pytest.approx(c.prefill_step_exact_s(huge, np.array([0])),
                                                                   rel=0.01)
    assert c.prefill_step_s(np.array([0]), np.array([5])) == 0.0
