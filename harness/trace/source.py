"""Opening a trace file: gzip transparently, the container (CSV / JSON Lines / Parquet) sniffed from content."""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class Source:
    """A trace file's bytes (or its path when uncompressed, so polars can memory-map it) and container kind."""

    path: Path
    data: Path | bytes        # what polars reads: the path itself, or the decompressed bytes
    container: str            # "csv" | "jsonl" | "parquet"

    def reader(self) -> Path | io.BytesIO:
        return self.data if isinstance(self.data, Path) else io.BytesIO(self.data)

    def text_lines(self) -> list[str]:
        """All lines as text; only used on the error path to locate a bad line exactly."""
        raw = self.data.read_bytes() if isinstance(self.data, Path) else self.data
        return raw.decode("utf-8", errors="replace").splitlines()


def open_source(path: Path) -> Source:
    """Read enough of `path` to know how to parse it; decompress gzip fully (a broken stream fails here)."""
    if path.exists() and not path.is_file() and not path.is_dir():   # a pipe (/dev/stdin) or a device: read twice,
        raise InputError("not a regular file (a pipe or a device); save the trace to a file and give its path",
                         path=str(path))                       # a pipe came out empty, /dev/zero as one huge column
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except IsADirectoryError:
        raise InputError("is a directory, not a trace file", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    data: Path | bytes = path
    if head.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"broken gzip stream ({exc})", path=str(path)) from None
        head = data[:4096]
    return Source(path=path, data=data, container=_container(head, path))


def _container(head: bytes, path: Path) -> str:
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if len(head) > 262 and head[257:262] == b"ustar":  # a tar archive (POSIX header magic at offset 257)
        raise InputError("a tar archive, not a request trace; ServeGen statistics (per-client rates and length "
                         "distributions) make traces with `bench trace synth OUT --servegen FILE`", path=str(path))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):   # UTF-16 (or -32) byte-order mark: columns came out garbled
        raise InputError("UTF-16 or UTF-32 text (it starts with a byte-order mark); traces are read as UTF-8: save "
                         "it as UTF-8", path=str(path))
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text:
        raise InputError("empty file: no header and no requests", path=str(path))
    if text.startswith(b"["):   # read as CSV it was an unknown format, or a column given twice, of JSON fragments
        raise InputError("a JSON array, not JSON Lines: a trace in JSON has one request object per line (.jsonl)",
                         path=str(path))
    return "jsonl" if text.startswith(b"{") else "csv"
