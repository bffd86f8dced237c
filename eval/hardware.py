"""The hardware block of a report: CPU, instruction sets, memory, GPU, library versions."""

from __future__ import annotations

import os
import platform

import psutil
import torch

from compress.hardware import cpu_flags, cpu_name

ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "fma",
    "neon",
    "asimd",
)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), not the machine's count."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def default_threads() -> int:
    """Threads for inference: an OMP/MKL setting if one is given, else the usable CPUs."""
    for name in THREAD_VARIABLES[:2]:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(usable_cpus())


def governor() -> str | None:
    try:
        path = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
        return open(path, encoding="ascii").read().strip()  # noqa: SIM115
    except OSError:
        return None


def hardware(threads: int, load_before: tuple[float, ...] | None = None) -> dict:
    """What the measurements ran on: CPU, the CPUs and threads this process used, the load
    around the run (1-minute load average before and after), memory, GPU."""
    flags = cpu_flags()
    info = {
        "cpu": cpu_name(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "affinity": usable_cpus(),
        "threads": threads,
        "thread_variables": {v: os.environ[v] for v in THREAD_VARIABLES if v in os.environ},
        "governor": governor(),
        "load_before": None if load_before is None else round(load_before[0], 2),
        "load_after": round(os.getloadavg()[0], 2),
        "isa": sorted(f for f in ISA_FLAGS if f in flags),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        try:
            import subprocess

            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info
