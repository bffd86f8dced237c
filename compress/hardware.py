"""What this CPU can do: instruction-set flags and its name (core; the report reads them too)."""

from __future__ import annotations

import functools
import platform


@functools.cache
def _cpu_info() -> dict:
    """py-cpuinfo's answer, read once per process: it starts a subprocess (about a second)
    and the CPU does not change while a run lasts."""
    import cpuinfo

    return cpuinfo.get_cpu_info()


def cpu_flags() -> set[str]:
    try:
        return set(_cpu_info().get("flags", []))
    except Exception:  # cpuinfo can fail in odd containers; flags are informative only
        return set()


def cpu_name() -> str:
    try:
        return _cpu_info().get("brand_raw") or platform.processor()
    except Exception:
        return platform.processor() or platform.machine()
