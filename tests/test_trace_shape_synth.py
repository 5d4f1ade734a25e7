"""Shaping (window, limit, time-scale, rate) and seeded synthesis, checked against what a user relies on."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import InputError
from harness.trace import load_trace, shape, synthesize, trace_stats
from harness.trace.lengths import Empirical, servegen_lengths
from harness.trace.shape import parse_window


@pytest.fixture(scope="module")
def conv():
    return load_trace("azure-conv")


def test_window_keeps_arrivals_in_range_and_restarts_at_zero(conv):
    arrival = conv.requests["arrival_s"]
    shaped = shape(conv, window="600:1200")
    expected = arrival.filter((arrival >= 600) & (arrival < 1200))
    assert len(shaped) == expected.len()
    assert shaped.requests["arrival_s"].to_list() == pytest.approx((expected - expected[0]).to_list())
    assert len(shape(conv, window=":100")) == int((arrival < 100).sum())
    assert len(shape(conv, window="3000:")) == int((arrival >= 3000).sum())


def test_limit_then_time_scale(conv):
    shaped = shape(conv, limit=100, time_scale=0.1)
    assert len(shaped) == 100
    assert shaped.requests["arrival_s"].to_list() == pytest.approx((conv.requests["arrival_s"].head(100) * 0.1).to_list())
    assert shaped.requests["request_id"].to_list() == conv.requests["request_id"].head(100).to_list()


@given(rate=st.floats(0.01, 1e5))
def test_rate_rescales_to_the_target_mean_rate(rate):
    workload = synthesize(200, rate=3.0, seed=1)
    shaped = shape(workload, rate=rate)
    assert trace_stats(shaped)["rate_req_s"] == pytest.approx(rate, rel=1e-9)
    # Only time moves: the order and the lengths are the same requests.
    assert shaped.requests.drop("arrival_s").equals(workload.requests.drop("arrival_s"))


@pytest.mark.parametrize("text", ["abc", "5", "10:5", "-1:4", "a:b"])
def test_bad_window_is_an_input_error(text):
    with pytest.raises(InputError, match="--window"):
        parse_window(text)


def test_empty_window_and_conflicting_options_are_input_errors(conv):
    with pytest.raises(InputError, match="no requests arrive in the window"):
        shape(conv, window="99999:")
    with pytest.raises(InputError, match="either --time-scale or --rate"):
        shape(conv, time_scale=2, rate=3)


@pytest.mark.parametrize("arrival, cv", [("poisson", 1.0), ("gamma", 0.5), ("gamma", 3.0)])
def test_synthetic_arrivals_have_the_requested_rate_and_burstiness(arrival, cv):
    stats = trace_stats(synthesize(50_000, rate=20.0, arrival=arrival, cv=cv, seed=7))
    assert stats["rate_req_s"] == pytest.approx(20.0, rel=0.03)
    assert stats["inter_arrival_s"]["cv"] == pytest.approx(cv, rel=0.05)


def test_synthesis_is_seeded():
    a = synthesize(1000, rate=5, input="lognormal:800:1.5", output="uniform:1:300", seed=3)
    b = synthesize(1000, rate=5, input="lognormal:800:1.5", output="uniform:1:300", seed=3)
    c = synthesize(1000, rate=5, input="lognormal:800:1.5", output="uniform:1:300", seed=4)
    assert a.requests.equals(b.requests) and not a.requests.equals(c.requests)


def test_duration_bounds_the_arrivals():
    workload = synthesize(duration_s=100.0, rate=50.0, seed=2)
    arrival = workload.requests["arrival_s"]
    assert arrival.max() < 100.0 and abs(len(workload) - 5000) < 5 * np.sqrt(5000)


def test_length_specs():
    workload = synthesize(20_000, rate=1, input="uniform:10:20", output="lognormal:300:0.5", seed=0)
    inp, out = workload.requests["input_tokens"], workload.requests["output_tokens"]
    assert inp.min() == 10 and inp.max() == 20
    assert out.mean() == pytest.approx(300, rel=0.03) and out.std() / out.mean() == pytest.approx(0.5, rel=0.08)
    with pytest.raises(InputError, match="--input"):
        synthesize(10, rate=1, input="uniform:20:10")


def test_a_huge_mean_session_length_is_bounded_by_the_trace():
    """Sessions of a mean of 1e9 turns (no n x mean allocation): no session ends within the trace, so only the
    eight interleaved ones (and the one that ties for slot 8) ever start."""
    workload = synthesize(10, rate=1, session_turns=1e9, open_sessions=8, seed=0)
    assert len(workload) == 10 and workload.requests["session_id"].n_unique() <= 9


def test_empirical_lengths_resample_real_pairs(conv):
    source = conv.requests
    sampler = Empirical(source["input_tokens"].to_numpy(), source["output_tokens"].to_numpy())
    workload = synthesize(5000, rate=1, lengths=sampler, seed=0)
    pairs = set(zip(source["input_tokens"].to_list(), source["output_tokens"].to_list()))
    assert set(zip(workload.requests["input_tokens"].to_list(), workload.requests["output_tokens"].to_list())) <= pairs


def test_servegen_deepseek_r1_lengths_match_source_stats(shared_data):
    sampler = servegen_lengths(shared_data / "alibaba-servegen" / "servegen_reason_deepseek-r1.tar.gz")
    stats = trace_stats(synthesize(100_000, rate=10, lengths=sampler, seed=0))
    # SOURCE.md (weighted by each window's rate x 600 s): input mean 1,576, p50 180; output mean 2,134, p50 1,014.
    assert stats["input_tokens"]["mean"] == pytest.approx(1576, rel=0.05)
    assert stats["output_tokens"]["mean"] == pytest.approx(2134, rel=0.03)
    assert stats["output_tokens"]["p50"] == pytest.approx(1014, rel=0.03)


def test_servegen_unknown_client(shared_data):
    with pytest.raises(InputError, match="no client '9999'"):
        servegen_lengths(shared_data / "alibaba-servegen" / "servegen_reason_deepseek-r1.tar.gz", "9999")


def test_shared_prefixes_give_the_expected_reuse():
    # One group, 4 whole shared blocks of 16 tokens, then unique content: every request after the first reuses 4.
    workload = synthesize(100, rate=1, input=40, output=5, prefix_tokens=64, block_size=16, seed=0)
    blocks = workload.requests["prefix_blocks"]
    assert all(row[:4] == [0, 1, 2, 3] for row in blocks.to_list())
    assert workload.requests["input_tokens"].unique().to_list() == [104]
    reuse = trace_stats(workload)["prefix_reuse"]
    assert reuse["block_hits"] == 99 * 4 and reuse["blocks_total"] == 100 * 7


def test_sessions_carry_history_as_prefix():
    workload = synthesize(400, rate=2, input=100, output=50, session_turns=4, block_size=64, seed=5)
    frame = workload.requests.with_columns(pl.int_range(pl.len()).alias("row"))
    for _, turns in frame.group_by("session_id"):
        turns = turns.sort("row")
        inputs = turns["input_tokens"].to_list()
        assert inputs == [100 + 150 * k for k in range(len(inputs))]  # prompt = history + new turn
        lists = turns["prefix_blocks"].to_list()
        for prev, cur, prev_in in zip(lists, lists[1:], inputs):
            whole = prev_in // 64
            assert cur[:whole] == prev[:whole]  # every whole block of the history is reused
    assert trace_stats(workload)["sessions"] == frame["session_id"].n_unique() > 1
