"""Work tables (models/kernels/work/*.toml): each op's work from its annotation, its kernel name and an LLM spec,
for traces that record no shapes (e.g. DeepSeek's training capture).

A table names the LLM spec, the run's numbers (`[vars]`, expressions over the LLM spec's fields and earlier
vars) and rules. A rule matches ops by `annotation` and `kernel` (regular expressions, searched) and states
one kind of work:
- `gemm = [[m, n, k], ...]`: one shape per launch of that kernel inside one occurrence of the annotation, in
  order (an entry may be "source-rate" where the shape is ambiguous); `groups`, `precision` optional. When an
  occurrence launches a different number of such kernels than listed, the whole occurrence is ambiguous and
  falls back to the source-rate method;
- `attention = {flops, bytes}`; `memory = "bytes"`;
- `moe = "dispatch" | "combine"` with `tokens` (per rank): timed by the cost model's bulk all-to-all;
- `source_rate = "why"`: work not derivable; the op's work is inferred from its recorded time.
The first matching rule wins. A table applies to a trace that has every annotation in `match.annotations` and
a kernel matching `match.kernel`.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.tomlfile import read_toml
from harness.llm import LLM, load_llm
from harness.ops.graph import OpGraph
from harness.paths import models_dir

SOURCE_RATE = "source-rate"
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_KINDS = ("gemm", "attention", "memory", "moe", "source_rate")


@dataclass(frozen=True, slots=True)
class OpWork:
    """Work of one op from a table. `gemm` = (m, n, k, groups); `moe` = (op, tokens, ep)."""
    kind: str  # one of _KINDS
    precision: str | None = None
    gemm: tuple[float, float, float, float] | None = None
    flops: float = 0.0
    bytes_moved: float = 0.0
    moe: tuple[str, float, int] | None = None
    reason: str = ""


@dataclass
class WorkTable:
    name: str
    path: Path
    llm: LLM
    vars: dict[str, float]
    rules: list[dict[str, Any]]
    match_annotations: list[str] = field(default_factory=list)
    match_kernel: re.Pattern[str] | None = None

    def applies_to(self, graph: OpGraph) -> bool:
        annotations = {op.annotation for op in graph.ops}
        return (all(a in annotations for a in self.match_annotations)
                and (self.match_kernel is None or any(self.match_kernel.search(op.name) for op in graph.ops)))


def work_dir() -> Path:
    return models_dir() / "kernels" / "work"


def evaluate(expr: object, names: dict[str, float], path: Path, where: str, field_: str) -> float:
    """A number, or an expression of + - * / over numbers and names (the LLM spec's fields, the vars)."""
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return float(expr)
    if not isinstance(expr, str):
        raise InputError(f"must be a number or an expression string, got {expr!r}", path=str(path), where=where,
                         field=field_)

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise InputError(f"unknown name '{node.id}' in {expr!r}", path=str(path), where=where, field=field_)
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise InputError(f"only numbers, names and + - * / are allowed: {expr!r}", path=str(path), where=where,
                         field=field_)

    try:
        return ev(ast.parse(expr, mode="eval"))
    except SyntaxError:
        raise InputError(f"not an expression: {expr!r}", path=str(path), where=where, field=field_) from None
    except ZeroDivisionError:
        raise InputError(f"divides by zero: {expr!r}", path=str(path), where=where, field=field_) from None


def _regex(text: object, path: Path, where: str, field_: str) -> re.Pattern[str]:
    if not isinstance(text, str) or not text:
        raise InputError("must be a non-empty regular expression string", path=str(path), where=where, field=field_)
    try:
        return re.compile(text)
    except re.error as exc:
        raise InputError(f"bad regular expression: {exc}", path=str(path), where=where, field=field_) from None


def load_work_table(path: str | Path) -> WorkTable:
    path = Path(path)
    _, data = read_toml(path)
    for key in ("name", "llm"):
        if not isinstance(data.get(key), str):
            raise InputError("missing or not a string", path=str(path), field=key)
    try:
        llm = load_llm(data["llm"])
    except InputError as exc:   # name the work table that asked for it
        raise InputError(exc.detail, path=str(path), field="llm") from None
    names = {k: float(v) for k, v in vars(llm).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    table_vars: dict[str, float] = {}
    for key, expr in (data.get("vars") or {}).items():
        table_vars[key] = names[key] = evaluate(expr, names, path, "[vars]", key)
    rules = []
    for i, raw in enumerate(data.get("rule", [])):
        where = f"rule {i + 1}"
        if not isinstance(raw, dict):
            raise InputError("each [[rule]] must be a table", path=str(path), where=where)
        kinds = [k for k in _KINDS if k in raw]
        if len(kinds) != 1:
            raise InputError(f"needs exactly one of {', '.join(_KINDS)}", path=str(path), where=where)
        unknown = set(raw) - set(_KINDS) - {"annotation", "kernel", "precision", "groups", "tokens", "why"}
        if unknown:
            raise InputError(f"unknown key(s) {sorted(unknown)}", path=str(path), where=where)
        rule = {"annotation": _regex(raw.get("annotation", ".*"), path, where, "annotation"),
                "kernel": _regex(raw.get("kernel"), path, where, "kernel"), "kind": kinds[0],
                "precision": raw.get("precision"), "index": i}
        ev = lambda e, f, where=where: evaluate(e, names, path, where, f)  # noqa: E731
        if kinds[0] == "gemm":
            shapes = raw["gemm"]
            if not isinstance(shapes, list) or not shapes:
                raise InputError("must be a list of [m, n, k] shapes", path=str(path), where=where, field="gemm")
            groups = ev(raw.get("groups", 1), "groups")
            rule["shapes"] = [None if s == SOURCE_RATE else _shape(s, groups, ev, path, where) for s in shapes]
        elif kinds[0] == "attention":
            a = raw["attention"]
            if not isinstance(a, dict) or set(a) != {"flops", "bytes"}:
                raise InputError("must be {flops = ..., bytes = ...}", path=str(path), where=where, field="attention")
            rule["flops"], rule["bytes"] = ev(a["flops"], "attention.flops"), ev(a["bytes"], "attention.bytes")
        elif kinds[0] == "memory":
            rule["bytes"] = ev(raw["memory"], "memory")
        elif kinds[0] == "moe":
            if raw["moe"] not in ("dispatch", "combine"):
                raise InputError("must be 'dispatch' or 'combine'", path=str(path), where=where, field="moe")
            rule["moe"] = (raw["moe"], ev(raw.get("tokens", "tokens"), "tokens"), int(names.get("ep", 0)))
            if rule["moe"][2] < 1:
                raise InputError("a moe rule needs `ep` in [vars]", path=str(path), where=where, field="moe")
        else:
            rule["why"] = str(raw["source_rate"])
        if rule["precision"] is not None and rule["precision"] not in ("bf16", "fp8", "int8"):
            raise InputError("must be bf16, fp8 or int8", path=str(path), where=where, field="precision")
        rules.append(rule)
    match = data.get("match") or {}
    return WorkTable(data["name"], path, llm, table_vars, rules, list(match.get("annotations", [])),
                     _regex(match["kernel"], path, "[match]", "kernel") if "kernel" in match else None)


def _shape(s: object, groups: float, ev, path: Path, where: str) -> tuple[float, float, float, float]:
    if not isinstance(s, list) or len(s) != 3:
        raise InputError(f"each shape must be [m, n, k] or \"{SOURCE_RATE}\", got {s!r}", path=str(path),
                         where=where, field="gemm")
    m, n, k = (ev(x, "gemm") for x in s)
    return (m, n, k, groups)


def bundled_tables() -> list[Path]:
    return sorted(work_dir().glob("*.toml"))


def find_table(graph: OpGraph, choice: str | None) -> WorkTable | None:
    """`choice`: None = the first bundled table that applies to the trace; "none" = no table; else a name of a
    bundled table or a path."""
    if choice == "none":
        return None
    if choice is None:
        for p in bundled_tables():
            table = load_work_table(p)
            if table.applies_to(graph):
                return table
        return None
    path = Path(choice)
    if not path.suffix:
        path = work_dir() / f"{choice}.toml"
        if not path.is_file():
            have = ", ".join(p.stem for p in bundled_tables())
            raise InputError(f"no bundled work table '{choice}' (have: {have}, or give a file path)", field="--work")
    return load_work_table(path)


def assign(table: WorkTable, graph: OpGraph) -> list[OpWork | None]:
    """Per op: its work from the table, or None where no rule matches."""
    out: list[OpWork | None] = [None] * len(graph.ops)
    groups: dict[tuple[int, str, int], list[int]] = {}  # (rule, annotation, layer) -> ops, in order
    for i, op in enumerate(graph.ops):
        for rule in table.rules:
            if rule["kernel"].search(op.name) and rule["annotation"].search(op.annotation):
                if rule["kind"] == "gemm":
                    groups.setdefault((rule["index"], op.annotation, op.layer), []).append(i)
                else:
                    out[i] = _work(rule)
                break
    for (r, _, _), ops in groups.items():
        rule = table.rules[r]
        shapes = rule["shapes"]
        if len(ops) != len(shapes):
            why = f"{len(ops)} launches where the table lists {len(shapes)} shapes"
            for i in ops:
                out[i] = OpWork(SOURCE_RATE, reason=why)
            continue
        for i, shape in zip(ops, shapes):
            out[i] = (OpWork(SOURCE_RATE, reason="shape ambiguous in the table") if shape is None
                      else OpWork("gemm", rule["precision"], shape, flops=2.0 * shape[0] * shape[1] * shape[2]
                                  * shape[3]))
    return out


def _work(rule: dict) -> OpWork:
    kind = rule["kind"]
    if kind == "attention":
        return OpWork("attention", rule["precision"], flops=rule["flops"], bytes_moved=rule["bytes"])
    if kind == "memory":
        return OpWork("memory", bytes_moved=rule["bytes"])
    if kind == "moe":
        return OpWork("moe", rule["precision"], moe=rule["moe"])
    return OpWork(SOURCE_RATE, reason=rule["why"])
