"""Importer for Chakra execution traces in their JSON form (`{"workload_graph": [{Id, Name, NodeType, runtime,
data_deps, ctrlDeps, is_cpu_op}]}`).

The device op graph keeps the GPU nodes: compute nodes on stream "compute", communication nodes
(NodeType 7) on stream "comm", each in Id order as the ET feeder issues them. A GPU node depends on its
nearest GPU ancestors through data and control deps, looking through CPU nodes (host ops are not re-timed).
Chakra JSON carries no timestamps, so there is no recorded timeline to check an identity replay against.
Deps on Ids not in the file are dropped and counted (`meta["dangling_deps"]`); duplicate Ids and self-deps are
refused.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import InputError
from harness.ops.graph import Op, OpGraph
from harness.ops.kineto import MAX_ABS
from harness.ops.native import read_json

COMM_NODE = 7


def load_chakra(path: str | Path) -> OpGraph:
    path = Path(path)
    data = read_json(path)
    nodes = data.get("workload_graph") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise InputError("not a Chakra JSON trace: no 'workload_graph' list", path=str(path))
    by_id: dict[int, dict] = {}
    position: dict[int, int] = {}
    for i, node in enumerate(nodes):
        where = f"node {i}"
        if not isinstance(node, dict):
            raise InputError("node is not a JSON object", path=str(path), where=where)
        for key in ("Id", "Name", "NodeType"):
            if key not in node:
                raise InputError("missing", path=str(path), where=where, field=key)
        for key, ok, what in (("Id", _is_int, "an integer"), ("NodeType", _is_int, "an integer"),
                              ("Name", lambda v: isinstance(v, str), "a string"),
                              ("is_cpu_op", lambda v: isinstance(v, bool), "true or false")):
            if key in node and not ok(node[key]):
                raise InputError(f"must be {what}, got {node[key]!r:.40}", path=str(path), where=where, field=key)
        runtime = node.get("runtime", 0)
        if isinstance(runtime, bool) or not isinstance(runtime, (int, float)) or not 0 <= runtime <= MAX_ABS:
            raise InputError(f"must be a number from 0 to {MAX_ABS:.0e} (microseconds), got {runtime!r:.40}",
                             path=str(path), where=where, field="runtime")
        nid = node["Id"]
        if nid in by_id:
            raise InputError(f"Id {nid} is also node {position[nid]}'s", path=str(path), where=where, field="Id")
        by_id[nid], position[nid] = node, i
    parents: dict[int, list[int]] = {}
    dangling = 0
    for nid, node in by_id.items():
        where = f"node {position[nid]} (Id {nid})"
        parents[nid] = []
        for key in ("data_deps", "ctrlDeps"):
            deps = node.get(key, [])
            if not isinstance(deps, list) or not all(map(_is_int, deps)):
                raise InputError(f"must be a list of node Ids, got {deps!r:.40}", path=str(path), where=where,
                                 field=key)
            if nid in deps:
                raise InputError("depends on itself", path=str(path), where=where, field=key)
            # A file cut out of a larger trace (Chakra's own small_chakra.0.json) keeps deps on nodes left
            # behind: nothing in the file can wait on them, so they are dropped and counted.
            kept = [d for d in deps if d in by_id]
            dangling += len(deps) - len(kept)
            parents[nid] += kept
    gpu_ids = sorted(i for i, n in by_id.items() if not n.get("is_cpu_op", True))
    if not gpu_ids:
        raise InputError("no GPU nodes (is_cpu_op false) in this Chakra trace", path=str(path))
    index = {nid: k for k, nid in enumerate(gpu_ids)}
    memo: dict[int, frozenset[int]] = {}

    def gpu_ancestors(nid: int) -> frozenset[int]:
        # Iterative DFS over CPU nodes; a GPU parent stops the walk.
        if nid in memo:
            return memo[nid]
        found: set[int] = set()
        stack, seen = [nid], {nid}
        while stack:
            for parent in parents[stack.pop()]:
                if parent in seen:
                    continue
                seen.add(parent)
                if parent in index:
                    found.add(index[parent])
                else:
                    stack.append(parent)
        memo[nid] = frozenset(found)
        return memo[nid]

    ops = []
    for nid in gpu_ids:
        node = by_id[nid]
        deps = sorted(gpu_ancestors(nid))
        ops.append(Op(name=str(node["Name"]), stream="comm" if node["NodeType"] == COMM_NODE else "compute",
                      duration_s=float(node.get("runtime", 0)) * 1e-6, deps=deps))
    return OpGraph(ops, {"format": "chakra-json", "source": str(path), "cpu_nodes": len(by_id) - len(gpu_ids),
                         "dangling_deps": dangling,
                         "op_labels": [f"node Id {nid}" for nid in gpu_ids]})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
