"""Where one embedded database spills: a folder of its own under the configured temp directory.

DuckDB removes its spill files when it closes, but not when its process is killed (an engine
process killed past its time limit left 0.6-0.8 GB behind), and two databases sharing one folder
could name files alike. So each database gets `<temp>/<pid>-<n>`, and making one sweeps away the
folders of processes that are gone.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from pathlib import Path

from loom.engines.pids import alive

log = logging.getLogger(__name__)

_numbers = itertools.count()


def scratch_folder(root: Path) -> Path:
    """A new folder name for one database's spill files (DuckDB makes it, but not its parent,
    when it first spills)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep(root)
    return root / f"{os.getpid()}-{next(_numbers)}"


def _sweep(root: Path) -> None:
    try:
        found = list(root.iterdir())
    except OSError:
        return  # not made yet
    for folder in found:
        owner, _, _ = folder.name.partition("-")
        if owner.isdigit() and not alive(int(owner)):
            log.info("removing spill files left by process %s", owner)
            shutil.rmtree(folder, ignore_errors=True)
