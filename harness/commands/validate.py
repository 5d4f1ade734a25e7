"""`bench validate`: published numbers vs the model's predictions, with error and what kind of check each is."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from harness.commands.common import Finite, console
from harness.outputs import refuse_overwriting
from harness.validate import explain as explain_row
from harness.validate import validation_rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows.")
@click.option("--strict", is_flag=True,
              help="Exit 1 when any row's error exceeds its tolerance (models/validation/targets.toml).")
@click.option("--tolerance", type=Finite(min=0, min_open=True),
              help="One tolerance in percent for every row, instead of the recorded ones.")
@click.option("--summary", is_flag=True, help="Print one line per table (row count, mean and worst error) only.")
@click.option("--explain", "explain_id", metavar="ID", help="Show the breakdown behind one row.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save the rows as JSON here (what `bench report` reads).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the HTML validation report here.")
def validate(as_json: bool, strict: bool, tolerance: float | None, summary: bool, explain_id: str | None,
             out_path: Path | None, report_path: Path | None) -> None:
    """Reproduce published operator tables and end-to-end results; print the error of each prediction."""
    if explain_id:
        row = explain_row(explain_id)
        if as_json:
            click.echo(json.dumps(row, indent=2, default=float))
        else:
            _print_explain(row)
        return
    refuse_overwriting({"--out": out_path, "--report": report_path})
    rows = validation_rows()
    if tolerance is not None:
        for r in rows:
            r["tolerance_pct"] = tolerance
            r["ok"] = bool(abs(r["error_pct"]) <= tolerance)
    saved = [{k: v for k, v in r.items() if k != "explain"} for r in rows]
    if out_path or report_path:
        from harness.outputs import write_text_atomic
        from harness.report.inputs import ValidationResults
        from harness.report.render import render_html

        # Both outputs are made before either is written. The report reads the rows as saved (what `bench report`
        # would read back) and names their file, or says there is none.
        text = json.dumps(saved, indent=2) + "\n"
        html = (render_html([ValidationResults(path=out_path or Path("(not saved: no --out)"),
                                               rows=json.loads(text))]) if report_path else None)
        if out_path:
            write_text_atomic(out_path, text)
        if report_path:
            write_text_atomic(report_path, html)
    if as_json:
        click.echo(json.dumps(saved, indent=2))
    else:
        con = console()
        if not summary:
            t = Table(title="bench validate: published vs predicted (what and conditions: --json or --explain ID)")
            for c in ("id", "published", "predicted", "unit", "error %", "tol %", "kind"):
                t.add_column(c, justify="right" if c in ("published", "predicted", "error %", "tol %") else "left",
                             no_wrap=True)
            for r in rows:
                err = f"{r['error_pct']:+.1f}"
                t.add_row(r["id"], f"{r['published']:,.4g}", f"{r['predicted']:,.4g}", r["unit"],
                          err if r["ok"] else Text(err, style="red"), f"{r['tolerance_pct']:g}", r["kind"])
            con.print(t)
        con.print(_table_summary(rows))
        bad = [r for r in rows if not r["ok"]]
        far = [r for r in rows if abs(r["error_pct"]) > 10]
        click.echo(f"{len(rows)} rows, {len(rows) - len(bad)} within their recorded tolerance, {len(bad)} outside; "
                   f"{len(far)} more than 10% from the published value"
                   + (f" ({', '.join(r['id'] for r in far if r['kind'] != 'in-sample operator')})"
                      if far and not summary else ""))
        for path in (out_path, report_path):
            if path:
                click.echo(f"wrote {path}")
    if strict and any(not r["ok"] for r in rows):
        raise SystemExit(1)


def _table_summary(rows: list[dict]) -> Table:
    from harness.report.validation import by_table

    t = Table(title="by table: |error| over its rows")
    for c in ("table", "rows", "within tol", "mean %", "max %", "worst row", "kind"):
        t.add_column(c, justify="right" if c in ("rows", "within tol", "mean %", "max %") else "left", no_wrap=True)
    for g in by_table(rows):
        t.add_row(g["table"], str(g["rows"]), str(g["within_tolerance"]), f"{g['mean_abs_error_pct']:.1f}",
                  f"{g['max_abs_error_pct']:.1f}", g["worst_id"].removeprefix(g["table"] + "."), g["kind"])
    return t


# explain's tables: (key in `explain`, title, (column head, field) ...)
_EXPLAIN_TABLES = (
    ("mechanisms", "mechanisms: the prediction with each switched off",
     (("mechanism", "mechanism"), ("switched off", "switched_off"), ("prediction without", "prediction_without"),
      ("effect %", "effect_pct"))),
    ("open_choices", "choices the sources leave open: the prediction under other values (not fitted)",
     (("choice", "choice"), ("value", "value"), ("prediction", "prediction"), ("error %", "error_pct"))),
)


def _print_explain(row: dict) -> None:
    con = console()
    con.print(Text(row["id"], style="bold"), f": {row['what']} ({row['conditions']})", sep="")
    con.print(f"published {row['published']:,.4g} {row['unit']}, predicted {row['predicted']:,.4g} {row['unit']}, "
              f"error {row['error_pct']:+.1f}% [{row['kind']}]")
    ex = row["explain"]
    est = ex.get("estimate")
    for k, v in ex.items():
        if k not in ("estimate", *(key for key, _, _ in _EXPLAIN_TABLES)):
            con.print(f"  {k}: {v:,.4g}" if isinstance(v, float) else f"  {k}: {v}")
    for key, title, cols in _EXPLAIN_TABLES:
        if not ex.get(key):
            continue
        t = Table(title=title)
        for head, field in cols:
            t.add_column(head, justify="left" if isinstance(ex[key][0][field], str) else "right")
        for m in ex[key]:
            t.add_row(*(m[f] if isinstance(m[f], str) else
                        (f"{m[f]:+.1f}" if f.endswith("pct") else f"{m[f]:,.4g}") for _, f in cols))
        con.print(t)
    if est:
        from harness.commands.estimate import _print
        _print(est)
