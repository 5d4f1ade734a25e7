"""Open any supported op trace (Kineto / Chakra JSON / native), classify its kernels, return the op graph."""

from __future__ import annotations

import zlib
from pathlib import Path

from harness.errors import InputError
from harness.ops.chakra import load_chakra
from harness.ops.classify import classify, rule_table
from harness.ops.graph import OpGraph
from harness.ops.kineto import load_kineto, open_maybe_gzip
from harness.ops.native import load_native

FORMATS = ("auto", "kineto", "chakra", "native")


def detect_format(path: Path) -> str:
    """Sniff the first few kilobytes: native and Chakra files name themselves near the top."""
    try:
        with open_maybe_gzip(path) as f:
            head = f.read(4096).decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"truncated or corrupt gzip before the first event ({exc})", path=str(path)) from None
    if '"cmbench-op-trace"' in head:
        return "native"
    if '"workload_graph"' in head:
        return "chakra"
    return "kineto"


def load_op_trace(path: str | Path, fmt: str = "auto", rules: tuple[str | Path, ...] = ()) -> OpGraph:
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=str(path))
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "native":
        return load_native(path)
    graph = load_kineto(path) if fmt == "kineto" else load_chakra(path)
    classify(graph, rule_table(rules))
    return graph
