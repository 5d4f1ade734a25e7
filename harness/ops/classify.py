"""Kernel-name classification by the rule table in models/kernels/rules.toml (plus user rule files)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError
from harness.tomlfile import read_toml
from harness.ops.graph import CATEGORIES, OpGraph
from harness.paths import models_dir


@dataclass(frozen=True, slots=True)
class Rule:
    category: str
    pattern: re.Pattern[str]
    annotation: re.Pattern[str] | None = None
    collective: re.Pattern[str] | None = None  # matched against the collective the trace names (Kineto)


def default_rules_path() -> Path:
    return models_dir() / "kernels" / "rules.toml"


def load_rules(path: str | Path) -> list[Rule]:
    """Parse one rule file; bad files raise InputError naming the rule and field."""
    path = Path(path)
    _, data = read_toml(path)
    rules = []
    listed = data.get("rule", [])
    if not isinstance(listed, list):
        raise InputError("'rule' must be an array of tables ([[rule]] blocks)", path=str(path), field="rule")
    for i, raw in enumerate(listed):
        where = f"rule {i + 1}"
        if not isinstance(raw, dict):
            raise InputError("each [[rule]] must be a table", path=str(path), where=where)
        unknown = set(raw) - {"category", "pattern", "annotation", "collective"}
        if unknown:
            raise InputError(f"unknown key(s) {sorted(unknown)}", path=str(path), where=where)
        category = raw.get("category")
        if category not in CATEGORIES:
            raise InputError(f"must be one of {', '.join(CATEGORIES)} (got {category!r})",
                             path=str(path), where=where, field="category")
        rules.append(Rule(category, _compile(raw.get("pattern"), path, where, "pattern"),
                          *(_compile(raw[key], path, where, key) if key in raw else None
                            for key in ("annotation", "collective"))))
    return rules


def _compile(text: object, path: Path, where: str, field: str) -> re.Pattern[str]:
    if not isinstance(text, str) or not text:
        raise InputError("must be a non-empty regular expression string", path=str(path), where=where, field=field)
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise InputError(f"bad regular expression: {exc}", path=str(path), where=where, field=field) from None


def rule_table(extra: list[str | Path] | tuple[str | Path, ...] = ()) -> list[Rule]:
    """User rule files first (they override), then the bundled table."""
    rules: list[Rule] = []
    for path in extra:
        rules.extend(load_rules(path))
    return rules + load_rules(default_rules_path())


def classify_name(name: str, annotation: str, rules: list[Rule], collective: str = "") -> str | None:
    for rule in rules:
        if (rule.pattern.search(name) and (rule.annotation is None or rule.annotation.search(annotation))
                and (rule.collective is None or (collective and rule.collective.search(collective)))):
            return rule.category
    return None


def classify(graph: OpGraph, rules: list[Rule]) -> None:
    """Set each op's category in place; unmatched ops become "other" with classified=False."""
    cache: dict[tuple[str, str, str], str | None] = {}
    for op in graph.ops:
        key = (op.name, op.annotation, op.collective)
        if key not in cache:
            cache[key] = classify_name(op.name, op.annotation, rules, op.collective)
        category = cache[key]
        op.category = category or "other"
        op.classified = category is not None


def unclassified(graph: OpGraph) -> list[dict]:
    """Kernels no rule matched: name, count and recorded time, largest time first."""
    rows: dict[str, dict] = {}
    for op in graph.ops:
        if not op.classified:
            row = rows.setdefault(op.name, {"name": op.name, "count": 0, "time_s": 0.0})
            row["count"] += 1
            row["time_s"] += op.duration_s
    return sorted(rows.values(), key=lambda r: -r["time_s"])
