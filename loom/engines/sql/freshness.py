"""What version of its data a local source holds, read from file metadata alone.

The embedded engine copies a source into memory, so it must notice when the source changes under
a running server (`loom data seed --force`, a Delta append, a replaced .sqlite file) and load it
again. Reading the data to find out would cost what loading does; the file system already says:

- a Delta table gains a commit file in `_delta_log/` with every write, which changes that
  folder's modification time;
- a Parquet, CSV, .duckdb or .sqlite file changes its modification time or size (a SQLite
  database in WAL mode also changes its `-wal` file);
- a table added, removed or renamed changes the listing.

`data_version` stats one entry per table (a few dozen system calls for a lakehouse), so the
engine checks it at most once per `FRESH_FOR_S`, not per query.
"""

from __future__ import annotations

import os
from pathlib import Path

FRESH_FOR_S = 1.0  # how long a check stands before the next query looks again

Version = tuple[tuple[str, int, int], ...]
MISSING: Version = (("", -1, -1),)


def data_version(location: Path) -> Version:
    """A value that changes whenever the data behind `location` does (and not on a mere read)."""
    try:
        if location.is_dir():
            return tuple(sorted(_folder(location, location, depth=2)))
        files = (location, Path(f"{location}-wal"))
        return tuple(_stamp(p.name, p) for p in files if p.exists())
    except OSError:  # removed or replaced while we looked: it changed
        return MISSING


def _folder(root: Path, folder: Path, depth: int) -> list[tuple[str, int, int]]:
    stamps = []
    for entry in os.scandir(folder):
        if entry.name.startswith((".", "_")):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            log = path / "_delta_log"
            if log.is_dir():
                stamps.append(_stamp(str(log.relative_to(root)), log))
            elif depth > 1:
                stamps.extend(_folder(root, path, depth - 1))
        else:
            stamps.append(_stamp(str(path.relative_to(root)), path))
    return stamps


def _stamp(name: str, path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (name, stat.st_mtime_ns, stat.st_size)
