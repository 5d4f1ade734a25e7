"""`bench estimate` and `bench models list` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def est(*args) -> dict:
    r = run("estimate", "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_decode_json_has_the_promised_fields():
    out = est("--deployment", "cm384-decode", "--batch", "96", "--kv-len", "4096")
    for key in ("step_time_ms", "tpot_ms", "throughput_per_chip", "breakdown", "tokens_per_s_per_tflops"):
        assert key in out
    assert out["tpot_ms"] == pytest.approx(out["step_time_ms"] / 1.7)
    assert out["throughput_per_chip"] == pytest.approx(96 / (out["tpot_ms"] / 1e3))
    assert {r["stream"] for r in out["breakdown"]} == {"attention", "moe"}
    assert all(r["us_per_microbatch"] >= 0 for r in out["breakdown"])


def test_prefill_json():
    out = est("--deployment", "cm384-prefill", "--tokens-per-chip", "16384", "--prompt-len", "4096",
              "--eplb", "perfect")
    assert out["ttft_ms"] == out["step_time_ms"] > 0
    assert out["throughput_per_chip"] == pytest.approx(16384 / (out["step_time_ms"] / 1e3))
    assert "tpot_ms" not in out


@pytest.mark.parametrize("deployment", ["cm384-prefill", "h800-prefill"])
def test_prefill_with_a_cached_prefix(deployment):
    """--cached-len: each prompt's prefix comes from the context cache, read before the step; the step computes the
    rest (attending over the prefix too). Computed tokens per chip stay the budget, so prompts per chip grow."""
    base = ("--deployment", deployment, "--tokens-per-chip", "16384", "--prompt-len", "4096", "--eplb", "perfect")
    cold = est(*base)
    assert cold["operating_point"]["cached_len"] == 0 and cold["cache_read_ms"] == 0.0
    assert cold["prompt_tokens_per_s_per_chip"] == pytest.approx(cold["throughput_per_chip"])
    reads = []
    for cached in (1024, 2048, 3072):
        out = est(*base, "--cached-len", str(cached))
        assert out["ttft_ms"] == pytest.approx(out["cache_read_ms"] + out["step_time_ms"])
        prompts = 16384 / (4096 - cached)
        assert out["prompt_tokens_per_s_per_chip"] == pytest.approx(prompts * 4096 / (out["ttft_ms"] / 1e3))
        assert out["step_time_ms"] > cold["step_time_ms"]  # the new tokens attend over the cached prefix too
        reads.append(out["cache_read_ms"])
    assert 0 < reads[0] < reads[1] < reads[2]


def test_cached_prefix_read_follows_the_cache_path_bandwidth():
    args = ("--deployment", "cm384-prefill", "--cached-len", "2048")
    slow = est(*args)
    fast = est(*args, "--set", "cloudmatrix384.host.read_bandwidth=302GB/s",
               "--set", "cloudmatrix384.host.remote_read_bandwidth=294GB/s")
    assert fast["cache_read_ms"] < slow["cache_read_ms"] and fast["step_time_ms"] == slow["step_time_ms"]


@pytest.mark.parametrize("args, field", [
    (("--deployment", "cm384-prefill", "--prompt-len", "4096", "--cached-len", "4096"), "--cached-len"),
    (("--deployment", "cm384-decode", "--cached-len", "100"), "--cached-len"),
])
def test_cached_prefix_errors(args, field):
    r = run("estimate", *args)
    assert r.exit_code != 0 and field in r.output and "Traceback" not in r.output


def test_inline_deployment_and_options():
    out = est("--hardware", "h100-ib", "--llm", "deepseek-r1", "--phase", "decode", "--chips", "72", "--ep", "72",
              "--batch", "64", "--kv-len", "2048")
    assert out["ep"] == 72 and out["operating_point"]["mtp_draft_tokens"] == 0
    on = est("--deployment", "cm384-decode", "--mtp-accept", "0.9")
    off = est("--deployment", "cm384-decode", "--mtp-accept", "0")
    assert on["tokens_per_step"] == pytest.approx(1.9) and off["tokens_per_step"] == 1.0
    single = est("--deployment", "h800-decode", "--no-microbatch")
    assert single["microbatches"] == 1 and set(single["stream_busy_ms"]) == {"main"}
    what_if = est("--deployment", "cm384-decode", "--set", "cloudmatrix384.scale_up.bandwidth=20GB/s")
    assert what_if["step_time_ms"] > est("--deployment", "cm384-decode")["step_time_ms"]


def test_human_output():
    r = run("estimate", "-d", "h800-decode")
    assert r.exit_code == 0 and "TPOT" in r.output and "per-op breakdown" in r.output


@pytest.mark.parametrize("args,message", [
    (["-d", "nope"], "unknown deployment 'nope'"),
    (["-d", "../hardware/cloudmatrix384"], "unknown deployment '../hardware/cloudmatrix384'"),
    (["-d", "cm384-decode", "--hardware", "h100-ib"], "either --deployment or an inline description"),
    (["--hardware", "h100-ib", "--llm", "deepseek-r1"], "missing --phase, --chips"),
    (["-d", "cm384-prefill", "--batch", "8"], "are for decode"),
    (["-d", "cm384-decode", "--prompt-len", "8"], "are for prefill"),
    (["-d", "cm384-decode", "--set", "cloudmatrix384.scale_up.bandwidth=98"], "needs a unit of bandwidth"),
    (["-d", "cm384-decode", "--set", "cloudmatrix384.nope=1"], "no such path 'nope'"),
    (["-d", "cm384-decode", "--ep", "7"], "ep (7) must divide the 320 ranks"),
    (["--hardware", "h100-ib", "--llm", "deepseek-r1", "--phase", "decode", "--chips", "3", "--tp", "64"],
     "field 'tp': tp (64) must divide the 3 ranks"),
    (["-d", "cm384-decode", "--precision", "fp8"], "has no fp8 peak"),
    (["--hardware", "h100-ib", "--llm", "llama-3.1-70b", "--phase", "decode", "--chips", "8", "--mtp-accept", "0.5"],
     "has no MTP module"),
    (["--hardware", "h100-ib", "--llm", "deepseek-r1", "--phase", "decode", "--chips", "1"],
     "field '--chips': inline:h100-ib/deepseek-r1/decode/1's weights (684.7 GB per rank)"),
    (["-d", "cm384-decode", "--batch", "nan"], "'nan' is not a finite number"),
    (["-d", "cm384-decode", "--batch", "inf"], "'--batch': inf is not in the range 0<x<=1000000.0"),
    # a ZeroDivisionError traceback (throughput per chip underflowed to 0); bench ops export had the bound already
    (["-d", "cm384-decode", "--batch", "1e300"], "'--batch': 1e+300 is not in the range 0<x<=1000000.0"),
    (["-d", "cm384-decode", "--mtp-accept", "nan"], "'nan' is not a finite number"),
    (["-d", "cm384-decode", "--set", "cloudmatrix384.ub.bandwidth=1e400GB/s"],
     "--set: field 'scale_up.bandwidth': not a finite number"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = run("estimate", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_models_list():
    r = run("models", "list", "--json")
    assert r.exit_code == 0
    found = json.loads(r.output)
    assert "cloudmatrix384" in {x["name"] for x in found["hardware"]}
    assert {"deepseek-r1", "qwen3-235b-a22b", "llama-3.1-70b"} <= {x["name"] for x in found["llm"]}
    assert run("models", "list").exit_code == 0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PATHS = ["cloudmatrix384.scale_up.bandwidth", "cloudmatrix384.chip.peak.int8", "cloudmatrix384.chips_per_node",
         "cloudmatrix384.chip.hbm_bandwidth", "cloudmatrix384.scale_up.latency", "cloudmatrix384.chip.hbm_capacity",
         "cm384-decode.mtp_accept", "cm384-decode.ep", "cloudmatrix384.moe_comm.low_latency",
         "cloudmatrix384.chip.efficiency.memory", "deepseek-r1.layers"]


@settings(max_examples=60)
@given(st.sampled_from(PATHS), st.one_of(st.text(max_size=10), st.sampled_from(["0", "-3", "1e9", "98GB/s", "0 us",
                                                                                 "nan", "2", "0.5", "7 TB", "0 GB/s", "0 TFLOPS",
                                                                                 "0 GB", "0 us"])))
def test_hostile_set_values_never_crash(path, value):
    r = run("estimate", "-d", "cm384-decode", "--json", "--set", f"{path}={value}")
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        assert r.output.startswith("error: ") and "Traceback" not in r.output
    else:
        assert json.loads(r.output)["step_time_ms"] > 0


@pytest.mark.parametrize("value,ok", [("6.1E1", True), ("96.0", True), ("61.5", False), ("1e11", False)])
def test_integer_fields_take_integral_spellings_and_refuse_the_rest(value, ok):
    """'6.1E1' means 61; 61.5 layers is not a number of layers; 1e11 layers would exhaust memory (schema bound)."""
    r = run("estimate", "-d", "cm384-decode", "--json", "--set", f"deepseek-r1.layers={value}")
    assert r.exit_code == (0 if ok else 2), r.output
    if not ok:
        assert r.output.startswith("error: ") and "layers" in r.output


@pytest.mark.parametrize("setting,field", [("deepseek-r1.moe.top_k=300", "moe.top_k"),
                                           ("deepseek-r1.dense_layers=70", "dense_layers")])
def test_inconsistent_llm_fields_are_named(setting, field):
    r = run("estimate", "-d", "cm384-decode", "--json", "--set", setting)
    assert r.exit_code == 2 and f"field '{field}'" in r.output


def test_inline_deployment_overrides_reach_the_llm_it_names():
    args = ["estimate", "--hardware", "h100-ib", "--llm", "qwen3-235b-a22b", "--phase", "decode", "--chips", "8",
            "--batch", "16", "--kv-len", "2048", "--json"]
    plain = json.loads(run(*args).output)["step_time_ms"]
    wider = json.loads(run(*args, "--set", "qwen3-235b-a22b.hidden=5000").output)["step_time_ms"]
    assert wider > plain
    # The template deployment's own LLM (deepseek-r1) is not in use here: overriding it is an error, not a no-op.
    assert run(*args, "--set", "deepseek-r1.hidden=5000").exit_code == 2


def test_mtp_needs_a_model_with_an_mtp_module():
    """Kimi K2 publishes no MTP module: a deployment that drafts with one is an error, not 1.7 tokens per step."""
    r = run("estimate", "-d", "cm384-decode", "--set", "cm384-decode.llm=kimi-k2")
    assert r.exit_code != 0 and "mtp_draft_tokens" in r.output and "kimi-k2" in r.output
    out = est("-d", "cm384-decode", "--set", "cm384-decode.llm=kimi-k2", "--mtp-accept", "0")
    assert out["llm"] == "kimi-k2" and out["tokens_per_step"] == 1.0
    assert out["tpot_ms"] == pytest.approx(out["step_time_ms"])


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 65536), st.floats(0.0, 0.999), st.integers(256, 32768))
def test_any_cached_prefix_shorter_than_the_prompt_is_accounted(plen, frac, tokens):
    cached = min(int(plen * frac), plen - 1)
    out = est("-d", "h800-prefill", "--prompt-len", str(plen), "--cached-len", str(cached),
              "--tokens-per-chip", str(tokens))
    assert out["ttft_ms"] >= out["step_time_ms"] > 0 and out["cache_read_ms"] >= 0
    assert out["prompt_tokens_per_s_per_chip"] >= out["throughput_per_chip"] * (1 - 1e-12)
    assert (out["cache_read_ms"] > 0) == (cached > 0)


@pytest.mark.parametrize("args", [("--hardware", "h100-ib", "--llm", "llama-3.1-70b", "--chips", "6", "--tp", "6"),
                                  ("--hardware", "cloudmatrix384", "--llm", "deepseek-r1", "--chips", "48",
                                   "--tp", "96")])
def test_tp_must_split_the_heads_evenly(args):
    r = run("estimate", "--phase", "decode", *args)
    assert r.exit_code != 0 and "field 'tp'" in r.output and "heads" in r.output and "Traceback" not in r.output


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["h100-ib", "cloudmatrix384"]), st.sampled_from(["deepseek-r1", "llama-3.1-70b"]),
       st.sampled_from(["prefill", "decode"]), st.integers(1, 40),
       *[st.one_of(st.none(), st.integers(1, 128)) for _ in range(3)])
def test_any_inline_parallelism_runs_or_is_refused_by_name(hardware, llm, phase, chips, ep, tp, dp):
    """Whatever degrees a user types, the answer is a step time or one line naming the field (no traceback)."""
    args = ["--hardware", hardware, "--llm", llm, "--phase", phase, "--chips", str(chips)]
    for opt, v in (("--ep", ep), ("--tp", tp), ("--dp", dp)):
        args += [opt, str(v)] if v is not None else []
    r = run("estimate", *args, "--json")
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        assert r.output.startswith("error: ") and "field '" in r.output and "Traceback" not in r.output
    else:
        assert json.loads(r.output)["step_time_ms"] > 0


def test_weight_loading_paper_scenario():
    """The paper's model-caching scenario (Sec. 4): DeepSeek-R1 INT8 (671B + the 14B MTP module) from one OBS bucket
    at 2.5 GB/s takes minutes per instance, eight instances at once eight times that; from the DRAM pool each rank
    pulls only its own weights (attention replicated on every DP rank, one expert each), a fraction of a second."""
    from harness.step.deployment import load_deployment
    from harness.step.loading import object_store_load_s, pool_load_s
    from harness.step.memory import weights_per_rank_bytes
    dep = load_deployment("cm384-decode")
    out = est("--deployment", "cm384-decode")["weight_load_s"]
    assert out["model_gb"] == pytest.approx(684.7, rel=0.01)
    assert out["object_store"] == pytest.approx(684.7 / 2.5, rel=0.01)
    assert object_store_load_s(dep, instances=8) == pytest.approx(8 * out["object_store"])
    # 19.5 GB per die over UB's NPU-to-CPU read (147-151 GB/s): the shard, not the checkpoint over 320 ranks
    assert weights_per_rank_bytes(dep) > 684.7e9 / dep.ranks * 5
    assert out["memory_pool"] == pytest.approx(weights_per_rank_bytes(dep) / 147e9, rel=0.03)
    wider = load_deployment("cm384-decode", ("cloudmatrix384.host.remote_read_bandwidth=300GB/s",
                                             "cloudmatrix384.host.read_bandwidth=300GB/s"))
    assert pool_load_s(wider) < pool_load_s(dep)


@pytest.mark.parametrize("args,length", [(("-d", "cm384-decode", "--kv-len"), 163_840),
                                         (("-d", "h800-prefill", "--tokens-per-chip", "16384", "--prompt-len"), 163_840)])
def test_a_sequence_beyond_the_context_window_is_flagged(args, length):
    """DeepSeek-R1 reads 163,840 positions; a longer KV or prompt still gets numbers, with a warning."""
    assert est(*args, str(length - 1))["within_context"]     # decode: the draft token makes it exactly the window
    # a KV of exactly the window leaves no room for the decode's draft token; a prompt of it fits
    assert est(*args, str(length))["within_context"] == (args[1] != "cm384-decode")
    out = est(*args, str(length + 1))
    assert not out["within_context"] and out["max_context"] == length
    assert "beyond deepseek-r1's context window" in run("estimate", *args, str(length + 1)).output
    assert est(*args, str(length + 1), "--set", f"deepseek-r1.max_context={length + 2}")["within_context"]


# --tpot-slo / --ttft-slo: the most load within latency objectives. Each answer is checked against the scalar
# estimate at that load (the search evaluates vectorised) and against one more unit of load (it is the largest).

@settings(max_examples=15, deadline=None)
@given(slo_ms=st.floats(10, 150), deployment=st.sampled_from(["cm384-decode", "h800-decode", "h100-decode"]))
def test_tpot_slo_gives_the_largest_batch_that_meets_it(slo_ms, deployment):
    out = est("-d", deployment, "--tpot-slo", f"{slo_ms}ms")
    (p,) = out["points"]
    kv = out["operating_point"]["kv_len"]
    both = {mb: est("-d", deployment, "--batch", "1", "--kv-len", str(kv), f"--{'' if mb == 2 else 'no-'}microbatch")
            for mb in (1, 2)}
    if not p["met"]:
        assert p["lowest_latency_ms"] == pytest.approx(min(b["tpot_ms"] for b in both.values()))
        assert p["lowest_latency_ms"] > slo_ms
        return
    mb_flag = "--microbatch" if p["microbatches"] == 2 else "--no-microbatch"
    at = est("-d", deployment, "--batch", str(p["batch_per_chip"]), "--kv-len", str(kv), mb_flag)
    assert at["tpot_ms"] == pytest.approx(p["tpot_ms"]) and at["tpot_ms"] <= slo_ms
    assert at["throughput_per_chip"] == pytest.approx(p["throughput_per_chip"])
    if p["limited_by"] == "memory":
        assert p["batch_per_chip"] == at["max_batch_per_chip_at_kv_len"]
        return
    for flag in ("--microbatch", "--no-microbatch"):  # one more request per chip misses, whichever overlap
        more = est("-d", deployment, "--batch", str(p["batch_per_chip"] + 1), "--kv-len", str(kv), flag)
        assert more["tpot_ms"] > slo_ms or more["throughput_per_chip"] <= p["throughput_per_chip"]


def test_tpot_slo_table_and_its_limits():
    out = est("-d", "cm384-decode", "--kv-len", "4096", "--tpot-slo", "1ms,30,50ms,10s")
    tight, mid, loose, huge = out["points"]
    assert out["objective"] == "tpot" and out["microbatches_tried"] == [1, 2]
    assert not tight["met"] and tight["batch_per_chip"] is None and tight["lowest_latency_ms"] > 1
    assert mid["batch_per_chip"] < loose["batch_per_chip"] < huge["batch_per_chip"]
    assert mid["throughput_per_chip"] < loose["throughput_per_chip"] < huge["throughput_per_chip"]
    assert huge["limited_by"] == "memory" and loose["limited_by"] == "slo"
    only = est("-d", "cm384-decode", "--kv-len", "4096", "--tpot-slo", "30", "--microbatch")
    assert only["microbatches_tried"] == [2] and only["points"][0]["microbatches"] == 2
    assert only["points"][0]["throughput_per_chip"] <= mid["throughput_per_chip"]
    human = run("estimate", "-d", "cm384-decode", "--tpot-slo", "1ms,50ms")
    assert human.exit_code == 0, human.output
    assert "most load within each TPOT objective" in human.output and "not met" in human.output


@pytest.mark.parametrize("cached", [0, 1024])
def test_ttft_slo_gives_the_most_prefill_tokens_that_meet_it(cached):
    out = est("-d", "cm384-prefill", "--prompt-len", "4096", "--cached-len", str(cached), "--ttft-slo", "0.7s,2")
    assert out["objective"] == "ttft"
    for p, slo in zip(out["points"], (700, 2000)):
        assert p["met"] and p["ttft_ms"] <= slo and p["limited_by"] == "slo"
        mb_flag = "--microbatch" if p["microbatches"] == 2 else "--no-microbatch"
        at = est("-d", "cm384-prefill", "--prompt-len", "4096", "--cached-len", str(cached),
                 "--tokens-per-chip", str(int(p["tokens_per_chip"])), mb_flag)
        assert at["ttft_ms"] == pytest.approx(p["ttft_ms"])
        more = est("-d", "cm384-prefill", "--prompt-len", "4096", "--cached-len", str(cached),
                   "--tokens-per-chip", str(int(p["tokens_per_chip"]) + 256), mb_flag)
        assert more["ttft_ms"] > slo


@pytest.mark.parametrize("args, message", [
    (["-d", "cm384-prefill", "--tpot-slo", "50ms"], "--tpot-slo is for decode"),
    (["-d", "cm384-decode", "--ttft-slo", "2s"], "--ttft-slo is for prefill"),
    (["-d", "cm384-decode", "--tpot-slo", "50ms", "--batch", "8"], "drop --batch"),
    (["-d", "cm384-prefill", "--ttft-slo", "2s", "--tokens-per-chip", "8"], "drop --tokens-per-chip"),
    (["-d", "cm384-decode", "--tpot-slo", "50ms", "--ttft-slo", "2s"], "not both"),
    (["-d", "cm384-decode", "--tpot-slo", "fast"], "--tpot-slo: not a duration"),
    (["-d", "cm384-decode", "--tpot-slo", "50ms,0"], "must be positive"),
    (["-d", "cm384-decode", "--tpot-slo", "50ms", "--kv-len", "100000000"], "not one request of 100,000,000 tokens"),
    (["--hardware", "cloudmatrix384", "--llm", "llama-3.1-70b", "--phase", "decode", "--chips", "1", "--tpot-slo",
      "50"], "field '--chips': inline:cloudmatrix384/llama-3.1-70b/decode/1's weights (72.7 GB per rank)"),
])
def test_slo_search_bad_input(args, message):
    r = run("estimate", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_slo_points_are_priced_like_an_estimate():
    out = est("-d", "h800-decode", "--tpot-slo", "50ms")
    (p,) = out["points"]
    at = est("-d", "h800-decode", "--batch", str(p["batch_per_chip"]),
             "--microbatch" if p["microbatches"] == 2 else "--no-microbatch")
    assert p["cost_per_million_tokens_usd"] == pytest.approx(at["cost_per_million_tokens_usd"])


def test_several_deployments_compare_at_the_same_objectives():
    both = est("-d", "cm384-decode", "-d", "h800-decode", "--kv-len", "4096", "--tpot-slo", "30ms,50ms")
    assert both["objective"] == "tpot" and [r["deployment"] for r in both["deployments"]] == ["cm384-decode",
                                                                                              "h800-decode"]
    for r in both["deployments"]:  # each is exactly what that deployment alone gives
        alone = est("-d", r["deployment"], "--kv-len", "4096", "--tpot-slo", "30ms,50ms")
        assert r == alone
    human = run("estimate", "-d", "cm384-prefill", "-d", "h800-prefill", "--ttft-slo", "2s")
    assert human.exit_code == 0, human.output
    assert "per deployment" in human.output and "h800-prefill" in human.output


@pytest.mark.parametrize("args, message", [
    (["-d", "cm384-decode", "-d", "h800-decode"], "add --tpot-slo or --ttft-slo"),
    (["-d", "cm384-decode", "-d", "cm384-prefill", "--tpot-slo", "50ms"], "cm384-prefill is a prefill deployment"),
])
def test_several_deployments_bad_input(args, message):
    r = run("estimate", *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["h100-ib", "h20-ib", "cloudmatrix384"]),
       st.sampled_from(["deepseek-r1", "llama-3.1-70b", "qwen3-235b-a22b"]), st.sampled_from(["prefill", "decode"]),
       st.integers(1, 64), st.one_of(st.none(), st.integers(1, 200_000)),
       st.lists(st.floats(0.001, 1e5, allow_nan=False), min_size=1, max_size=3))
def test_any_inline_slo_search_answers_or_is_refused_by_name(hardware, llm, phase, chips, length, slos_ms):
    """An SLO search over any inline deployment gives, per objective, a load that meets it or the lowest latency
    reachable, or one line naming the field (weights that do not fit, a length beyond HBM): never a traceback."""
    args = ["--hardware", hardware, "--llm", llm, "--phase", phase, "--chips", str(chips)]
    if length is not None:
        args += ["--kv-len" if phase == "decode" else "--prompt-len", str(length)]
    option = "--tpot-slo" if phase == "decode" else "--ttft-slo"
    r = run("estimate", *args, option, ",".join(f"{v}ms" for v in slos_ms), "--json")
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        assert r.output.startswith("error: ") and "field '" in r.output and "Traceback" not in r.output
        return
    points = json.loads(r.output)["points"]
    assert [p["slo_ms"] for p in points] == pytest.approx(slos_ms)
    latency = "tpot_ms" if phase == "decode" else "ttft_ms"
    for p in points:
        assert (p["met"] and 0 < p[latency] <= p["slo_ms"]) or (not p["met"] and p["lowest_latency_ms"] > p["slo_ms"])


@pytest.mark.parametrize("deployment, kv_len", [("cm384-decode", 256), ("h800-decode", 128)])
def test_slo_search_beyond_the_exact_range_matches_every_load(deployment, kv_len):
    """Past EXACT_UNITS the search walks a 1% grid and refines around the best point: it must land where evaluating
    every batch up to the memory cap lands."""
    import numpy as np

    from harness.step.capacity import EXACT_UNITS, decode_capacity
    from harness.step.deployment import load_deployment
    from harness.step.memory import max_batch_per_chip
    from harness.step.schedule import decode_work, step_time_s

    dep = load_deployment(deployment)
    cap = max_batch_per_chip(dep, kv_len)
    assert cap > EXACT_UNITS * 1.5
    batches = np.arange(1, cap + 1, dtype=float)
    tpot = {mb: np.asarray(step_time_s(d, decode_work(d, batches, kv_len)), float) / d.tokens_per_step * 1e3
            for mb in (1, 2) for d in [dep.replace(microbatches=mb)]}
    slos = [float(tpot[2][int(b)]) + 1e-9 for b in (EXACT_UNITS * 1.2, (EXACT_UNITS + cap) / 2, cap - 7)]
    for p, slo in zip(decode_capacity(dep, kv_len, slos, (1, 2)), slos):
        best = max(((batches[ok] / tpot[mb][ok] * 1e3).max(), mb) for mb in (1, 2)
                   for ok in [tpot[mb] <= slo] if ok.any())
        assert p["throughput_per_chip"] == pytest.approx(best[0], rel=1e-12) and p["microbatches"] == best[1]
