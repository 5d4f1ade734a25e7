"""Sweep files: expansion (count, order, knobs), stable point ids, and one clear line for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from harness.cli import main
from harness.errors import InputError
from harness.sweep.knobs import to_plan
from harness.sweep.spec import expand, load_sweep, point_id

BASE = """
name = "t"
seed = 3
slo = "ttft=1s,tpot=40ms"

[trace]
path = "azure-conv"
limit = 50
rate = 20.0
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_grid_times_points_times_backends_in_file_order(tmp_path):
    path = write(tmp_path, BASE + """
[grid]
batch_cap = [16, 32, 64]
prefill_instances = [1, 2]

[[backend]]
backend = "cloudmatrix384"
[backend.grid]
"hardware.scale_up.bandwidth" = ["98GB/s", "196GB/s"]

[[backend]]
backend = "h800-ib"
label = "h800"
[[backend.points]]
routing = "round-robin"
[[backend.points]]
routing = "cache-aware"
seed = 9
""")
    sweep = load_sweep(path)
    points = expand(sweep)
    cm = [p for p in points if p["label"] == "cloudmatrix384"]
    h8 = [p for p in points if p["label"] == "h800"]
    assert len(cm) == 3 * 2 * 2 and len(h8) == 3 * 2 * 2
    assert [p["index"] for p in points] == list(range(len(points)))
    assert cm[0]["knobs"] == {"batch_cap": 16, "prefill_instances": 1, "hardware.scale_up.bandwidth": "98GB/s"}
    assert h8[1]["knobs"] == {"batch_cap": 16, "prefill_instances": 1, "routing": "cache-aware", "seed": 9}
    assert h8[1]["seed"] == 9 and h8[0]["seed"] == 3        # the seed knob wins over the sweep's seed
    assert h8[0]["prefill"] == "h800-prefill"               # the backend's default deployments
    assert len({p["id"] for p in points}) == len(points)    # every point distinct
    assert points[0]["slo"] == {"ttft_s": 1.0, "tpot_ms": 40.0, "percentile": 99.0}   # judged at p99 by default


def test_point_ids_depend_on_what_decides_the_result_only(tmp_path):
    path = write(tmp_path, BASE + '\n[grid]\nbatch_cap = [16, 32]\n[[backend]]\nbackend = "cloudmatrix384"\n')
    a = expand(load_sweep(path))
    # The same file elsewhere, with the trace given by another spelling of its path: same ids.
    other = tmp_path / "sub"
    other.mkdir()
    b = expand(load_sweep(write(other, (BASE + '\n[grid]\nbatch_cap = [16, 32]\n[[backend]]\n'
                                        'backend = "cloudmatrix384"\n'))))
    assert [p["id"] for p in a] == [p["id"] for p in b]
    moved = dict(a[0], index=7, trace=dict(a[0]["trace"], path="/elsewhere/trace.csv.gz"))
    assert point_id(moved) == a[0]["id"]
    assert point_id(dict(a[0], seed=4)) != a[0]["id"]
    assert point_id(dict(a[0], harness="other code")) != a[0]["id"]   # other code or specs: not reused
    assert point_id(dict(a[0], trace=dict(a[0]["trace"], sha256="0" * 64))) != a[0]["id"]
    assert point_id(dict(a[0], trace=dict(a[0]["trace"], options={"limit": 51, "rate": 20.0}))) != a[0]["id"]


@given(st.dictionaries(st.sampled_from(["batch_cap", "prefill_instances", "decode_instances", "chunk"]),
                       st.integers(1, 10_000), max_size=4))
def test_point_id_ignores_knob_order(knobs):
    base = {"index": 0, "trace": {"name": "x", "path": "/x", "sha256": "ab", "options": {}}, "label": "l",
            "backend": "b", "prefill": "p", "decode": "d", "instances": {}, "seed": 0, "block_size": 512, "slo": {}}
    forward = point_id(dict(base, knobs=dict(knobs)))
    backward = point_id(dict(base, knobs=dict(reversed(list(knobs.items())))))
    assert forward == backward


