"""A lock that refuses a second run on one artifacts directory.

The operating system's advisory lock (``filelock``, ``flock`` on Linux) does the work: it is
released when the holding process ends however it ends (kill -9 included), and an empty or
garbled lock file left by a full disk means nothing. Who holds it is written beside it, for the
message a refused run prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from compress.errors import LockError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def artifacts_lock(root: Path):
    """Hold ``root``'s lock for the block; refuse at once if another process holds it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LockError(f"cannot create the artifacts directory {root}: {exc.strerror}") from exc
    lock = FileLock(root / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockError(
            f"{root} is in use by another run ({_owner(root) or 'owner unknown'}). Wait for it "
            "to finish, or use --out for another artifacts root."
        ) from None
    except OSError as exc:
        raise LockError(f"cannot lock {root / LOCK_NAME}: {exc.strerror}") from exc
    owner = root / f"{LOCK_NAME}.owner"
    with contextlib.suppress(OSError):  # informational only: a full disk must not block the run
        owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    try:
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _owner(root: Path) -> str | None:
    try:
        data = json.loads((root / f"{LOCK_NAME}.owner").read_text())
        return f"pid {data['pid']} on {data['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None
