"""Result probes: fixed scenarios whose predictions are golden. Each returns {result id: value}.

Probes go through the commands' own `--json` output, so the gate checks exactly what users see and survives
refactors of the code behind it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable

from click.testing import CliRunner

from harness.errors import InputError

# Fixed operating points: the paper's and DeepSeek's headline settings plus off-nominal ones on each backend.
ESTIMATES: dict[str, list[str]] = {
    "cm384-decode.b96.kv4096": ["-d", "cm384-decode", "--batch", "96", "--kv-len", "4096"],
    "cm384-decode.b32.kv1024": ["-d", "cm384-decode", "--batch", "32", "--kv-len", "1024"],
    "cm384-prefill.t16384.p4096": ["-d", "cm384-prefill", "--tokens-per-chip", "16384", "--prompt-len", "4096",
                                   "--eplb", "perfect"],
    "h800-decode.b64.kv4096": ["-d", "h800-decode", "--batch", "64", "--kv-len", "4096"],
    "h800-prefill.t16384.p4096": ["-d", "h800-prefill", "--tokens-per-chip", "16384", "--prompt-len", "4096"],
    "h100-inline.decode.ep72.b32": ["--hardware", "h100-ib", "--llm", "deepseek-r1", "--phase", "decode",
                                    "--chips", "72", "--ep", "72", "--batch", "32", "--kv-len", "2048"],
}
ESTIMATE_KEYS = ("step_time_ms", "throughput_per_chip")

# A fixed replay: the first 2,000 requests of the bundled Azure conversation trace, 20x denser, default backends.
REPLAY_ARGS = ["azure-conv", "--limit", "2000", "--time-scale", "0.05", "--quiet", "--json", "--seed", "0"]
REPLAY_KEYS = ("requests_completed", "requests_rejected", "chips", "output_tokens_per_s_per_chip",
               "input_tokens_per_s_per_chip", "goodput_req_per_s", "slo_attainment", "cost_per_million_output_tokens")
REPLAY_DISTRIBUTIONS = ("ttft_s", "tpot_ms", "e2e_s")


def _bench_json(args: list[str]) -> object:
    from harness.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=False)
    if result.exit_code == 2:  # bad input (e.g. an unknown --set path): pass the command's own message on
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]   # not its notes
        raise InputError(errors[-1].removeprefix("error: ") if errors else result.output.strip())
    if result.exit_code != 0:
        raise RuntimeError(f"bench {' '.join(args)} exited {result.exit_code}: {result.output[-2000:]}")
    return json.loads(result.stdout)


def _specs_used(args: list[str]) -> set[str]:
    """Spec names an estimate reads: its deployment with that deployment's hardware and LLM, or the inline ones."""
    from harness.step import load_deployment

    opts = dict(zip(args[::2], args[1::2]))
    if "-d" in opts:
        dep = load_deployment(opts["-d"])
        return {dep.name, dep.hardware.name, dep.llm.name}
    return {opts.get("--hardware", ""), opts.get("--llm", "")}


def _with_sets(args: list[str], overrides: tuple[str, ...], used: set[str] | None = None) -> list[str]:
    """Append the overrides (only those naming a spec in `used`, when given) as --set options."""
    chosen = [o for o in overrides if used is None or o.split(".", 1)[0] in used]
    return [*args, *(a for o in chosen for a in ("--set", o))]


def validation_probe(overrides: tuple[str, ...] = ()) -> dict[str, float]:
    if overrides:  # validation rows are defined on the published specs; a what-if changes the other probes only
        return {}
    rows = _bench_json(["validate", "--json"])
    return {f"validate/{r['id']}": float(r["predicted"]) for r in rows}


def estimate_probe(overrides: tuple[str, ...] = ()) -> dict[str, float]:
    out = {}
    for name, args in ESTIMATES.items():
        data = _bench_json(_with_sets(["estimate", *args, "--json"], overrides, _specs_used(args)))
        for key in ESTIMATE_KEYS:
            out[f"estimate/{name}/{key}"] = float(data[key])
    return out


def replay_probe(overrides: tuple[str, ...] = ()) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data = _bench_json(_with_sets(["replay", *REPLAY_ARGS, "--out", f"{tmp}/replay"], overrides))
    out = {}
    for label, summary in sorted(data["summaries"].items()):
        for key in REPLAY_KEYS:
            out[f"replay/{label}/{key}"] = float(summary[key])
        for key in REPLAY_DISTRIBUTIONS:
            for q in ("p50", "p99"):
                out[f"replay/{label}/{key}.{q}"] = float(summary[key][q])
    return out


PROBES: list[Callable[[tuple[str, ...]], dict[str, float]]] = [validation_probe, estimate_probe, replay_probe]


def collect_results(overrides: tuple[str, ...] = ()) -> dict[str, float]:
    """Every probe's results; `overrides` (SPEC.PATH=VALUE) are applied to the estimate and replay probes."""
    out: dict[str, float] = {}
    for probe in PROBES:
        out.update(probe(overrides))
    return out
