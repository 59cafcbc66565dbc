"""Failpoints: the process kills itself at a named point in the code, for the crash tests.

`CUSTODES_FAILPOINT=NAME:N` sends SIGKILL to this process the Nth time (counting from 1) the
code passes the point NAME — chosen by event, not by time, so a crash test lands on the same
step on a fast machine and a slow one. `NAME` may be `any`: the Nth pass of any point.
`CUSTODES_FAILPOINT=count:FILE` kills nothing and appends each point's name to FILE as it
is passed (one line a pass), so a campaign learns how many points a command passes before it
kills at each (bench/crash.py). Unset (always, in production) a point costs one comparison,
and the store's commit listener is not even registered. The points:

- `commit`: a store transaction is about to commit (SQLAlchemy's engine `commit` event,
  store/engine.py): its writes are done, none is durable.
- `ledger.append`: ledger leaves are written in the caller's transaction, not yet committed
  (ledger/log.py).
- `file.write`: a file's bytes are staged whole in a temporary file beside their name, not yet
  in place (store/files.py).
- `group_commit.before_commit`: the writes of a group commit are done, not yet committed
  (store/group.py): the callers waiting on it have not been answered.
"""

from __future__ import annotations

import os
import signal
import threading

from custodes import settings

_name, _, _arg = settings.text("CUSTODES_FAILPOINT").partition(":")
ACTIVE = bool(_name)
_counting = _name == "count"
_at = int(_arg) if _arg.isdigit() else 1
_count = 0
_lock = threading.Lock()


def hit(name: str) -> None:
    """Pass the point `name`: the process dies here when the failpoint is set on it."""
    global _count
    if not ACTIVE or (name != _name and _name not in ("any", "count")):
        return
    with _lock:
        if _counting:
            with open(_arg, "a") as fh:  # one short line: appends land whole
                fh.write(name + "\n")
            return
        _count += 1
        if _count == _at:
            os.kill(os.getpid(), signal.SIGKILL)
