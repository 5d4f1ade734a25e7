"""The knobs a sweep point may set, how each value is checked, and how a point's knobs become a replay plan.

Two kinds of knob:
- simulator knobs (`prefill_instances`, `batch_cap`, `routing`, ...): fields of SimConfig or the plan;
- spec overrides, any dotted name: `decode.ep`, `prefill.precision`, `decode.mtp_accept`, `hardware.ub.bandwidth`,
  `llm.<path>` (aliases for the point's decode/prefill deployment, hardware and LLM spec), or a spec file name as
  in `bench replay --set` (`cloudmatrix384.ub.bandwidth`). They become `--set SPEC.PATH=VALUE` strings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.hardware.units import parse_quantity
from harness.sim.config import CACHE_SCOPES, DP_BALANCE, ROUTING_POLICIES, SimConfig
from harness.sim.replay import BackendPlan


def _int(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be a whole number of at least {minimum}")
        return value
    return check


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("must be a positive number")
    return float(value)


def _size_bytes(value: Any) -> int:
    if value == 0 or value == "0":
        return 0
    if not isinstance(value, str):
        raise ValueError("must be a size with a unit, e.g. \"2TB\" (or 0)")
    return int(parse_quantity(value, "size"))


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return check


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a spec name")
    return value.strip()


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a whole number of at least 0")
    return value


# name -> (check/convert, SimConfig field or None when the plan uses it directly)
SIM_KNOBS: dict[str, tuple[Callable[[Any], Any], str | None]] = {
    "prefill_instances": (_int(1), "prefill_instances"),
    "decode_instances": (_int(1), "decode_instances"),
    "prefill_per_decode": (_positive, None),        # instance ratio: prefill = round(ratio x decode), at least 1
    "batch_cap": (_int(1), "batch_cap_per_chip"),
    "token_budget": (_int(1), "token_budget_per_chip"),
    "chunk": (_int(0), "chunk_tokens"),
    "cache_capacity": (_size_bytes, "cache_pool_bytes"),
    "cache_ssd": (_size_bytes, "cache_ssd_bytes"),
    "cache_scope": (_choice(CACHE_SCOPES), "cache_scope"),
    "routing": (_choice(ROUTING_POLICIES), "routing"),
    "dp_balance": (_choice(DP_BALANCE), "dp_balance"),
    "seed": (_seed, "seed"),
    "price": (_positive, None),                     # $/chip-hour, overriding the hardware spec
    "prefill": (_name, None),                       # deployment spec names
    "decode": (_name, None),
}
SPEC_ALIASES = ("prefill", "decode", "hardware", "llm")


def check_value(name: str, value: Any) -> None:
    """ValueError when `value` is not valid for simulator knob `name` (spec overrides are checked by the spec)."""
    if name in SIM_KNOBS:
        SIM_KNOBS[name][0](value)
    elif isinstance(value, dict | list):
        raise ValueError("a spec override takes one number, string or boolean")


def is_spec_knob(name: str) -> bool:
    head, dot, rest = name.partition(".")
    return bool(dot and head and rest)


def override_text(value: Any) -> str:
    """A TOML value as `--set` text: booleans lower-case, everything else as written."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def spec_overrides(knobs: dict[str, Any], names: dict[str, str]) -> list[str]:
    """`SPEC.PATH=VALUE` strings for the dotted knobs; `names` maps the aliases to this point's spec names."""
    out = []
    for key in sorted(knobs):
        if is_spec_knob(key):
            head, _, rest = key.partition(".")
            out.append(f"{names.get(head, head)}.{rest}={override_text(knobs[key])}")
    return out


def to_plan(label: str, backend: str, prefill: str, decode: str, knobs: dict[str, Any], defaults: dict[str, int],
            seed: int, block_size: int) -> BackendPlan:
    """The replay plan of one point: instance counts from the knobs, else the backend's defaults."""
    fields: dict[str, Any] = {"prefill_instances": defaults["prefill_instances"],
                              "decode_instances": defaults["decode_instances"], "seed": seed, "block_size": block_size}
    for key, value in knobs.items():
        if key in SIM_KNOBS and SIM_KNOBS[key][1] is not None:
            fields[SIM_KNOBS[key][1]] = SIM_KNOBS[key][0](value)
    if "prefill_per_decode" in knobs:
        fields["prefill_instances"] = max(1, round(float(knobs["prefill_per_decode"]) * fields["decode_instances"]))
    price = float(knobs["price"]) if "price" in knobs else None
    return BackendPlan(label, backend, prefill, decode, SimConfig(**fields), price)
