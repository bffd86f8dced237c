"""What this CPU can do: instruction-set flags and its name (core; the report reads them too)."""

from __future__ import annotations

import platform


def cpu_flags() -> set[str]:
    try:
        import cpuinfo

        return set(cpuinfo.get_cpu_info().get("flags", []))
    except Exception:  # cpuinfo can fail in odd containers; flags are informative only
        return set()


def cpu_name() -> str:
    try:
        import cpuinfo

        return cpuinfo.get_cpu_info().get("brand_raw") or platform.processor()
    except Exception:
        return platform.processor() or platform.machine()
