"""The native op-trace format (JSON; schema in traces/schema/op-trace.schema.json): read, validate, write."""

from __future__ import annotations

import gzip
import json
import zlib
from functools import cache
from pathlib import Path

import jsonschema

from harness.errors import InputError
from harness.jsonfile import loads_finite
from harness.ops.graph import Op, OpGraph
from harness.ops.kineto import MAX_ABS, open_maybe_gzip
from harness.outputs import atomic_path, write_text_atomic
from harness.paths import traces_dir

FORMAT = "cmbench-op-trace"
_OPTIONAL = ("flops", "bytes_moved", "bytes_sent", "group_ranks", "annotation", "layer", "classified", "sm_share",
             "precision", "rows", "kernel", "moe")
_GEMM = ("m", "n", "k", "groups")  # an op's "gemm" object; the op graph holds it as a tuple


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((traces_dir() / "schema" / "op-trace.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def to_dict(graph: OpGraph) -> dict:
    ops = []
    for i, op in enumerate(graph.ops):
        row = {"id": i, "name": op.name, "category": op.category, "stream": op.stream,
               "duration_us": op.duration_s * 1e6}
        if op.start_s is not None:
            row["start_us"] = op.start_s * 1e6
        if op.deps:
            row["deps"] = sorted(op.deps)
        defaults = Op("", "", 0.0)
        for key in _OPTIONAL:
            value = getattr(op, key)
            if value != getattr(defaults, key):
                row[key] = value
        if op.gemm is not None:
            m, n, k, groups = op.gemm
            row["gemm"] = {"m": m, "n": n, "k": k, "groups": int(groups)}
        ops.append(row)
    meta = dict(graph.meta)
    if any(op.release_s is not None for op in graph.ops):
        # CPU launch release times ride in meta (the op schema has no field for them): one per op, null if none.
        meta["release_us"] = [None if op.release_s is None else op.release_s * 1e6 for op in graph.ops]
    return {"format": FORMAT, "version": 1, "meta": meta, "ops": ops}


def save_native(graph: OpGraph, path: str | Path) -> None:
    """JSON, gzip-compressed when the name ends in .gz (mtime 0: the same graph gives the same bytes)."""
    try:
        text = json.dumps(to_dict(graph), separators=(",", ":"), allow_nan=False) + "\n"
    except ValueError:  # JSON has no NaN or infinity, and no reader of ours would take one
        raise InputError("the op graph holds a non-finite number (NaN or infinity); not written",
                         path=str(path)) from None
    late = max((abs(t) * 1e6 for op in graph.ops for t in (op.duration_s, op.start_s, op.release_s) if t is not None),
               default=0.0)
    if late > MAX_ABS:   # load_native (and Kineto) refuse such times: the file could not be replayed
        raise InputError(f"the op graph holds a time of {late:.3g} us, beyond the {MAX_ABS:.0e} us an op trace may "
                         "hold; not written", path=str(path))
    if str(path).endswith(".gz"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        write_text_atomic(path, text)


def from_dict(data: object, source: str = "op trace") -> OpGraph:
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        parts = list(error.absolute_path)
        if len(parts) >= 2 and parts[0] == "ops":
            raise InputError(error.message, path=source, where=f"op {parts[1]}",
                             field=str(parts[2]) if len(parts) > 2 else None)
        raise InputError(error.message, path=source, where=where or None)
    ops = []
    n = len(data["ops"])
    if n == 0:  # as Kineto and Chakra files without GPU ops are: there is nothing to replay
        raise InputError("no ops (the list is empty)", path=source, field="ops")
    for i, row in enumerate(data["ops"]):
        if row["id"] != i:
            raise InputError(f"must equal the op's position {i}", path=source, where=f"op {i}", field="id")
        deps = [int(d) for d in row.get("deps", [])]   # the schema's integers include 1.0: indices from here on
        bad = [d for d in deps if d >= n or d == i]
        if bad:
            raise InputError(f"refers to unknown or self op id {bad[0]}", path=source, where=f"op {i}", field="deps")
        start = row.get("start_us")
        op = Op(name=row["name"], stream=row["stream"], duration_s=row["duration_us"] * 1e-6,
                category=row["category"], start_s=None if start is None else start * 1e-6, deps=deps)
        for key in _OPTIONAL:
            if key in row:
                setattr(op, key, row[key])
        if "gemm" in row:
            op.gemm = tuple(float(row["gemm"].get(key, 1)) for key in _GEMM)
        ops.append(op)
    meta = dict(data.get("meta") or {})
    meta["source"] = source
    release = meta.pop("release_us", None)
    if release is not None:
        if not isinstance(release, list) or len(release) != n:
            raise InputError(f"must be a list of {n} numbers or nulls (one per op)", path=source, where="meta",
                             field="release_us")
        for i, r in enumerate(release):
            if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or abs(r) > MAX_ABS):
                raise InputError(f"must be a number of magnitude at most {MAX_ABS:.0e} or null, got {r!r}", path=source,
                                 where=f"meta release_us {i}", field="release_us")
            ops[i].release_s = None if r is None else r * 1e-6
    return OpGraph(ops, meta)


def read_json(path: Path) -> object:
    """A JSON file, plain or gzipped, read whole: bad bytes, JSON, numbers or nesting are one InputError."""
    try:
        with open_maybe_gzip(path) as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=str(path)) from None
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"truncated or corrupt gzip ({exc})", path=str(path)) from None
    return loads_finite(text, str(path))


def load_native(path: str | Path) -> OpGraph:
    return from_dict(read_json(Path(path)), str(path))