def test_knobs_become_the_replay_plan():
    plan = to_plan("l", "cloudmatrix384", "cm384-prefill", "cm384-decode",
                   {"decode_instances": 3, "prefill_per_decode": 2.5, "batch_cap": 48, "cache_capacity": "2TB",
                    "routing": "round-robin", "price": 1.5, "decode.ep": 160},
                   {"prefill_instances": 6, "decode_instances": 1}, 11, 256)
    c = plan.config
    assert (c.prefill_instances, c.decode_instances) == (8, 3)   # round(2.5 x 3) = 8 (banker's rounding of 7.5)
    assert c.batch_cap_per_chip == 48 and c.cache_pool_bytes == 2 * 10**12 and c.routing == "round-robin"
    assert c.seed == 11 and c.block_size == 256 and plan.price_usd == 1.5


BAD = [
    ('[[backend]]\nbackend = "cloudmatrix384"\n[grid]\nbatch_kap = [1]\n', "batch_kap", "unknown knob"),
    ('[grid]\nbatch_cap = [0]\n[[backend]]\nbackend = "cloudmatrix384"\n', "batch_cap", "at least 1"),
    ('[grid]\nseed = [-1]\n[[backend]]\nbackend = "cloudmatrix384"\n', "seed", "at least 0"),
    ('[grid]\nrouting = ["fastest"]\n[[backend]]\nbackend = "cloudmatrix384"\n', "routing", "must be one of"),
    ('[grid]\ncache_capacity = ["2 parsecs"]\n[[backend]]\nbackend = "cloudmatrix384"\n', "cache_capacity", "size"),
    ('[grid]\n"hardware.scale_up.bandwith" = ["98GB/s"]\n[[backend]]\nbackend = "cloudmatrix384"\n',
     "hardware.scale_up.bandwith", "no such path"),
    ('[grid]\n"hardware.scale_up.bandwidth" = [98]\n[[backend]]\nbackend = "cloudmatrix384"\n',
     "hardware.scale_up.bandwidth", "unit"),
    ('[grid]\n"h800-ib.scale_up.bandwidth" = ["98GB/s"]\n[[backend]]\nbackend = "cloudmatrix384"\n',
     "h800-ib.scale_up.bandwidth", "not a spec backend"),
    ('[[backend]]\nbackend = "tpu-v9"\n', "backend", "unknown hardware"),
    ('[[backend]]\nbackend = "cloudmatrix384"\ndecode = "h800-decode"\n', "decode", "not a decode deployment on"),
    ('[[backend]]\nbackend = "cloudmatrix384"\nlable = "x"\n', "lable", "unknown field"),
    ('[grid]\nbatch_cap = [8]\n[[points]]\nbatch_cap = 4\n[[backend]]\nbackend = "cloudmatrix384"\n', "batch_cap",
     "grid also sets"),
    ('[grid]\nprefill_instances = [1]\nprefill_per_decode = [2.0]\n[[backend]]\nbackend = "cloudmatrix384"\n',
     "prefill_per_decode", "not both"),
]


@pytest.mark.parametrize("old,new,field,words", [
    ("rate = 20.0", "rate = nan", "trace.rate", "not a finite number"),
    # a oneOf (one trace or a list) said "... is not valid under any of the given schemas" of the whole [trace]
    ("limit = 50", "limit = 0", "trace.limit", "0 is less than the minimum of 1"),
    ("rate = 20.0", "rate = 0", "trace.rate", "less than or equal to the minimum of 0"),
    ("rate = 20.0", "rate = inf", "trace.rate", "not a finite number"),
    ("seed = 3", "seed = -1", "seed", "less than the minimum of 0"),
    ('name = "t"', 'name = "/tmp/elsewhere"', "name", "does not match"),
    ('path = "azure-conv"', 'path = "garbage.csv"', "trace.path", "unknown trace format"),
])
def test_bad_top_level_values_and_unreadable_traces_fail_before_any_point(tmp_path, old, new, field, words):
    """What would otherwise fail every point (and exit 0 with 'no point meets the SLO') or write outside out/."""
    (tmp_path / "garbage.csv").write_bytes(b"\x00\x01 not a trace\n")
    path = write(tmp_path, BASE.replace(old, new) + '[[backend]]\nbackend = "cloudmatrix384"\n')
    with pytest.raises(InputError) as exc:
        load_sweep(path)
    msg = str(exc.value)
    assert f"field '{field}'" in msg and words in msg and "line " in msg, msg


