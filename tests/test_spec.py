"""Spec files: every bundled spec validates; every broken variant fails with one clear line naming file/line/field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import harness.hardware.specfile as specfile
from harness.errors import InputError
from harness.hardware import load_hardware
from harness.hardware.specfile import list_models, load_spec, spec_names
from harness.hardware.units import parse_quantity
from harness.llm import load_llm
from harness.step.deployment import load_deployment


@pytest.mark.parametrize("kind", ["hardware", "llm", "deployment", "calibration", "validation"])
def test_every_bundled_spec_validates(kind):
    names = spec_names(kind)
    assert names
    for name in names:
        data, path = load_spec(kind, name)
        assert data["name"] == name and path.is_file()


def test_loaders_and_listing():
    assert load_hardware("cloudmatrix384").ranks_per_chip == 2
    assert load_llm("deepseek-r1").kv_bytes_per_token() == 70_272          # reference section 6
    assert load_llm("qwen3-235b-a22b").kv_bytes_per_token() == 192_512     # gpu-baselines section 7
    assert load_llm("llama-3.1-70b").kv_bytes_per_token() == 327_680
    assert load_llm("kimi-k2").kv_bytes_per_token() == 70_272              # gpu-baselines section 7
    dep = load_deployment("cm384-decode")
    assert (dep.ranks, dep.ep, dep.hardware.name) == (320, 320, "cloudmatrix384")
    listed = list_models()
    assert {r["name"] for r in listed["deployment"]} >= {"cm384-prefill", "cm384-decode", "h800-prefill",
                                                         "h800-decode", "h800-decode-ep128", "h100-decode"}
    for kind in ("hardware", "llm", "deployment"):
        assert all(r["description"] for r in listed[kind])


def _params(llm) -> tuple[float, float]:
    """(total, active per token) parameters, counting the LM head but not the MTP module."""
    experts = llm.routed_experts + llm.shared_experts
    active = llm.top_k + llm.shared_experts
    base = llm.layers * llm.attention_params() + llm.dense_layers * llm.dense_ffn_params() + llm.vocab * llm.hidden
    return (base + llm.moe_layers * experts * llm.expert_params() + llm.vocab * llm.hidden,
            base + llm.moe_layers * active * llm.expert_params())


@pytest.mark.parametrize("name, total, active", [("deepseek-r1", 671e9, 37e9), ("kimi-k2", 1.0e12, 32e9)])
def test_llm_specs_add_up_to_their_published_sizes(name, total, active):
    """The architecture fields reproduce the published parameter counts (reference sections 6 and 7) within 5%."""
    got_total, got_active = _params(load_llm(name))
    assert got_total == pytest.approx(total, rel=0.05) and got_active == pytest.approx(active, rel=0.05)


def test_every_hardware_has_a_sourced_price():
    for name in spec_names("hardware"):
        data, _ = load_spec("hardware", name)
        assert data["cost_per_chip_hour_usd"] > 0 and len(data["cost_source"]) > 20


@pytest.fixture
def models_copy(tmp_path, monkeypatch):
    """A private copy of models/ that a test may break."""
    src = Path(specfile.models_dir())
    dst = tmp_path / "models"
    shutil.copytree(src, dst)
    monkeypatch.setattr(specfile, "models_dir", lambda: dst)
    return dst


def _broken(models: Path, kind_dir: str, base: str, edit) -> str:
    text = (models / kind_dir / f"{base}.toml").read_text()
    text = text.replace(f'name = "{base}"', 'name = "broken"', 1)
    (models / kind_dir / "broken.toml").write_text(edit(text))
    return "broken"


BROKEN_HARDWARE = [
    ("missing field", lambda t: re.sub(r"^hbm_bandwidth = .*\n", "", t, flags=re.M), "chip.hbm_bandwidth",
     "missing required field"),
    ("no unit", lambda t: t.replace('hbm_bandwidth = "1.6 TB/s"', "hbm_bandwidth = \"1600\""), "chip.hbm_bandwidth",
     "needs a unit of bandwidth"),
    ("wrong unit kind", lambda t: t.replace('hbm_bandwidth = "1.6 TB/s"', 'hbm_bandwidth = "1.6 TB"'),
     "chip.hbm_bandwidth", "needs a unit of bandwidth"),
    ("wrong type", lambda t: t.replace("chips_per_node = 8", 'chips_per_node = "eight"'), "chips_per_node",
     "not of type 'integer'"),
    ("unknown field", lambda t: t.replace("chips_per_node = 8", "chips_per_node = 8\nchip_per_nod = 8"),
     "chip_per_nod", "unknown field"),
    ("zero rate", lambda t: t.replace("int8 = \"752 TFLOPS\"", "int8 = \"0 TFLOPS\""), "chip.peak.int8",
     "greater than zero"),
    ("efficiency above 1", lambda t: t.replace("attention_compute = 0.654", "attention_compute = 1.5"),
     "chip.efficiency.attention_compute", "greater than the maximum"),
    ("alias not a name", lambda t: t.replace('alias = "ub"', 'alias = "U B"'), "scale_up.alias", "does not match"),
    ("fixed time not a time", lambda t: t.replace("attention_compute = 0.654",
                                                  'attention_compute = 0.654\nattention_overhead = "7 GB/s"'),
     "chip.efficiency.attention_overhead", "needs a unit of time"),
]


@pytest.mark.parametrize("label,edit,field,message", BROKEN_HARDWARE, ids=[b[0] for b in BROKEN_HARDWARE])
def test_broken_hardware_spec_names_file_line_and_field(models_copy, label, edit, field, message):
    name = _broken(models_copy, "hardware", "cloudmatrix384", edit)
    with pytest.raises(InputError) as exc:
        load_spec("hardware", name)
    text = str(exc.value)
    assert "broken.toml" in text and f"field '{field}'" in text and message in text
    if label != "missing field":
        assert re.search(r": line \d+: ", text), text


def test_bad_toml_names_the_line(models_copy):
    (models_copy / "llm" / "broken.toml").write_text('name = "broken"\nlayers = = 3\n')
    with pytest.raises(InputError, match=r"broken\.toml: line 2: not valid TOML"):
        load_spec("llm", "broken")


def test_name_must_match_file(models_copy):
    (models_copy / "llm" / "other.toml").write_text((models_copy / "llm" / "deepseek-r1.toml").read_text())
    with pytest.raises(InputError, match="does not match the file name"):
        load_spec("llm", "other")


BROKEN_DEPLOYMENT = [
    ("unknown hardware", "cm384-decode",
     lambda t: t.replace('hardware = "cloudmatrix384"', 'hardware = "cloudmatrix999"'),
     r"broken\.toml: line \d+: field 'hardware': unknown hardware 'cloudmatrix999'"),
    ("unknown attention_tp style", "cm384-prefill",
     lambda t: t.replace('attention_tp = "staged"', 'attention_tp = "ring"'),
     r"broken\.toml: line \d+: field 'attention_tp': .*'ring' is not one of"),
    ("attention kernel the hardware does not list", "h800-decode",
     lambda t: t.replace("launch_overlapped = true", 'launch_overlapped = true\nattention_kernel = "fa9"'),
     r"broken\.toml: field 'attention_kernel': attention kernel 'fa9' is not in h800-ib's .* "
     r"\(it has: flashmla-2025-02\)"),
    ("dispatch kernel the hardware does not list", "h800-decode",
     lambda t: t.replace("launch_overlapped = true", 'launch_overlapped = true\ndispatch_kernel = "deepep-2031"'),
     r"broken\.toml: field 'dispatch_kernel': dispatch kernel 'deepep-2031' is not in h800-ib's "
     r"moe_comm\.low_latency_by_kernel \(it has: deepep-2025-02\)"),
]


@pytest.mark.parametrize("label,base,edit,message", BROKEN_DEPLOYMENT, ids=[b[0] for b in BROKEN_DEPLOYMENT])
def test_broken_deployment_names_file_and_field(models_copy, label, base, edit, message):
    name = _broken(models_copy, "deployments", base, edit)
    with pytest.raises(InputError, match=message):
        load_deployment(name)


def test_inconsistent_parallelism_is_an_error(models_copy):
    name = _broken(models_copy, "deployments", "cm384-decode", lambda t: t.replace("dp = 320", "dp = 300"))
    with pytest.raises(InputError, match="must divide|dp x tp"):
        load_deployment(name)


def test_unknown_spec_name_lists_the_available_ones():
    with pytest.raises(InputError, match=r"unknown hardware 'nope' \(available: cloudmatrix384"):
        load_hardware("nope")


# ------------------------------------------------------------------------------------------------- --set overrides

def test_set_override_with_units_changes_the_value():
    hw = load_hardware("cloudmatrix384", [("scale_up.bandwidth", "98GB/s")])
    assert hw.scale_up.bandwidth_bytes_per_s == pytest.approx(98e9)
    assert load_hardware("cloudmatrix384").scale_up.bandwidth_bytes_per_s == pytest.approx(135e9)
    assert load_hardware("h100-ib", [("scale_out.bandwidth", "400Gb/s")]).scale_out.bandwidth_bytes_per_s == \
        pytest.approx(50e9)


def test_a_fabric_is_reached_by_its_alias_too():
    """The issue's own example, `--set cloudmatrix384.ub.bandwidth=98GB/s`: `ub` is scale_up's alias (data in the
    spec file), as nvlink / ib are on the GPU clusters."""
    assert load_hardware("cloudmatrix384", [("ub.bandwidth", "98GB/s")]).scale_up == \
        load_hardware("cloudmatrix384", [("scale_up.bandwidth", "98GB/s")]).scale_up
    hw = load_hardware("h800-ib", [("nvlink.bandwidth", "100GB/s"), ("ib.latency", "5us")])
    assert hw.scale_up.bandwidth_bytes_per_s == pytest.approx(100e9) and hw.scale_out.latency_s == pytest.approx(5e-6)
    for name in spec_names("hardware"):
        data, _ = load_spec("hardware", name)
        assert data["scale_up"]["alias"] != data["scale_out"]["alias"]
        assert not {data["scale_up"]["alias"], data["scale_out"]["alias"]} & set(data)


@pytest.mark.parametrize("path,hint", [
    ("attention_compute", "did you mean 'chip.efficiency.attention_compute'?"),
    ("chip.efficency.memory", "did you mean 'chip.efficiency.memory'?"),
    ("ub.bandwith", "did you mean 'scale_up.bandwidth'"),
])
def test_an_unknown_path_names_what_it_may_have_meant(path, hint):
    with pytest.raises(InputError, match=re.escape(hint)):
        load_hardware("cloudmatrix384", [(path, "1")])


@pytest.mark.parametrize("path,value,message", [
    ("scale_up.bandwith", "98GB/s", "no such path 'scale_up.bandwith'"),
    ("scale_up.bandwidth", "98", "needs a unit of bandwidth"),
    ("scale_up.bandwidth", "98 GB", "needs a unit of bandwidth"),
    ("chips", "many", "bad value 'many'"),
    ("chip", "3", "cannot replace a whole table"),
    ("scale_up.bandwidth", "1e400GB/s", "--set: field 'scale_up.bandwidth': not a finite number"),
    ("scale_up.bandwidth", "0GB/s", "--set: field 'scale_up.bandwidth': a bandwidth or compute rate must be"),
    ("chip.hbm_capacity", "-1GB", "--set: field 'chip.hbm_capacity'"),
])
def test_bad_set_override(path, value, message):
    with pytest.raises(InputError, match=re.escape(message)):
        load_hardware("cloudmatrix384", [(path, value)])


@pytest.mark.parametrize("args, message", [
    # integers beyond 64 bits (1e308 layers' worth) reached the model and overflowed floats: tracebacks
    (["-d", "h800-decode", "--set", "deepseek-r1.hidden=1e308"],
     "field 'hidden': --set: bad value '1e308': beyond the 64-bit integers a spec file (TOML) can hold"),
    (["-d", "cm384-decode", "--set", "cm384-decode.operating_point.kv_len=1e308"],
     "field 'operating_point.kv_len': --set: bad value '1e308': beyond the 64-bit integers"),
    (["-d", "h800-decode", "--set", "h800-decode.redundant_experts=99999999999999999999"],
     "field 'redundant_experts': --set: bad value '99999999999999999999': beyond the 64-bit integers"),
    # 1e308 (a float where the file has one) was a ZeroDivisionError, as bench estimate --batch 1e300 was
    (["-d", "h800-decode", "--set", "h800-decode.operating_point.batch_per_chip=2000000"],
     "field 'operating_point.batch_per_chip': 2000000 is greater than the maximum of 1000000"),
])
def test_set_values_beyond_what_the_model_holds_are_named(args, message):
    from click.testing import CliRunner

    from harness.cli import main
    result = CliRunner().invoke(main, ["estimate", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_set_on_deployment_reaches_hardware_and_llm():
    dep = load_deployment("cm384-decode", ["cloudmatrix384.chip.hbm_capacity=32GB", "cm384-decode.mtp_accept=0.9"])
    assert dep.hardware.hbm_bytes == pytest.approx(32e9) and dep.mtp_accept == 0.9
    with pytest.raises(InputError, match="not one of the specs in use"):
        load_deployment("cm384-decode", ["h100-ib.chips=3"])
    with pytest.raises(InputError, match="SPEC.PATH=VALUE"):
        load_deployment("cm384-decode", ["mtp_accept"])


def test_set_reaches_optional_fields_the_file_leaves_out():
    """What-if on a field the schema defines but the file omits (its default applies otherwise): the kernel versions
    a measurement ran, a what-if switch, a quantity. The schema gives the type; a table is not created."""
    dep = load_deployment("h800-decode", ["h800-decode.dispatch_kernel=deepep-2025-02",
                                          "h800-decode.attention_kernel=flashmla-2025-02",
                                          "h800-decode.split_hbm=true", "h800-decode.comm_compute_share=0.1"])
    assert (dep.dispatch_kernel, dep.attention_kernel, dep.split_hbm, dep.comm_compute_share) == \
        ("deepep-2025-02", "flashmla-2025-02", True, 0.1)
    assert load_hardware("cloudmatrix384", [("chip.efficiency.memory_ops", "h100-vidur")]).memory_ops_table == \
        "h100-vidur"
    for bad, message in (("h800-decode.split_hbm=maybe", "expected true or false"),
                         ("h800-decode.dispatch_kernel=deepep-2031", "dispatch kernel 'deepep-2031' is not in"),
                         ("h800-decode.dispatch_kernal=deepep-2025-02", "no such path 'dispatch_kernal'"),
                         ("h800-ib.moe_comm.low_latency_by_kernel=x", "cannot replace a whole table"),
                         ("h800-decode.operating_point.prompt_len=4k", "bad value '4k'")):
        with pytest.raises(InputError, match=re.escape(message)):
            load_deployment("h800-decode", [bad])


# ------------------------------------------------------------------------------------------------------------ units

UNITS = {"GB/s": 1e9, "TB/s": 1e12, "Gb/s": 1e9 / 8, "GB": 1e9, "GiB": 2**30, "us": 1e-6, "ms": 1e-3,
         "TFLOPS": 1e12}


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(sorted(UNITS)),
       st.sampled_from(["", " "]))
def test_quantity_round_trip(value, unit, space):
    text = f"{value:.6g}{space}{unit}"
    assert parse_quantity(text) == pytest.approx(float(f"{value:.6g}") * UNITS[unit])


@given(st.text(max_size=12))
def test_hostile_quantity_text_never_crashes_otherwise(text):
    try:
        parse_quantity(text, "bandwidth")
    except ValueError as exc:
        assert "expected a bandwidth" in str(exc) or "too large to be a bandwidth" in str(exc)


def test_a_quantity_beyond_a_float_is_refused():
    with pytest.raises(ValueError, match="too large"):
        parse_quantity("1e400 GB/s")


def test_a_bad_value_names_the_field_inside_a_variant_and_where_it_came_from(models_copy):
    """The attention table is one of two variants (MLA or GQA): the error names the field that is wrong in the
    variant the file is, not the whole table; a value from --set is blamed on --set, one in the file on its line."""
    with pytest.raises(InputError, match=re.escape("--set: field 'attention.heads': 0 is less than the minimum of 1")):
        load_llm("deepseek-r1", [("attention.heads", "0")])
    name = _broken(models_copy, "llm", "deepseek-r1", lambda t: re.sub(r"^heads = 128", "heads = 0", t, flags=re.M))
    with pytest.raises(InputError, match=r"line \d+: field 'attention.heads': 0 is less than the minimum of 1"):
        load_llm(name)


def test_non_finite_numbers_are_rejected(models_copy):
    name = _broken(models_copy, "hardware", "cloudmatrix384",
                   lambda t: t.replace("attention_memory = 0.841", "attention_memory = nan"))
    with pytest.raises(InputError, match=r"line \d+: field 'chip.efficiency.attention_memory': not a finite number"):
        load_spec("hardware", name)
    with pytest.raises(InputError, match="not a finite number"):
        load_hardware("cloudmatrix384", [("chip.efficiency.memory", "inf")])
