"""Sweep files (TOML, schema models/schema/sweep.json): read, check, and expand into points.

A point is a plain JSON-able dict: which trace (path, sha256, shaping), which backend and deployments, the knob
values, seed, SLO. Its id is a hash of everything that decides its result (not of the trace's path, nor of the
order it runs in), so results are reused whatever runs them and wherever the files sit.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from harness import __version__
from harness.errors import InputError
from harness.tomlfile import read_toml
from harness.hardware.specfile import first_non_finite, line_of, load_spec, spec_names
from harness.paths import models_dir
from harness.results.slo import Slo, parse_slo
from harness.sim.replay import default_deployment, labels_for
from harness.sweep.knobs import SIM_KNOBS, check_value, is_spec_knob, override_text

DEFAULT_PERCENTILE = 99.0   # a point meets the SLO when its p99 TTFT and TPOT do (unless the SLO names another)
TRACE_OPTIONS = ("format", "strict", "limit", "window", "time_scale", "rate")


@dataclass(frozen=True)
class Backend:
    label: str
    backend: str
    prefill: str
    decode: str
    instances: dict[str, int]                  # default prefill/decode instance counts
    grid: dict[str, list[Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Sweep:
    name: str
    path: str
    seed: int
    slo: Slo
    block_size: int
    traces: list[dict[str, Any]]               # {"name", "path", "sha256", "options"}
    backends: list[Backend]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)


def judged_slo(slo: Slo) -> Slo:
    """Points are judged at a percentile: the SLO's own, else p99."""
    return slo if slo.percentile is not None else Slo(slo.ttft_s, slo.tpot_ms, DEFAULT_PERCENTILE)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except IsADirectoryError:   # the trace loader's words for the same mistakes
        raise InputError("is a directory, not a trace file", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    return h.hexdigest()


def trace_ref(text: str, options: dict[str, Any], base_dir: Path | None = None) -> dict[str, Any]:
    """A trace as points carry it: resolved path (relative to the sweep file, else a bundled name) and sha256."""
    from harness.trace import resolve_trace_path

    candidate = (base_dir / text) if base_dir is not None else None
    path = candidate if candidate is not None and candidate.is_file() else resolve_trace_path(text)
    return {"name": text, "path": str(Path(path).resolve()), "sha256": file_sha256(path),
            "options": {k: options[k] for k in TRACE_OPTIONS if options.get(k) is not None}}


@functools.cache
def code_digest() -> str:
    """sha256 of the harness source and the spec files: a point computed by other code or specs is not reused."""
    import harness

    h = hashlib.sha256(__version__.encode())
    for root, patterns in ((Path(harness.__file__).parent, ("*.py", "*.toml")), (models_dir(), ("*.toml", "*.json"))):
        for f in sorted(p for pattern in patterns for p in root.rglob(pattern)
                        if p.relative_to(root).parts[0] != "_data"):   # an installed wheel's models: below
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def point_id(point: dict[str, Any]) -> str:
    """Stable hash of what decides a point's result: trace content and shaping, backend, knobs, seed, SLO, and the
    code and specs that compute it (the point's "harness": code_digest())."""
    key = {k: v for k, v in point.items() if k not in ("index", "id")}
    key["trace"] = {"sha256": point["trace"]["sha256"], "options": point["trace"]["options"]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def make_point(index: int, trace: dict[str, Any], backend: Backend, knobs: dict[str, Any], seed: int,
               slo: Slo, block_size: int) -> dict[str, Any]:
    point = {"index": index, "trace": trace, "label": backend.label, "backend": backend.backend,
             "prefill": knobs.get("prefill", backend.prefill), "decode": knobs.get("decode", backend.decode),
             "instances": backend.instances, "knobs": dict(knobs), "seed": knobs.get("seed", seed),
             "block_size": block_size, "slo": judged_slo(slo).as_json(), "harness": code_digest()}
    point["id"] = point_id(point)
    return point


def expand(sweep: Sweep) -> list[dict[str, Any]]:
    """Every point: traces x backends x (grid combinations x explicit points), in file order."""
    out = []
    for trace in sweep.traces:
        for b in sweep.backends:
            grid = {**sweep.grid, **b.grid}
            listed = b.points or sweep.points or [{}]
            for combo in itertools.product(*grid.values()):
                for extra in listed:
                    knobs = {**dict(zip(grid, combo)), **extra}
                    out.append(make_point(len(out), trace, b, knobs, sweep.seed, sweep.slo, sweep.block_size))
    return out


# ---- reading and checking the file ----

@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads((models_dir() / "schema" / "sweep.json").read_text(encoding="utf-8"))


def _line(text: str, keys: list[Any]) -> int | None:
    """Line of a key in the sweep file: the first `key =` (bare or quoted, as dotted knob names are) after its
    table's header, else anywhere, else the spec files' finder."""
    names = [str(k) for k in keys if not isinstance(k, int)]
    if names:
        key = re.compile(rf"""^\s*(?:{re.escape(names[-1])}|"{re.escape(names[-1])}"|'{re.escape(names[-1])}')\s*=""")
        lines = text.splitlines()
        header = re.compile(rf"^\s*\[\[?(?:backend\.)?{re.escape(names[0])}\]\]?\s*$") if len(names) > 1 else None
        starts = [i for i, ln in enumerate(lines) if header and header.match(ln)] + [0]
        for start in starts:
            for i in range(start, len(lines)):
                if key.match(lines[i]):
                    return i + 1
    return line_of(text, keys)


def _printable(text: str) -> str:
    """Control characters from the file escaped, so an error stays one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _error(msg: str, path: Path, text: str, keys: list[Any]) -> InputError:
    line = _line(text, keys)
    return InputError(_printable(msg), path=str(path), where=f"line {line}" if line else None,
                      field=_printable(".".join(map(str, keys))) or None)


def _spec_kind(name: str) -> str | None:
    for kind in ("hardware", "deployment", "llm"):
        if name in spec_names(kind):
            return kind
    return None


def _check_knob(name: str, values: list[Any], b: Backend, llm: str, err) -> None:
    """Simulator knobs: value checks. Spec overrides: the path exists and the value passes the spec's schema."""
    if not is_spec_knob(name):
        if name not in SIM_KNOBS:
            raise err(f"unknown knob (simulator knobs: {', '.join(SIM_KNOBS)}; spec overrides are dotted, "
                      f"e.g. decode.ep or hardware.ub.bandwidth)")
        for v in values:
            try:
                check_value(name, v)
            except ValueError as exc:
                raise err(f"{v!r}: {exc}") from None
            if name in ("prefill", "decode"):
                try:
                    spec, _ = load_spec("deployment", v)
                except InputError as exc:
                    raise err(exc.detail) from None
                if (spec["hardware"], spec["phase"]) != (b.backend, name):
                    raise err(f"'{v}' is a {spec['phase']} deployment on {spec['hardware']}, not a {name} "
                              f"deployment on {b.backend}")
        return
    head, _, rest = name.partition(".")
    aliases = {"prefill": ("deployment", b.prefill), "decode": ("deployment", b.decode),
               "hardware": ("hardware", b.backend), "llm": ("llm", llm)}
    if head in aliases:
        kind, spec = aliases[head]
    else:
        kind, spec = _spec_kind(head), head
        if spec not in (b.backend, b.prefill, b.decode, llm):
            raise err(f"'{head}' is not a spec backend '{b.label}' uses ({b.backend}, {b.prefill}, {b.decode}, "
                      f"{llm}); use the aliases prefill., decode., hardware., llm. or move it to that backend")
    for v in values:
        try:
            check_value(name, v)
            load_spec(kind, spec, [(rest, override_text(v))])
        except ValueError as exc:
            raise err(f"{v!r}: {exc}") from None
        except InputError as exc:
            raise err(f"{v!r} on {kind} '{spec}': {exc.detail}") from None


def _grid(raw: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: (v if isinstance(v, list) else [v]) for k, v in raw.items()}


def _backend(raw: dict[str, Any], label: str, path: Path, text: str, i: int) -> Backend:
    name = raw["backend"]
    if name not in spec_names("hardware"):
        raise _error(f"unknown hardware '{name}' (available: {', '.join(spec_names('hardware'))})", path, text,
                     ["backend", "backend"])
    try:
        d = default_deployment(name)
    except InputError:
        if "prefill" not in raw or "decode" not in raw:
            raise _error(f"no default deployment for backend '{name}'; give prefill and decode", path, text,
                         ["backend", "backend"]) from None
        d = {"prefill": raw["prefill"], "decode": raw["decode"], "prefill_instances": 1, "decode_instances": 1}
    b = Backend(label=label, backend=name, prefill=raw.get("prefill", d["prefill"]),
                decode=raw.get("decode", d["decode"]),
                instances={"prefill_instances": d["prefill_instances"], "decode_instances": d["decode_instances"]},
                grid=_grid(raw.get("grid", {})), points=list(raw.get("points", [])))
    for phase in ("prefill", "decode"):
        dep = getattr(b, phase)
        try:
            spec, _ = load_spec("deployment", dep)
        except InputError as exc:
            raise _error(f"backend {i + 1}: {exc.detail}", path, text, ["backend", phase]) from None
        if spec["hardware"] != name or spec["phase"] != phase:
            raise _error(f"deployment '{dep}' is a {spec['phase']} deployment on {spec['hardware']}, not a {phase} "
                         f"deployment on {name}", path, text, ["backend", phase])
    return b


def _check_points(grid: dict[str, list[Any]], points: list[dict[str, Any]], where: str, path: Path, text: str,
                  b: Backend, llm: str) -> None:
    for key, values in grid.items():
        _check_knob(key, values, b, llm, lambda m, k=key: _error(f"{where}: {m}", path, text, ["grid", k]))
    for j, entry in enumerate(points):
        for key, value in entry.items():
            if key in grid:
                raise _error(f"{where}: point {j + 1} sets '{key}', which the grid also sets", path, text,
                             ["points", key])
            _check_knob(key, [value], b, llm, lambda m, k=key: _error(f"{where}: point {j + 1}: {m}", path, text,
                                                                        ["points", k]))
    keys = set(grid) | {k for e in points for k in e}
    if "prefill_per_decode" in keys and "prefill_instances" in keys:
        raise _error(f"{where}: give prefill_instances or prefill_per_decode, not both", path, text,
                     ["grid", "prefill_per_decode"])


def _meant_branch(error: Any) -> Any:
    """Among a oneOf's failed branches, the first error of the one the value meant: not one whose type the value is
    not (a table given where a list may be), then the one with the fewest errors. It was "... is not valid under any
    of the given schemas", naming no field."""
    branches: dict[Any, list] = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    here = list(error.absolute_path)

    def key(errs: list) -> tuple[bool, int]:
        return any(e.validator == "type" and list(e.absolute_path) == here for e in errs), len(errs)

    errs = min(branches.values(), key=key)
    return min(errs, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; InputError (file, line, field) on anything wrong. Resolves and hashes traces."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such sweep file", path=str(path))
    text, raw = read_toml(path)
    errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(raw), key=lambda e: list(map(str, e.path)))
    if errors:
        e = errors[0]
        while e.context:   # oneOf (one trace or a list; a value or a list): the branch the value meant
            e = _meant_branch(e)
        keys = list(e.absolute_path)
        msg = e.message
        if e.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)'", e.message)
            keys, msg = keys + extra[:1], "unknown field (a typo?)"
        raise _error(msg, path, text, keys)
    bad = first_non_finite(raw, [])
    if bad is not None:
        raise _error("not a finite number", path, text, bad)
    slo = parse_slo(raw.get("slo", "ttft=2s,tpot=50ms"), option=f"{path}: field 'slo'")
    traces_raw = raw["trace"] if isinstance(raw["trace"], list) else [raw["trace"]]
    traces = []
    from harness.sweep.worker import load_point_trace  # (worker imports this module)
    for t in traces_raw:
        try:
            traces.append(trace_ref(t["path"], t, path.parent))
            load_point_trace(traces[-1])  # a bad trace is this file's error now, not a failure of every point
        except InputError as exc:
            raise _error(f"{exc}", path, text, ["trace", "path"]) from None
    labels = labels_for([b.get("label", b["backend"]) for b in raw["backend"]])
    backends = [_backend(b, label, path, text, i) for i, (b, label) in enumerate(zip(raw["backend"], labels))]
    grid, points = _grid(raw.get("grid", {})), list(raw.get("points", []))
    for b in backends:
        llm = load_spec("deployment", b.decode)[0]["llm"]
        _check_points({**grid, **b.grid}, b.points or points, f"backend '{b.label}'", path, text, b, llm)
    return Sweep(name=raw.get("name", path.stem), path=str(path), seed=raw.get("seed", 0), slo=slo,
                 block_size=raw.get("block_size", 512), traces=traces, backends=backends, grid=grid, points=points)
