"""The previous evaluation kept: ``metrics.json`` moved to ``eval/history/`` when a new one is
written, and the latencies that moved beyond their spread since named."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from compress.eval.schema import Metrics, rows_by_key

log = logging.getLogger(__name__)


def keep_previous(path: Path, new: Metrics) -> list[str]:
    """Move the previous ``metrics.json`` to ``eval/history/`` (stamped) and list the latencies
    that moved beyond their spread since (10% or the larger block spread)."""
    if not path.exists():
        return []
    try:
        old = Metrics.read(path)
    except (OSError, ValueError) as exc:
        log.warning("previous %s unreadable (%s); kept as it is in eval/history", path, exc)
        old = None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
    (path.parent / "history").mkdir(exist_ok=True)
    os.replace(path, path.parent / "history" / f"metrics-{stamp}.json")
    if old is None:
        return []
    before = rows_by_key(old.rows)
    changes = []
    for row in new.rows:
        prev = before.get(row.key)
        for b, lat in row.latency_ms.items():
            if prev is None or b not in prev.latency_ms:
                continue
            was = prev.latency_ms[b]
            bound = max(0.10, lat.block_spread, was.block_spread)
            if was.p50 and abs(lat.p50 - was.p50) / was.p50 > bound:
                changes.append(
                    f"{row.label}, {b}: p50 {was.p50:.1f} -> "
                    f"{lat.p50:.1f} ms since {stamp}, beyond the spread ({bound:.0%})"
                )
    for change in changes:
        log.warning("latency moved: %s", change)
    return changes
