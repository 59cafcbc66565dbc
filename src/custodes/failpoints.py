"""Failpoints: the process kills itself at a named point in the code, for the crash tests.

`CUSTODES_FAILPOINT=NAME:N` sends SIGKILL to this process the Nth time (counting from 1) the
code passes the point NAME — chosen by event, not by time, so a crash test lands on the same
step on a fast machine and a slow one. Unset (always, in production) a point costs one
comparison. The points:

- `group_commit.before_commit`: the writes of a group commit are done, not yet committed
  (store/group.py): the callers waiting on it have not been answered.
"""

from __future__ import annotations

import os
import signal
import threading

_name, _, _n = os.environ.get("CUSTODES_FAILPOINT", "").partition(":")
_at = int(_n) if _n.isdigit() else 1
_count = 0
_lock = threading.Lock()


def hit(name: str) -> None:
    """Pass the point `name`: the process dies here when the failpoint is set on it."""
    global _count
    if name != _name:
        return
    with _lock:
        _count += 1
        if _count == _at:
            os.kill(os.getpid(), signal.SIGKILL)
