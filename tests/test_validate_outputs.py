"""`bench validate --out/--report`: the saved rows are what `bench report` reads, and the report renders them."""

import json

from click.testing import CliRunner

from harness.cli import main


def test_validate_saves_rows_and_writes_the_report(tmp_path):
    rows_path, html = tmp_path / "v.json", tmp_path / "v.html"
    result = CliRunner().invoke(main, ["validate", "--out", str(rows_path), "--report", str(html)])
    assert result.exit_code == 0, result.output
    rows = json.loads(rows_path.read_text())
    assert {"id", "published", "predicted", "unit", "error_pct"} <= set(rows[0])
    text = html.read_text()
    assert all(r["id"] in text for r in rows)      # every row appears in the report
    assert "more than 10% from the published value" in result.output
    assert "By table" in text and "by table" in result.output


def test_validate_summary_prints_one_line_per_table_and_no_rows():
    from harness.report.validation import table_of

    rows = json.loads(CliRunner().invoke(main, ["validate", "--json"]).output)
    result = CliRunner().invoke(main, ["validate", "--summary"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for t in {table_of(r["id"]) for r in rows}:
        assert f"│ {t} " in result.output
    assert not [r["id"] for r in rows if r["id"] in result.output]   # rows are named only by their table


def test_validate_report_into_a_missing_folder_is_created_atomically(tmp_path):
    html = tmp_path / "deep" / "v.html"
    assert CliRunner().invoke(main, ["validate", "--report", str(html)]).exit_code == 0
    assert html.exists() and not list(html.parent.glob(".*part"))
