"""Results: SLO parsing, the per-request table, summary metrics, time series, sizing, atomic output folders."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_sim_properties import ToyCosts, traces, workload

from harness.errors import InputError
from harness.results.requests import request_table
from harness.results.slo import Slo, parse_durations_ms, parse_slo
from harness.results.summary import summarize
from harness.results.timeseries import timeseries
from harness.results.write import BackendOutput, write_replay
from harness.sim.config import SimConfig
from harness.sim.engine import simulate
from harness.sim.replay import BackendPlan, labels_for, size_plans

REQUEST_COLUMNS = ["request_id", "arrival_s", "input_tokens", "output_tokens", "cached_tokens", "prefill_instance",
                   "decode_instance", "prefill_start_s", "prefill_end_s", "first_token_s", "finish_s", "ttft_s",
                   "tpot_ms", "e2e_s", "status", "reason"]
TIMESERIES_COLUMNS = ["t_s", "input_tokens_per_s", "output_tokens_per_s", "prefill_queue", "decode_queue",
                      "running_batch", "kv_used_frac", "cache_hit_ratio", "prefill_util", "decode_util"]


@pytest.mark.parametrize("text, slo", [
    ("ttft=2s,tpot=50ms", Slo(2.0, 50.0, None)),
    ("ttft=500ms, tpot=0.1s, percentile=99", Slo(0.5, 100.0, 99.0)),
    ("tpot=40,ttft=1.5,p=90", Slo(1.5, 40.0, 90.0)),
])
def test_slo_parses_units(text: str, slo: Slo) -> None:
    assert parse_slo(text) == slo


@pytest.mark.parametrize("text", ["ttft", "ttft=fast", "latency=2s", "ttft=-1s", "percentile=120", "tpot=0ms",
                                  "p=50ms"])
def test_slo_rejects_bad_text_with_one_line(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_slo(text)
    assert "--slo" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    # an infinite objective passed and the replay died writing run.json (JSON has no infinity)
    ("ttft=1e400s", "--slo: ttft must be finite"),
    ("tpot=1e400", "--slo: tpot must be finite"),
    # the last one silently won
    ("ttft=2s,tpot=50ms,ttft=3s", "--slo: ttft is given twice"),
    ("p=90,percentile=80", "--slo: percentile is given twice"),
])
def test_slo_refuses_infinite_or_repeated_objectives(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_slo(text)


@given(st.text(max_size=40))
def test_slo_parser_never_crashes(text: str) -> None:
    try:
        parse_slo(text)
    except InputError:
        pass


@given(st.text(max_size=40))
def test_duration_lists_parse_to_positive_ms_or_are_refused_by_option(text: str) -> None:
    try:
        values = parse_durations_ms(text, "--tpot-slo")
    except InputError as err:
        assert str(err).startswith("--tpot-slo: ") and "\n" not in str(err)
        return
    assert len(values) == text.count(",") + 1 and all(0 < v < float("inf") for v in values)


def test_duration_lists_take_units_and_a_bare_default():
    assert parse_durations_ms("15ms, 0.03s,50", "--x") == [15.0, 30.0, 50.0]
    assert parse_durations_ms("2", "--x", bare_unit="s") == [2000.0]
    assert parse_durations_ms("500us", "--x") == [0.5]


def _run(w, costs=None, config=None):
    costs = costs or ToyCosts()
    config = config or SimConfig(prefill_instances=2, decode_instances=1)
    res = simulate(w, costs, config)
    return res, request_table(res, w)


@given(traces())
def test_request_table_has_one_row_per_request_in_the_layout(w) -> None:
    res, table = _run(w)
    assert table.columns[:len(REQUEST_COLUMNS)] == REQUEST_COLUMNS or set(REQUEST_COLUMNS) <= set(table.columns)
    assert table.height == len(w)
    assert table["request_id"].to_list() == w.requests["request_id"].to_list()
    assert set(table["status"].unique()) <= {"completed", "rejected"}
    done = table.filter(pl.col("status") == "completed")
    assert done["reason"].null_count() == done.height
    multi = done.filter(pl.col("output_tokens") > 1)
    expect = (multi["finish_s"] - multi["first_token_s"]) / (multi["output_tokens"] - 1) * 1e3
    np.testing.assert_allclose(multi["tpot_ms"].to_numpy(), expect.to_numpy())
    np.testing.assert_allclose(done["ttft_s"].to_numpy(), (done["first_token_s"] - done["arrival_s"]).to_numpy())


def test_summary_metrics_follow_their_definitions() -> None:
    n = 200
    rng = np.random.default_rng(3)
    w = workload(np.sort(rng.uniform(0, 20, n)), rng.integers(100, 3000, n), rng.integers(1, 100, n))
    res, table = _run(w)
    slo = Slo(ttft_s=0.5, tpot_ms=25.0, percentile=90)
    s = summarize(table, res, backend="toy", label="toy", deployment={}, cost_per_chip_hour_usd=2.0, slo=slo,
                  trace_duration_s=20.0, step_breakdown={})
    done = table.filter(pl.col("status") == "completed")
    assert s["requests_total"] == n == s["requests_completed"] + s["requests_rejected"]
    assert s["chips"] == 2 * 2 + 1 * 2
    duration = res.finish_s.max() - table["arrival_s"].min()
    assert s["simulated_duration_s"] == pytest.approx(duration)
    out = done["output_tokens"].sum()
    assert s["output_tokens_per_s_per_chip"] == pytest.approx(out / duration / 6)
    assert s["cost_per_million_output_tokens"] == pytest.approx(6 * 2.0 * duration / 3600 / (out / 1e6))
    good = done.filter((pl.col("ttft_s") <= 0.5) & (pl.col("tpot_ms").is_null() | (pl.col("tpot_ms") <= 25.0)))
    assert s["goodput_req_per_s"] == pytest.approx(good.height / 20.0)
    assert s["slo_attainment"] == pytest.approx(good.height / n)
    assert s["ttft_s"]["p90"] == pytest.approx(np.percentile(done["ttft_s"].to_numpy(), 90))
    assert s["slo_percentile"]["met"] == (s["slo_percentile"]["ttft_s"] <= 0.5 and s["slo_percentile"]["tpot_ms"] <= 25)
    json.dumps(s, allow_nan=False)


@given(traces())
def test_timeseries_is_bucketed_and_consistent(w) -> None:
    res, table = _run(w)
    ts = timeseries(res, w)
    assert ts.columns == TIMESERIES_COLUMNS and 1 <= ts.height <= 200
    width = ts["t_s"][1] - ts["t_s"][0]
    done = table.filter(pl.col("status") == "completed")
    # Every output token is counted once, in some bucket.
    assert (ts["output_tokens_per_s"] * width).sum() == pytest.approx(done["output_tokens"].sum(), rel=1e-6)
    assert (ts["prefill_queue"] >= 0).all() and (ts["decode_queue"] >= 0).all() and (ts["running_batch"] >= 0).all()
    assert ts["kv_used_frac"].max() <= 1.0 + 1e-9
    assert ts["prefill_util"].max() <= 1.0 + 1e-9 and ts["decode_util"].max() <= 1.0 + 1e-9


def test_labels_are_unique() -> None:
    assert labels_for(["a", "b", "a", "a"]) == ["a", "b", "a-2", "a-3"]


def _plan(label, p=1, d=1, price=None, fixed=frozenset()):
    return BackendPlan(label, label, "x", "y", SimConfig(prefill_instances=p, decode_instances=d), price, fixed)


def test_equal_chips_and_equal_cost_sizing() -> None:
    cm = ToyCosts(prefill_chips=16, decode_chips=160, cost_per_chip_hour_usd=1.8)
    gpu = ToyCosts(prefill_chips=32, decode_chips=144, cost_per_chip_hour_usd=2.99)
    plans = [_plan("cm", 6, 1), _plan("gpu")]
    chips = size_plans(plans, [cm, gpu], "equal-chips")[1].config
    assert (chips.prefill_instances, chips.decode_instances) == (3, 1)          # 96 + 144 vs 96 + 160
    cost = size_plans(plans, [cm, gpu], "equal-cost")[1].config                  # $460.8/h buys 154 GPUs
    assert (cost.prefill_instances, cost.decode_instances) == (1, 1)             # 176 GPUs: the closest to 154
    assert size_plans(plans, [cm, gpu], "as-given")[1].config.prefill_instances == 1
    fixed = size_plans([plans[0], _plan("gpu", 5, 2, fixed=frozenset({"prefill", "decode"}))], [cm, gpu],
                       "equal-chips")[1].config
    assert (fixed.prefill_instances, fixed.decode_instances) == (5, 2)
    prefill_heavy = size_plans(plans, [cm, gpu], "equal-chips", prefill_share=0.5)[1].config
    assert (prefill_heavy.prefill_instances, prefill_heavy.decode_instances) == (4, 1)   # 128 + 144
    cheap = size_plans([plans[0], _plan("gpu", price=0.9)], [cm, gpu], "equal-cost")[1].config
    assert cheap.prefill_instances * 32 + cheap.decode_instances * 144 > 256       # a cheaper chip buys more


def test_output_folder_is_all_or_nothing(tmp_path) -> None:
    w = workload([0.0, 1.0], [100, 200], [5, 1])
    res, table = _run(w)
    good = BackendOutput("toy", {"x": 1}, table, timeseries(res, w))
    target = tmp_path / "out"
    write_replay(target, {"backends": ["toy"]}, [good])
    assert sorted(p.name for p in target.iterdir()) == ["run.json", "toy"]
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    bad = BackendOutput("toy2", {"x": float("nan")}, table, timeseries(res, w))    # NaN is not JSON: fails
    with pytest.raises(ValueError):
        write_replay(target, {"backends": ["toy", "toy2"]}, [good, bad])
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before   # old folder intact
    assert [p.name for p in tmp_path.iterdir()] == ["out"]                             # no temp folder left
