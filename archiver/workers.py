"""Who is doing the work: an id for each process that claims assets or writes journal segments
(`host:pid:random`), and whether a claim's holder on this host is gone. No I/O but asking the OS.
"""

from __future__ import annotations

import os
import socket
import uuid


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_dead_local_worker(worker: str) -> bool:
    """True for a claim holder that ran on this host and whose process no longer exists."""
    host, _, rest = worker.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False
