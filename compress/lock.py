"""A lock that refuses a second run on one artifacts directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path

from compress.errors import LockError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def artifacts_lock(root: Path):
    """Refuse a second concurrent run; take over a lock whose process is gone."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = _lock_owner(lock)
            if (
                owner is not None
                and owner.get("host") == socket.gethostname()
                and not _alive(owner.get("pid", -1))
            ):
                log.warning("removing stale lock of finished process %s", owner.get("pid"))
                lock.unlink(missing_ok=True)
                continue
            raise LockError(
                f"{root} is in use by another run ({owner or 'unknown owner'}). Wait for it to "
                f"finish, use --out for another artifacts root, or delete {lock} if no run is left."
            ) from None
    else:
        raise LockError(f"could not take the lock {lock}")
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, fh)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
