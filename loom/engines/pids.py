"""Whether a process is still there, for code that outlives or cleans up after others."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: there, and not ours to judge
    return True
