"""Spec files: TOML in models/<kind>/<name>.toml, checked against models/schema/<kind>.json.

`load_spec(kind, name, overrides)` reads the file, applies `--set name.path=value` overrides to the raw dict, then
validates, so an override is checked exactly like the file. Errors name the file, the line and the field."""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import InputError
from harness.tomlfile import read_toml
from harness.hardware.units import PATTERNS, parse_quantity, quantity_kind
from harness.paths import models_dir

KINDS = {"hardware": "hardware", "llm": "llm", "deployment": "deployments", "calibration": "calibration",
         "validation": "validation"}



# JSON Schema counts 61.0 as an integer; spec integers feed range() and array sizes, so only whole ints pass.
_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)))

def spec_path(kind: str, name: str) -> Path:
    return models_dir() / KINDS[kind] / f"{name}.toml"


def spec_names(kind: str) -> list[str]:
    return sorted(p.stem for p in (models_dir() / KINDS[kind]).glob("*.toml"))


@functools.lru_cache(maxsize=None)
def _schema(kind: str) -> dict[str, Any]:
    schema = json.loads((models_dir() / "schema" / f"{kind}.json").read_text())
    defs = schema.setdefault("$defs", {})
    for unit_kind, pattern in PATTERNS.items():
        defs[unit_kind] = {"type": "string", "pattern": pattern}
    return schema


def _read(kind: str, name: str) -> tuple[Path, str, dict[str, Any]]:
    path = spec_path(kind, name)
    if name not in spec_names(kind):  # also keeps '../hardware/x' from reading another kind's folder
        known = ", ".join(spec_names(kind)) or "none"
        raise InputError(f"unknown {kind} '{name}' (available: {known})", field=kind)
    text, data = read_toml(path)
    return path, text, data


def line_of(text: str, dotted: Sequence[str | int]) -> int | None:
    """Best-effort line number of a dotted key in TOML text (tomllib keeps none): the key line inside its table."""
    keys = [str(k) for k in dotted if not isinstance(k, int)]
    if not keys:
        return None
    table, current, best = ".".join(keys[:-1]), "", None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("["):
            current = s.split("#")[0].strip().strip("[]").strip()
            if current == ".".join(keys):
                best = best or i
            continue
        if re.match(rf"^{re.escape(keys[-1])}\s*=", s) and current == table:
            return i
        if table and current == "" and re.match(rf"^{re.escape(table.split('.')[0])}\s*=", s):
            best = best or i  # inline table holding the key
        if table and current == ".".join(keys[:-2]) and re.match(rf"^{re.escape(keys[-2])}\s*=", s):
            best = best or i
    return best