@pytest.mark.parametrize("command", ["sweep", "plan"])
def test_a_folder_given_as_the_trace_is_named_not_a_traceback(tmp_path, command):
    """The trace's sha256 was taken before the loader could say 'is a directory': an IsADirectoryError traceback."""
    folder = tmp_path / "traces"
    folder.mkdir()
    if command == "sweep":
        path = write(tmp_path, BASE.replace('"azure-conv"', json.dumps(str(folder))) +
                     '[[backend]]\nbackend = "cloudmatrix384"\n')
        args = ["sweep", str(path)]
    else:
        args = ["plan", str(folder), "--backend", "cloudmatrix384"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{folder}: is a directory, not a trace file" in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("tail,field,words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_sweep_files_fail_with_file_line_and_field(tmp_path, tail, field, words):
    path = write(tmp_path, BASE + tail)
    with pytest.raises(InputError) as exc:
        load_sweep(path)
    msg = str(exc.value)
    assert str(path) in msg and "field '" in msg and field.split(".")[0] in msg and words in msg
    assert "line " in msg


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    cases = [write(tmp_path, BASE + '[[backend]]\nbackend = "cloudmatrix384"\n[grid]\nbatch_cap = "x"\n', "a.toml"),
             write(tmp_path, "name = [\n", "b.toml"),
             write(tmp_path, BASE.replace("azure-conv", "no-such-trace") + '[[backend]]\nbackend = "h800-ib"\n',
                   "c.toml"),
             tmp_path / "missing.toml"]
    for path in cases:
        result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--quiet"])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.output
        assert "Traceback" not in result.output
        assert not out.exists()


def test_cli_plan_bad_options_exit_2(tmp_path):
    for args in (["--slo", "ttft=fast"], ["--backend", "tpu-v9"], ["--set", "nospec.x=1"],
                 ["--deployment", "h800-ib=cm384-prefill"], ["--window", "5:1"],
                 # every point failed on these, and the plan said to raise --max-prefill / --max-decode, exit 0
                 ["--backend", "cloudmatrix384", "--deployment", "h800-prefill,h800-decode"],
                 ["--backend", "cloudmatrix384", "--deployment", "cm384-decode,cm384-prefill"]):
        result = CliRunner().invoke(main, ["plan", "azure-conv", "--limit", "20", "--out", str(tmp_path / "o"),
                                           "--quiet", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: ") and "Traceback" not in result.output
        assert not (tmp_path / "o").exists()


def test_schema_file_is_valid_json_schema():
    from jsonschema import Draft202012Validator

    from harness.paths import models_dir
    Draft202012Validator.check_schema(json.loads((models_dir() / "schema" / "sweep.json").read_text()))


_values = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.booleans(), st.text(max_size=12))
_keys = st.one_of(st.sampled_from(["batch_cap", "prefill_instances", "routing", "cache_capacity", "decode.ep",
                                   "hardware.scale_up.bandwidth", "prefill_per_decode", "seed", "decode"]),
                  st.text(min_size=1, max_size=15))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v) if isinstance(v, str) else repr(v)


@given(st.dictionaries(_keys, st.one_of(_values, st.lists(_values, min_size=1, max_size=3)), max_size=4))
@example({"a\nb": 1})
@example({"decode.\u2028ep": "x\ny"})
def test_hostile_grids_give_a_sweep_or_one_clear_error(tmp_path_factory, grid):
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in grid.items()]
    path = write(tmp_path_factory.mktemp("h"), BASE + "[grid]\n" + "\n".join(lines) +
                 '\n[[backend]]\nbackend = "cloudmatrix384"\n')
    try:
        points = expand(load_sweep(path))
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc).strip()
    else:
        assert points and all(p["id"] for p in points)
