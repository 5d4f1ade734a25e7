"""`bench gate`: regression gates on speed and on results; prints what moved, exits 1 on a regression."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
from rich.table import Table

from harness.commands.common import Finite, console
from harness.errors import InputError
from harness.gate import golden, speed
from harness.gate.probes import collect_results


def _fmt(x: float | None, spec: str = ".6g") -> str:
    return "-" if x is None else format(x, spec)


@click.command("gate")
@click.option("--results/--no-results", "do_results", default=True, help="Compare golden results (fast).")
@click.option("--speed/--no-speed", "do_speed", default=False,
              help="Run the benchmarks and compare with the speed baseline (slower; needs a source checkout).")
@click.option("--golden", "golden_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Golden results file (default: tests/golden/results.json).")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Speed baseline (default: tests/benchmarks/baseline.json).")
@click.option("--update", is_flag=True, help="Accept the current values as the new golden results / baseline.")
@click.option("--reason", default="", help="Why the golden values move (required with --update).")
@click.option("--margin", type=Finite(1.0, None, min_open=True), default=speed.DEFAULT_MARGIN,
              show_default=True, help="Allowed normalised slowdown before the speed gate fails.")
@click.option("-k", "keyword", default=None, help="Only benchmarks matching this pytest -k expression.")
@click.option("--set", "overrides", multiple=True, metavar="SPEC.PATH=VALUE",
              help="What-if: apply a spec override to the estimate and replay probes and show what would move.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def gate(do_results: bool, do_speed: bool, golden_path: Path | None, baseline_path: Path | None, update: bool,
         reason: str, margin: float, keyword: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Fail when predictions move beyond their tolerance or the harness gets slower."""
    root = Path(__file__).resolve().parents[2]
    golden_path = golden_path or root / "tests" / "golden" / "results.json"
    baseline_path = baseline_path or root / "tests" / "benchmarks" / "baseline.json"
    if not (do_results or do_speed):
        raise InputError("--no-results and --no-speed leave nothing to check", field="--no-results")
    failed = False
    report: dict = {}
    con = console()

    if do_results:
        if update and overrides:
            raise InputError("--set is a what-if; it cannot be combined with --update", field="--set")
        old = golden.load_golden(golden_path, must_exist=not update)  # a bad file fails before the probes run
        current = collect_results(overrides)
        if overrides:  # compare only what the probes with overrides produced
            old = {**old, "values": {k: v for k, v in old["values"].items() if k in current}}
        if update:
            moved = golden.update_golden(golden_path, old, current, reason)
            report["results_updated"] = [m.__dict__ for m in moved]
        else:
            rows = golden.compare(old, current)
            moved = [m for m in rows if m.rel_change != 0.0]
            failed |= any(m.failed for m in rows)
            report["results"] = [dict(m.__dict__, failed=m.failed) for m in moved]
            report["results_checked"] = len(rows)
        if not as_json and not moved:
            con.print(f"results gate: none of {len(current)} results moved from the golden values")
        elif not as_json:
            table = Table(title=f"Results gate ({len(current)} results; showing those that moved)")
            table.add_column("result", overflow="fold", min_width=36)
            for col in ("golden", "now", "change", "tolerance", ""):
                table.add_column(col, justify="right" if col else "left", no_wrap=True)
            for m in moved:
                verdict = "updated" if update else ("FAIL" if m.failed else "ok")
                table.add_row(m.id, _fmt(m.old), _fmt(m.new),
                              "-" if m.rel_change is None else f"{m.rel_change:+.2%}".replace("+", ""),
                              f"{m.rel_tol:.2%}", verdict)
            con.print(table)

    if do_speed:
        base = speed.load_baseline(baseline_path)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run = speed.run_benchmarks(Path(tmp) / "bench.json", keyword=keyword)
                ratios = speed.normalised(speed.medians(run))
                if not update:
                    ratios = speed.confirmed_ratios(ratios, base, margin, Path(tmp))
            except RuntimeError as exc:
                click.echo(f"error: speed gate: {exc}", err=True)
                raise SystemExit(1) from None
        if update:
            new = {"ratios": {**base.get("ratios", {}), **ratios}, "margins": base.get("margins", {}),
                   "calibration": speed.CALIBRATION, "machine": run.get("machine_info", {}).get("cpu", {}).get("brand_raw")}
            from harness.outputs import write_text_atomic
            write_text_atomic(baseline_path, json.dumps(new, indent=1, sort_keys=True) + "\n")
            report["speed_updated"] = ratios
        else:
            rows = [r for r in speed.compare_speed(base, ratios, margin) if r.current_ratio is not None]
            failed |= any(r.failed for r in rows)
            report["speed"] = [dict(r.__dict__, slowdown=r.slowdown, failed=r.failed) for r in rows]
        if not as_json and not update:
            table = Table(title=f"Speed gate (median / calibration median; fails above {margin:g}x)")
            table.add_column("benchmark", overflow="fold", min_width=36)
            for col in ("baseline", "now", "slowdown", ""):
                table.add_column(col, justify="right" if col else "left", no_wrap=True)
            for r in rows:
                table.add_row(r.name, _fmt(r.baseline_ratio, ".4g"), _fmt(r.current_ratio, ".4g"),
                              "-" if r.slowdown is None else f"{r.slowdown:.2f}x",
                              "new" if r.baseline_ratio is None else ("FAIL" if r.failed else "ok"))
            con.print(table)

    if as_json:
        click.echo(json.dumps(dict(report, failed=failed), indent=1, default=str))
    elif not update:
        con.print("gate failed" if failed else "gate passed", style="red" if failed else "green")
    if failed:
        raise SystemExit(1)
