"""Open any supported op trace (Kineto / Chakra JSON / native), classify its kernels, return the op graph."""

from __future__ import annotations

import re
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
    """Sniff the first few kilobytes: native and Chakra files name themselves near the top. A PyTorch host
    execution trace and a Chakra protobuf trace are named and refused."""
    try:
        with open_maybe_gzip(path) as f:
            raw = f.read(4096)
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"truncated or corrupt gzip before the first event ({exc})", path=str(path)) from None
    head = raw.decode("utf-8", errors="replace")
    if '"cmbench-op-trace"' in head:
        return "native"
    if '"workload_graph"' in head:
        return "chakra"
    # Chakra's other encodings, which Kineto's reader would only call "not a Chrome trace"
    if head.lstrip().startswith("{") and '"nodes"' in head and '"schema"' in head:
        schema = re.search(r'"schema"\s*:\s*"([^"]{1,40})"', head)
        raise InputError(f"a PyTorch host execution trace (JSON with 'nodes' and 'schema'"
                         f"{f', schema {schema[1]}' if schema else ''}), not supported: convert it with Chakra's "
                         "tools to Chakra JSON ({\"workload_graph\": [...]})", path=str(path))
    if path.name.endswith((".et", ".et.gz")) or (raw.lstrip()[:1] not in (b"{", b"[") and b"schema" in raw[:64]):
        raise InputError("a Chakra execution trace in protobuf (.et), not supported: convert it with Chakra's tools "
                         "to Chakra JSON ({\"workload_graph\": [...]})", path=str(path))
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