def apply_overrides(data: dict[str, Any], overrides: Sequence[tuple[str, str]], path: Path,
                    schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set dotted paths to new values. The value's type follows the old one: numbers parse as numbers, quantities
    keep their text (schema-checked next), so `ub.bandwidth=98GB/s` works and `ub.bandwidth=98` is a unit error.
    A path may start with a table's `alias` (a fabric's: `ub` for `scale_up` on CloudMatrix384).
    An optional field the file leaves out (e.g. a deployment's `dispatch_kernel`) may be set when `schema` defines
    it; its type then comes from the schema."""
    data = copy.deepcopy(data)
    aliases = {v["alias"]: k for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("alias"), str)}
    for dotted, raw in overrides:
        keys = dotted.split(".")
        if keys[0] not in data and keys[0] in aliases:  # a table's second name (`ub` for `scale_up`)
            keys[0] = aliases[keys[0]]
        node: Any = data
        for k in keys[:-1]:
            if not isinstance(node, dict) or k not in node:
                raise InputError(_no_such_path(dotted, data), path=str(path), field=dotted)
            node = node[k]
        if isinstance(node, dict) and keys[-1] in node:
            old = node[keys[-1]]
        else:
            old = _schema_default(schema, keys) if isinstance(node, dict) else None
            if old is None:
                raise InputError(_no_such_path(dotted, data), path=str(path), field=dotted)
        node[keys[-1]] = _coerce(raw, old, dotted, path)
    return data


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every value --set can change (not tables, not inside lists)."""
    if not isinstance(node, dict):
        return [prefix]
    return [p for k, v in node.items() for p in _leaf_paths(v, f"{prefix}.{k}" if prefix else k)]


def _no_such_path(dotted: str, data: dict[str, Any]) -> str:
    """The error for an unknown path, naming the paths it may have meant: those ending in the same key (a path
    missing its table, e.g. `attention_compute` for `chip.efficiency.attention_compute`), else close spellings."""
    paths = _leaf_paths(data)
    last = dotted.rsplit(".", 1)[-1]
    near = [p for p in paths if p.rsplit(".", 1)[-1] == last] or difflib.get_close_matches(dotted, paths, n=3)
    hint = f" (did you mean {' or '.join(repr(p) for p in near[:3])}?)" if near else ""
    return f"--set: no such path '{dotted}' in this spec{hint}"


_BLANK = {"boolean": False, "integer": 0, "number": 0.0, "string": ""}


def _schema_default(schema: dict[str, Any] | None, keys: list[str]) -> Any:
    """A blank value of the type the schema gives the field at `keys` (None: the schema has no such field, or it
    is a table or list, which --set does not create)."""
    node: Any = schema
    for k in keys:
        if not isinstance(node, dict):
            return None
        node = _deref(schema, node).get("properties", {}).get(k)
    if node is None:
        return None
    node = _deref(schema, node)
    kind = node.get("type") or ("string" if all(isinstance(v, str) for v in node.get("enum", [None])) else None)
    return _BLANK.get(kind) if isinstance(kind, str) else None


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    return schema["$defs"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/$defs/") else node


def _coerce(raw: str, old: Any, dotted: str, path: Path) -> Any:
    raw = raw.strip()
    try:
        if isinstance(old, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return raw.lower() == "true"
        if isinstance(old, int):
            if re.fullmatch(r"-?\d+", raw):
                value = int(raw)
            else:
                value = float(raw)   # '1E0' or '96.0' mean an integer; 1.5 stays a float for the schema to reject
                value = int(value) if value.is_integer() else value
            if isinstance(value, int) and not -2**63 <= value < 2**63:   # 1e308 overflowed floats in the model
                raise ValueError("beyond the 64-bit integers a spec file (TOML) can hold")
            return value
        if isinstance(old, float):
            return float(raw)
        if isinstance(old, (dict, list)):
            raise ValueError("cannot replace a whole table or list; set one of its fields")
    except ValueError as exc:
        raise InputError(f"--set: bad value {raw!r}: {exc}", path=str(path), field=dotted) from None
    if isinstance(old, str) and quantity_kind(old) and not quantity_kind(raw):
        # Keep it a string so the schema reports the missing unit in its own words.
        return raw
    return raw


def load_spec(kind: str, name: str, overrides: Sequence[tuple[str, str]] = ()) -> tuple[dict[str, Any], Path]:
    """Read, override, validate. Returns the raw (unit-bearing) dict and its path; InputError on any problem."""
    path, text, original = _read(kind, name)
    data = apply_overrides(original, overrides, path, _schema(kind))

    def where(at: list) -> str | None:
        """A value --set changed is blamed on --set, not on the line of the file it replaced."""
        before, after = _lookup(original, at), _lookup(data, at)
        if not (before is after or before == after):  # `is`: a NaN the file itself holds is unchanged
            return "--set"
        line = line_of(text, at)
        return f"line {line}" if line else None

    for check, message in ((first_non_finite, "not a finite number"),
                           (_zero_rate, "a bandwidth or compute rate must be greater than zero")):
        bad = check(data, [])
        if bad is not None:
            raise InputError(message, path=str(path), where=where(bad), field=".".join(map(str, bad)))
    validator = _StrictValidator(_schema(kind))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        while err.context:  # oneOf / anyOf: the error of the branch the value meant, not the whole table
            err = _closest_branch_error(err.context)
        at = list(err.absolute_path)
        if err.validator == "required":
            missing = re.search(r"'([^']+)' is a required property", err.message)
            at = at + [missing.group(1)] if missing else at
            msg = "missing required field"
        elif err.validator == "pattern" and _unit_kind(err.schema.get("pattern", "")):
            kind = _unit_kind(err.schema["pattern"])
            msg = (f"{err.instance!r} is negative"
                   if str(err.instance).lstrip().startswith("-") else f"{err.instance!r} needs a unit of {kind}")
        elif err.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)'", err.message)
            at = at + extra[:1]
            msg = "unknown field (a typo?)"
        else:
            msg = err.message
        raise InputError(msg, path=str(path), where=where(at), field=".".join(map(str, at)) or None)
    if data.get("name") != name:
        raise InputError(f"name {data.get('name')!r} does not match the file name '{name}'", path=str(path),
                         where=f"line {line_of(text, ['name'])}", field="name")
    return data, path


def _first(node: Any, at: list, bad) -> list | None:
    """Path of the first leaf for which bad(leaf) holds."""
    if bad(node):
        return at
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        found = _first(v, at + [k], bad)
        if found is not None:
            return found
    return None


def _closest_branch_error(context: list) -> Any:
    """Among a oneOf's failed branches, the first error of the one the value meant: not one whose tag (a `const`
    or `enum`, such as attention `kind`) it fails, then the one with the fewest errors."""
    branches: dict[Any, list] = {}
    for e in context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    def mismatch(errs: list) -> tuple[bool, int]:
        return any(e.validator in ("const", "enum") for e in errs), len(errs)
    errs = min(branches.values(), key=mismatch)
    return min(errs, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))


def _lookup(node: Any, at: list) -> Any:
    """The value at a path of keys and list indices; None where the path does not exist."""
    for k in at:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def first_non_finite(node: Any, at: list) -> list | None:
    """NaN or infinity (TOML allows them) or a quantity too large for a float ('1e400 GB/s'): no spec value may be
    one."""
    def bad(v: Any) -> bool:
        if isinstance(v, float):
            return not math.isfinite(v)
        if isinstance(v, str) and quantity_kind(v):
            try:
                parse_quantity(v)
            except ValueError:
                return True
        return False
    return _first(node, at, bad)


def _zero_rate(node: Any, at: list) -> list | None:
    """A zero bandwidth or compute peak would divide by zero; sizes and latencies may be zero."""
    def bad(v: Any) -> bool:
        kind = quantity_kind(v) if isinstance(v, str) else None
        return kind in ("bandwidth", "compute") and parse_quantity(v) <= 0
    return _first(node, at, bad)


def _unit_kind(pattern: str) -> str | None:
    """The quantity a unit pattern stands for, with examples; None for other patterns (jsonschema's own words)."""
    for kind, p in PATTERNS.items():
        if p == pattern:
            return {"bandwidth": "bandwidth (e.g. '196 GB/s', '400 Gb/s')", "size": "size (e.g. '64 GB', '16 GiB')",
                    "time": "time (e.g. '1.9 us', '2 ms')", "compute": "compute (e.g. '376 TFLOPS')"}[kind]
    return None


def split_overrides(sets: Sequence[str], names: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """`--set spec.path=value` strings grouped by spec name; a name not among `names` is an error."""
    out: dict[str, list[tuple[str, str]]] = {n: [] for n in names}
    for item in sets:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise InputError(f"--set expects SPEC.PATH=VALUE (e.g. cloudmatrix384.ub.bandwidth=98GB/s), got {item!r}",
                             field="--set")
        lhs, value = item.split("=", 1)
        spec, dotted = lhs.strip().split(".", 1)
        if spec not in out:
            raise InputError(f"--set {item!r}: '{spec}' is not one of the specs in use ({', '.join(names)})",
                             field="--set")
        out[spec].append((dotted, value))
    return out


def list_models() -> dict[str, list[dict[str, str]]]:
    """Every bundled spec by kind, with its one-line description (for `bench models list`)."""
    out: dict[str, list[dict[str, str]]] = {}
    for kind in ("hardware", "llm", "deployment"):
        rows = []
        for name in spec_names(kind):
            _, _, data = _read(kind, name)
            rows.append({"name": name, "description": str(data.get("description", ""))})
        out[kind] = rows
    return out
