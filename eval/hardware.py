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


def hardware(threads: int) -> dict:
    flags = cpu_flags()
    info = {
        "cpu": cpu_name(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
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
