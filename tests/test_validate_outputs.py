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


def test_validate_report_names_the_saved_rows_or_none_and_matches_bench_report(tmp_path):
    """The report's source is the --out file (re-rendering it gives the same bytes), never a deleted temp file."""
    rows_path, html, again, alone = (tmp_path / n for n in ("v.json", "v.html", "again.html", "alone.html"))
    result = CliRunner().invoke(main, ["validate", "--summary", "--out", str(rows_path), "--report", str(html)])
    assert result.exit_code == 0, result.output
    assert f"wrote {rows_path}" in result.output and f"wrote {html}" in result.output
    assert f"From <code>{rows_path}</code>" in html.read_text()
    assert CliRunner().invoke(main, ["report", str(rows_path), "-o", str(again)]).exit_code == 0
    assert again.read_bytes() == html.read_bytes()
    assert CliRunner().invoke(main, ["validate", "--summary", "--report", str(alone)]).exit_code == 0
    text = alone.read_text()
    assert "(not saved: no --out)" in text and "/tmp" not in text.split("From <code>")[1].split("</code>")[0]
