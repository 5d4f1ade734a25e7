"""The resume store: one small JSON per finished point in OUT/points/<id>.json, each written atomically, so a
killed sweep loses at most the points in flight and a rerun skips every point already there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.outputs import write_text_atomic


class PointStore:
    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir) / "points"

    def path(self, point_id: str) -> Path:
        return self.dir / f"{point_id}.json"

    def get(self, point_id: str) -> dict[str, Any] | None:
        """The saved record, or None when the point has not finished (or its file is unreadable)."""
        try:
            record = json.loads(self.path(point_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("id") == point_id else None

    def put(self, point: dict[str, Any], record: dict[str, Any]) -> None:
        """Save a point's record with the point itself, so the folder alone says what was run."""
        write_text_atomic(self.path(point["id"]), json.dumps({**record, "point": point}, sort_keys=True, indent=1))

    def pending(self, points: list[dict[str, Any]], retry_failed: bool = False) -> list[dict[str, Any]]:
        """Points with no saved record (and, with retry_failed, those whose record is a failure)."""
        out = []
        for p in points:
            r = self.get(p["id"])
            if r is None or (retry_failed and r.get("status") != "ok"):
                out.append(p)
        return out
