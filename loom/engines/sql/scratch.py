"""Where one embedded database spills: a folder of its own under the configured temp directory.

DuckDB removes its spill files when it closes, but not when its process is killed (an engine
process killed past its time limit left 0.6-0.8 GB behind), and two databases sharing one folder
could name files alike. So each process gets `<temp>/<pid>-<token>/`, holding an exclusive lock on
its `.lock` file for as long as it lives, and each database in it a numbered folder. Making one
sweeps away the folders whose lock can be taken: their process is gone. A lock, not the pid: a
server in another PID namespace (another container on the same volume) would look dead to
`kill(pid, 0)` while it spills. Anything else under the temp directory is left alone.
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

LOCK = ".lock"

_numbers = itertools.count()
_mine: dict[Path, tuple[Path, int]] = {}  # temp root → (this process's folder, its locked fd)
_lock = threading.Lock()


def scratch_folder(root: Path) -> Path:
    """A new folder for one database's spill files (DuckDB makes it, not its parents, when it
    first spills)."""
    with _lock:
        held = _mine.get(root)
        if held is None or held[0].parent != root or os.getpid() != _owner(held):
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            _sweep(root)
            held = _mine[root] = _claim(root)
    return held[0] / str(next(_numbers))


def release_scratch() -> None:
    """Remove this process's spill folders: called as it exits (an engine process exits without
    closing its databases, and DuckDB then leaves its files behind)."""
    with _lock:
        for folder, fd in _mine.values():
            if _owner((folder, fd)) == os.getpid():
                shutil.rmtree(folder, ignore_errors=True)
        _mine.clear()


def _owner(held: tuple[Path, int]) -> int:
    return int(held[0].name.partition("-")[0])


def _claim(root: Path) -> tuple[Path, int]:
    folder = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=0o700)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until this process ends
    atexit.register(release_scratch)
    return folder, fd


def _sweep(root: Path) -> None:
    """Remove the folders of processes that are gone; never fail a load over it."""
    try:
        found = list(root.iterdir())
    except OSError:
        return
    for folder in found:
        try:
            if not folder.is_symlink() and folder.is_dir() and _abandoned(folder):
                log.info("removing spill files a process that is gone left in %s", folder.name)
                shutil.rmtree(folder, ignore_errors=True)
        except OSError as e:
            log.warning("could not look at spill folder %s: %s", folder.name, e)


def _abandoned(folder: Path) -> bool:
    """Whether the folder's lock can be taken (its owner is gone); a folder without one is not ours."""
    lock = folder / LOCK
    if lock.is_symlink() or not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return True
