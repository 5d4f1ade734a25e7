"""`bench replay` end to end on the real cost model: layout, determinism, clear errors, nothing half-written."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import InputError
from harness.report.inputs import load_replay
from test_sim_results import REQUEST_COLUMNS, TIMESERIES_COLUMNS

SMALL = ["azure-conv", "--limit", "400", "--time-scale", "0.2", "--quiet"]


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["replay", *args], env=env)


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "out"
    result = run(*SMALL, "--out", str(out), "--slo", "ttft=2s,tpot=80ms,percentile=90")
    assert result.exit_code == 0, result.output
    return out


def test_replay_writes_the_layout_on_both_default_backends(replay_dir) -> None:
    run_json = json.loads((replay_dir / "run.json").read_text())
    assert run_json["backends"] == ["cloudmatrix384", "h800-ib"]
    assert run_json["trace"]["requests"] == 400 and len(run_json["trace"]["sha256"]) == 64
    assert run_json["slo"] == {"ttft_s": 2.0, "tpot_ms": 80.0, "percentile": 90.0}
    assert run_json["comparison"] == "equal-chips"
    for label in run_json["backends"]:
        summary = json.loads((replay_dir / label / "summary.json").read_text())
        requests = pl.read_parquet(replay_dir / label / "requests.parquet")
        ts = pl.read_parquet(replay_dir / label / "timeseries.parquet")
        assert set(REQUEST_COLUMNS) <= set(requests.columns) and ts.columns == TIMESERIES_COLUMNS
        assert requests.height == 400 == summary["requests_total"]
        assert summary["requests_completed"] + summary["requests_rejected"] == 400
        assert summary["requests_completed"] == requests.filter(pl.col("status") == "completed").height
        for key in ("ttft_s", "tpot_ms", "e2e_s"):
            assert set(summary[key]) == {"p50", "p90", "p99", "mean"}
        assert set(summary["deployment"]) == {"prefill", "decode"}
        for phase in ("prefill", "decode"):    # busy seconds per op category of a representative step
            busy, step_s = summary["step_breakdown"][phase]["busy_s"], summary["step_breakdown"][phase]["step_s"]
            assert busy and all(v >= 0 for v in busy.values())
            # overlapping streams: the step is no longer than all its busy time, nor shorter than any one category
            assert max(busy.values()) <= step_s * (1 + 1e-9) and step_s <= sum(busy.values()) * (1 + 1e-9)
        assert 0 < summary["utilisation"]["decode"] <= 1
        assert summary["cost_per_million_output_tokens"] > 0
    load_replay(replay_dir)     # the report reads it back against its schemas


def test_same_seed_gives_identical_bytes(tmp_path) -> None:
    env = {"SOURCE_DATE_EPOCH": "0"}
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert run(*SMALL, "--out", str(out), "--seed", "5", env=env).exit_code == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 7
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_json_output_is_one_document(tmp_path) -> None:
    result = run(*SMALL, "--backend", "cloudmatrix384", "--out", str(tmp_path / "o"), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert list(doc["summaries"]) == ["cloudmatrix384"]


def test_options_reach_the_simulator(tmp_path) -> None:
    out = tmp_path / "o"
    result = run(*SMALL, "--backend", "h800-ib", "--backend", "h800-ib", "--compare", "as-given",
                 "--prefill-instances", "h800-ib-2=2", "--batch-cap", "8", "--routing", "round-robin",
                 "--price", "h800-ib=1.5", "--out", str(out))
    assert result.exit_code == 0, result.output
    one = json.loads((out / "h800-ib" / "summary.json").read_text())
    two = json.loads((out / "h800-ib-2" / "summary.json").read_text())
    assert one["deployment"]["prefill"]["instances"] == 3 and two["deployment"]["prefill"]["instances"] == 2
    assert one["cost_per_chip_hour_usd"] == 1.5 and two["cost_per_chip_hour_usd"] != 1.5
    assert one["phase_throughput"]["mean_decode_batch_per_chip"] <= 8


@pytest.mark.parametrize("args, field", [
    (["--slo", "ttft=soon"], "--slo"),
    (["--prefill-instances", "nosuch=2"], "--prefill-instances"),
    (["--prefill-instances", "0"], "--prefill-instances"),
    (["--cache-capacity", "2 parsecs"], "--cache-capacity"),
    (["--routing", "random"], "--routing"),
    (["--deployment", "just-one"], "--deployment"),
    (["--backend", "nosuch-backend"], "--backend"),
    # nothing is resized: the share was accepted and silently unused
    (["--prefill-share", "0.5", "--compare", "as-given"], "--prefill-share"),
    (["--prefill-share", "0.5", "--backend", "h800-ib"], "--prefill-share"),
])
def test_bad_options_fail_in_one_line_and_write_nothing(tmp_path, args, field) -> None:
    out = tmp_path / "o"
    result = run(*SMALL, *args, "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0], result.output
    assert not out.exists()
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--rate", "inf"], "'inf' is not a finite number"),
    (["--time-scale", "nan"], "'nan' is not a finite number"),
    (["--prefill-share", "nan"], "'nan' is not a finite number"),
    (["--seed", "-1"], "'--seed': -1 is not in the range"),
    (["--price", "inf"], "must be a positive $/chip-hour"),
    (["--cache-capacity", "1e400TB"], "too large to be a size"),
    (["--prefill-instances", "99999999"], "a backend may have at most 1,000,000"),  # sizing would run for hours
    (["--compare", "equal-cost", "--price", "h800-ib=0.000001"], "field '--price'"),
])
def test_non_finite_and_out_of_range_numbers_are_refused_before_the_run(tmp_path, args, message) -> None:
    out = tmp_path / "o"
    result = run(*SMALL, *args, "--out", str(out))
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not out.exists()


def test_report_option_writes_the_html_report(tmp_path) -> None:
    html = tmp_path / "r.html"
    result = run(*SMALL, "--backend", "cloudmatrix384", "--out", str(tmp_path / "o"), "--report", str(html))
    assert result.exit_code == 0, result.output
    text = html.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html") and "cloudmatrix384" in text


def test_equal_cost_buys_the_same_spend(tmp_path) -> None:
    out = tmp_path / "o"
    assert run(*SMALL, "--compare", "equal-cost", "--out", str(out)).exit_code == 0
    cm, gpu = (json.loads((out / b / "summary.json").read_text()) for b in ("cloudmatrix384", "h800-ib"))
    spend = [s["chips"] * s["cost_per_chip_hour_usd"] for s in (cm, gpu)]
    # Whole instances: the GPU side lands within one decode instance's cost of the reference spend.
    assert abs(spend[1] - spend[0]) <= gpu["deployment"]["decode"]["chips_per_instance"] * gpu["cost_per_chip_hour_usd"]


@given(st.lists(st.text(max_size=20), max_size=4))
def test_per_backend_options_reject_garbage_cleanly(values) -> None:
    from harness.commands.replay import _count, _per_label, _size_bytes
    for parse in (_count, _size_bytes):
        try:
            out = _per_label(tuple(values), "--x", ["cloudmatrix384", "h800-ib"], parse)
        except InputError as exc:
            assert "--x" in str(exc) and "\n" not in str(exc)
        else:
            assert set(out) <= {"cloudmatrix384", "h800-ib"}


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["replay", "--help"])
    assert result.exit_code == 0
    for option in ("--backend", "--deployment", "--compare", "--slo", "--seed", "--out", "--json", "--report",
                   "--time-scale", "--rate", "--routing", "--cache-capacity", "--quiet"):
        assert option in result.output


def test_sizing_that_cannot_match_says_so(tmp_path) -> None:
    """Whole instances cannot buy the reference's $460.80/hour on H100 (one 32 + 144 GPU unit is $526.24): the
    run says how far off it landed instead of silently comparing unequal spends."""
    result = run(*SMALL, "--backend", "cloudmatrix384", "--backend", "h100-ib", "--compare", "equal-cost",
                 "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert "note: equal-cost: h100-ib: $526.24/hour against cloudmatrix384's $460.80/hour" in result.output
    # ... and keeps saying it where the results go: run.json and the report
    notes = json.loads((tmp_path / "o" / "run.json").read_text())["notes"]
    assert len(notes) == 1 and "$526.24/hour against cloudmatrix384's $460.80/hour" in notes[0]
    from harness.report import render_report
    html = render_report([str(tmp_path / "o")], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "$526.24/hour against cloudmatrix384&#39;s $460.80/hour" in html


def test_equal_chips_says_when_whole_instances_miss_the_reference(tmp_path) -> None:
    """CM384's 6 x 16 + 160 = 256 chips against H800's closest 32 + 144 + ... whole instances: any shortfall is a
    note, since per-chip rates at a fixed offered load move with the chip count."""
    result = run(*SMALL, "--out", str(tmp_path / "o"))
    chips = [json.loads((tmp_path / "o" / b / "summary.json").read_text())["chips"]
             for b in ("cloudmatrix384", "h800-ib")]
    notes = json.loads((tmp_path / "o" / "run.json").read_text())["notes"]
    assert (chips[0] != chips[1]) == bool(notes) and (not notes or f"{chips[1]:,} chips" in notes[0]), result.output


def test_the_slo_verdict_at_a_percentile_is_printed(tmp_path) -> None:
    result = run(*SMALL[:-1], "--backend", "cloudmatrix384", "--slo", "ttft=1us,tpot=1us,percentile=90",
                 "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "SLO met at p90" in line)
    assert "missed" in row
    assert "SLO: TTFT <= 1e-06 s, TPOT <= 0.001 ms" in result.output   # the table names the SLO it judged


@pytest.mark.parametrize("epoch", ["yesterday", "1.5", "99999999999999999"])
@pytest.mark.parametrize("command", ["replay", "sweep", "plan"])
def test_a_malformed_source_date_epoch_is_named_before_anything_runs(tmp_path, command, epoch) -> None:
    """SOURCE_DATE_EPOCH pins the recorded creation time; a value that is no time fails in one line, before the
    run, leaving no output (it was a traceback after the whole replay, sweep or search)."""
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n0,10,5\n1,20,5\n", encoding="utf-8")
    out = tmp_path / "o"
    if command == "sweep":
        sweep = tmp_path / "s.toml"
        sweep.write_text('name = "s"\n[trace]\npath = "t.csv"\n[[backend]]\nbackend = "cloudmatrix384"\n',
                         encoding="utf-8")
        args = ["sweep", str(sweep), "--no-report"]
    elif command == "plan":
        args = ["plan", str(trace), "--backend", "cloudmatrix384", "--max-prefill", "1", "--max-decode", "1"]
    else:
        args = ["replay", str(trace), "--backend", "cloudmatrix384"]
    result = CliRunner().invoke(main, [*args, "--quiet", "--out", str(out)], env={"SOURCE_DATE_EPOCH": epoch})
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: field 'SOURCE_DATE_EPOCH': expected whole seconds since 1970-01-01 UTC, "
                                     f"got '{epoch}'"), result.output
    assert not out.exists()


def test_a_run_far_longer_than_its_traffic_coarsens_its_time_series_and_an_endless_one_is_refused(tmp_path) -> None:
    """A run that drains long after its arrivals (here HBM at 10 KB/s: 14.7 million simulated seconds for two
    requests that arrive 1 s apart, 1 ms cells) merges time-series cells instead of growing into memory (19 GB before)
    or refusing the run; steps beyond any hardware (1e-300 TB/s: 1e298 s) are refused in one line, writing nothing."""
    import polars as pl

    from harness.sim.result import MAX_CELLS, Grid

    grid = Grid(1e-3)
    grid.add_interval(0.0, 3.5 * MAX_CELLS * 1e-3)
    grid.add_at(0.0005, 7.0)
    assert grid.cell_s == 4e-3 and grid.values.size <= MAX_CELLS
    assert grid.values.sum() == pytest.approx(3.5 * MAX_CELLS * 1e-3 + 7.0)
    assert grid.values[0] == pytest.approx(4e-3 + 7.0)
    assert grid.coarsened_to(8e-3)[0] == pytest.approx(8e-3 + 7.0)

    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n0,10,5\n1,20,5\n", encoding="utf-8")
    out = tmp_path / "o"
    result = run(str(trace), "--backend", "cloudmatrix384", "--quiet", "--out", str(out),
                 "--set", "cloudmatrix384.chip.hbm_bandwidth=1e-8 TB/s")
    assert result.exit_code == 0, result.output
    series = pl.read_parquet(out / "cloudmatrix384" / "timeseries.parquet")
    width = series["t_s"][1] - series["t_s"][0]
    assert width > 3600 and (series["output_tokens_per_s"] * width).sum() == pytest.approx(10)

    out = tmp_path / "o2"
    result = run(str(trace), "--backend", "cloudmatrix384", "--quiet", "--out", str(out),
                 "--set", "cloudmatrix384.chip.hbm_bandwidth=1e-300 TB/s")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error: the run reaches ") and "check the spec values and --set" in result.output
    assert not out.exists()
