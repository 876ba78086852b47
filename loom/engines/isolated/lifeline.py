"""What a child process sets up about itself before it builds its engine: it names itself, bounds
its address space, and ends when its owner (the server) ends.

Its parent in the process tree is the fork server, not the server, so Linux's parent-death signal
is no guide: a child once outlived a server killed with SIGKILL by 18 s, running its query past any
time limit, and a child stuck in a hung load outlived its CLI for good. The child watches the owner
itself, through a pidfd (readable when that process ends), or by polling where there is none.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import threading
import time

from loom.engines.pids import alive

PR_SET_NAME = 15
M_ARENA_MAX = -8
ARENAS = 2  # glibc would reserve a 64 MB arena per thread, all of it counted as address space
POLL_S = 0.5


def name_process(label: str) -> None:
    """`loom-e:<label>` as the process's name in ps and top (Linux keeps 15 bytes)."""
    _libc_call("prctl", PR_SET_NAME, ctypes.c_char_p(f"loom-e:{label}".encode()[:15]), 0, 0, 0)


def bound_address_space(extra: int) -> None:
    """Let the process's virtual memory grow by at most `extra` bytes from what it holds now (the
    runtime and the engines' libraries). Few allocator arenas, so that reservations count little."""
    _libc_call("mallopt", M_ARENA_MAX, ARENAS)
    with open("/proc/self/statm") as statm:
        held = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (held + extra, held + extra))


def end_with(owner: int) -> None:
    """End this process, at once, when process `owner` ends (a daemon thread watches)."""
    threading.Thread(target=_watch, args=(owner,), name="owner-watch", daemon=True).start()


def _watch(owner: int) -> None:
    try:
        pidfd = os.pidfd_open(owner)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        select.select([pidfd], [], [])
    else:
        while alive(owner):
            time.sleep(POLL_S)
    os._exit(0)


def _libc_call(name: str, *args: object) -> None:
    try:
        getattr(ctypes.CDLL(None), name)(*args)
    except (OSError, AttributeError):  # not glibc / not Linux: the bound is then the OS's own
        pass
