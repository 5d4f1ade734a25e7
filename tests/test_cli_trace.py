"""`bench trace` through click's runner and as a real subprocess; the wheel carries the bundled traces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from harness.cli import main
from harness.trace import load_trace

REPO = Path(__file__).resolve().parent.parent


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_info_json_and_table():
    result = CliRunner().invoke(main, ["trace", "info", "azure-conv", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["requests"] == 19_366 and round(stats["rate_req_s"], 2) == 5.53
    table = CliRunner().invoke(main, ["trace", "info", "mooncake-conv"])
    assert table.exit_code == 0 and "block_hit_ratio 0.3664" in table.output


def test_shaping_options_apply_to_info():
    result = CliRunner().invoke(main, ["trace", "info", "azure-conv", "--json", "--window", "0:600", "--limit",
                                       "1000", "--rate", "50"])
    stats = json.loads(result.output)
    assert stats["requests"] == 1000 and stats["rate_req_s"] == pytest.approx(50)


def test_convert_and_synth(tmp_path):
    out = tmp_path / "moon.parquet"
    result = CliRunner().invoke(main, ["trace", "convert", "mooncake-conv", str(out), "--limit", "500"])
    assert result.exit_code == 0 and "wrote 500 requests" in result.output
    assert_frame_equal(load_trace(out).requests, load_trace("mooncake-conv").requests.head(500))
    args = ["trace", "synth", "--requests", "300", "--rate", "4", "--arrival", "gamma", "--cv", "2",
            "--input", "lognormal:2000:1", "--output", "uniform:10:400", "--prefix-tokens", "1024",
            "--prefix-groups", "3", "--session-turns", "3", "--seed", "9"]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert CliRunner().invoke(main, [*args[:2], str(first), *args[2:]]).exit_code == 0
    assert CliRunner().invoke(main, [*args[:2], str(second), *args[2:]]).exit_code == 0
    assert first.read_bytes() == second.read_bytes()  # seeded: same options, same file
    workload = load_trace(first)
    assert len(workload) == 300 and workload.block_size == 512 and workload.has_prefix_blocks


def test_synth_lengths_from_a_trace(tmp_path):
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(main, ["trace", "synth", str(out), "--duration", "60", "--rate", "2",
                                       "--lengths-from", "azure-code"])
    assert result.exit_code == 0, result.output
    assert load_trace(out).requests["input_tokens"].max() <= 7437  # resampled from azure-code's prompts


@pytest.mark.parametrize("args, fragment", [
    (["trace", "convert", "azure-conv", "out.txt"], "cannot tell the output format"),
    (["trace", "info", "no-such-trace"], "not a bundled trace"),
    (["trace", "info", "azure-conv", "--window", "9:3"], "field '--window'"),
    # NaN passed every check; the message then said no requests arrive in the window nan:None
    (["trace", "info", "azure-conv", "--window", "nan:"], "field '--window': START and END must be numbers"),
    (["trace", "info", "azure-conv", "--window", "0:nan"], "field '--window': START and END must be numbers"),
    (["trace", "synth", "x.csv", "--rate", "1"], "exactly one of a request count and a duration"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--output", "lognormal:1"], "field '--output'"),
    # numbers that overflowed a float or an int64, or asked for more memory than the machine has
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--input", "lognormal:100:1e300"],
     "field '--input'"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--input", "uniform:1:99999999999999999999"],
     "field '--input'"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--arrival", "gamma", "--cv", "1e-300"],
     "field '--cv'"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--prefix-tokens", "99999999999999"],
     "field '--prefix-tokens'"),
    (["trace", "synth", "x.csv", "--rate", "1e9", "--duration", "1e9"], "field '--duration'"),
    (["trace", "synth", "x.csv", "--rate", "1e-320", "--requests", "5"], "field '--rate'"),
    (["trace", "convert", "azure-conv", "x.csv", "--limit", "5", "--time-scale", "1e308"], "field '--time-scale'"),
    # options the others leave unused were accepted and silently dropped
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--client", "chunk-1"],
     "field '--client': picks a ServeGen client; add --servegen"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--lengths-from", "azure-conv", "--input", "64"],
     "field '--input': is unused: --lengths-from / --servegen sample input and output"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--cv", "3"],
     "field '--cv': shapes gamma arrivals; add --arrival gamma"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--open-sessions", "3"],
     "field '--open-sessions': interleaves multi-turn sessions; add --session-turns"),
    (["trace", "synth", "x.csv", "--rate", "1", "--requests", "5", "--prefix-groups", "3"],
     "field '--prefix-groups': counts shared prefixes; add --prefix-tokens"),
])
def test_cli_errors_are_one_line_with_exit_2(tmp_path, args, fragment):
    result = CliRunner().invoke(main, [a if not a.endswith((".txt", ".csv")) else str(tmp_path / a) for a in args])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_subprocess_from_another_directory(tmp_path):
    ok = _bench("trace", "info", "azure-code", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["requests"] == 8_819
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n{"timestamp": 1')
    failed = _bench("trace", "convert", str(bad), str(tmp_path / "o.csv"), cwd=tmp_path)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.strip() == f"error: {bad}: line 2: not valid JSON (Expecting ',' delimiter; truncated line?)" \
        or failed.stderr.strip().startswith(f"error: {bad}: line 2: not valid JSON")
    assert "Traceback" not in failed.stderr and not (tmp_path / "o.csv").exists()


def test_wheel_contains_bundled_traces_and_schemas(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "hatchling" in build.stderr:
        pytest.skip(f"hatchling is not installed in this environment: {build.stderr.strip()[:200]}")
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("cmbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    index = json.loads((REPO / "traces" / "index.json").read_text())
    for entry in index.values():
        assert f"harness/_data/traces/{entry['file']}" in names
    assert "harness/_data/traces/index.json" in names
    assert "harness/_data/traces/schema/native-trace.schema.json" in names
    # Installed (unpacked wheel first on the path), run from elsewhere: the bundled traces come from harness/_data.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-c", "import harness.paths as p, sys; print(p.traces_dir()); "
                           "from harness.cli import main; sys.argv = ['bench', 'trace', 'info', 'synthetic-reasoning', "
                           "'--json']; main()"], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    where, _, stats = done.stdout.partition("\n")
    assert Path(where) == site / "harness" / "_data" / "traces"
    assert json.loads(stats)["requests"] == 2_000
