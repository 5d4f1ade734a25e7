"""`bench plan` on a small space where the full grid is also computed: it must find the grid's optimum, with fewer
replays, on the real cost model and a bundled trace."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.results.slo import parse_slo
from harness.sweep.executors import open_executor
from harness.sweep.plan import Bounds, plan_deployments
from harness.sweep.run import run_points
from harness.sweep.spec import Backend, make_point, trace_ref
from harness.sweep.table import judge

# 300 Azure conversation requests at 200 req/s with a decode batch cap of one request per chip: one 16-chip prefill
# instance is too slow for a 0.5 s p99 TTFT and one 160-chip decode instance too small for a 50 ms p99 TPOT, so
# the answer is neither corner of the space. The search assumes feasibility is monotone in the instance counts;
# here a third prefill instance floods the one decode instance (3 x 1 misses the SLO where 2 x 1 meets it), so
# the space stops at two prefill instances.
TRACE = {"limit": 300, "rate": 200.0}
SLO = "ttft=1s,tpot=50ms"
CAP = "cm384-decode.operating_point.batch_per_chip=1"
MAX_P, MAX_D = 2, 3


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Every cell of the space, replayed."""
    trace = trace_ref("azure-conv", TRACE)
    slo = parse_slo(SLO)
    b = Backend("cloudmatrix384", "cloudmatrix384", "cm384-prefill", "cm384-decode",
                {"prefill_instances": 1, "decode_instances": 1})
    points = [make_point(i, trace, b, {"prefill_instances": p, "decode_instances": d,
                                       CAP.split("=")[0]: CAP.split("=")[1]}, 0, slo, 512)
              for i, (p, d) in enumerate((p, d) for d in range(1, MAX_D + 1) for p in range(1, MAX_P + 1))]
    with open_executor("local", 1) as ex:
        outcome = run_points(points, tmp_path_factory.mktemp("grid"), ex, show_progress=False)
    cells = {}
    for pt in points:
        r = outcome.records[pt["id"]]
        assert r["status"] == "ok", r["error"]
        cells[(pt["knobs"]["prefill_instances"], pt["knobs"]["decode_instances"])] = (
            judge(r["summary"], slo)["meets_slo"], r["summary"]["chips"])
    return cells


def test_plan_finds_the_full_grid_optimum_with_fewer_replays(grid, tmp_path):
    feasible = {c: chips for c, (ok, chips) in grid.items() if ok}
    assert feasible and len(feasible) < len(grid)           # the space has both kinds of cell
    best_chips = min(feasible.values())
    expected = min((c for c, chips in feasible.items() if chips == best_chips), key=lambda c: (c[1], c[0]))
    assert expected not in ((1, 1), (MAX_P, MAX_D))
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        result = plan_deployments(trace_ref("azure-conv", TRACE),
                                  [Backend("cloudmatrix384", "cloudmatrix384", "cm384-prefill", "cm384-decode",
                                           {"prefill_instances": 1, "decode_instances": 1})],
                                  parse_slo(SLO), out, bounds=Bounds(MAX_P, MAX_D), sets=[CAP], jobs=jobs)
        b = result["backends"][0]
        w = b["winner"]
        assert (w["prefill_instances"], w["decode_instances"]) == expected
        assert w["chips"] == best_chips and w["meets_slo"] and w["slo_margin"] >= 0
        assert b["evaluated"] < len(grid)
        # The evaluated points agree with the grid's verdicts (same replays, whatever the worker count).
        table = pl.read_parquet(out / "plan.parquet")
        for r in table.iter_rows(named=True):
            assert r["meets_slo"] == grid[(r["knob:prefill_instances"], r["knob:decode_instances"])][0]
        c = b["closest_miss"]
        assert c is not None and not c["meets_slo"] and c["cost_per_hour_usd"] < w["cost_per_hour_usd"]
        assert result["best"] == "cloudmatrix384"


def test_cli_plan_answers_for_both_backends_with_a_report(tmp_path):
    out = tmp_path / "plan"
    args = ["plan", "azure-conv", "--limit", "150", "--rate", "100", "--slo", "ttft=1s,tpot=60ms",
            "--max-prefill", "3", "--max-decode", "2", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "cloudmatrix384:" in result.output and "h800-ib:" in result.output and "winner:" in result.output
    plan = json.loads((out / "plan.json").read_text())
    assert [b["label"] for b in plan["backends"]] == ["cloudmatrix384", "h800-ib"]
    assert plan["best"] in ("cloudmatrix384", "h800-ib")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Winner per backend" in html and "h800-prefill" in html
    # A second run reuses every point.
    again = CliRunner().invoke(main, [*args, "--json"])
    assert again.exit_code == 0
    assert json.loads(again.output)["backends"] == plan["backends"]


def test_a_chip_bound_no_deployment_fits_is_refused_before_any_replay(tmp_path):
    out = tmp_path / "plan"
    result = CliRunner().invoke(main, ["plan", "azure-conv", "--limit", "30", "--slo", "ttft=2s,tpot=80ms",
                                       "--max-chips", "100", "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and "field '--max-chips'" in result.output and "takes 176" in result.output, \
        result.output
    assert "Traceback" not in result.output and not out.exists()


def test_when_nothing_meets_the_slo_the_plan_says_how_far_the_largest_was(tmp_path):
    result = CliRunner().invoke(main, ["plan", "azure-conv", "--limit", "150", "--rate", "100",
                                       "--slo", "ttft=1us,tpot=60ms", "--backend", "cloudmatrix384",
                                       "--max-prefill", "2", "--max-decode", "1", "--out", str(tmp_path / "p"),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert "no deployment in the space meets the SLO" in result.output
    assert "the largest evaluated (2 + 1) misses: p99 TTFT" in result.output, result.output
