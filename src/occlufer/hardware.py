"""The machine a run happens on, as zoo model cards and the benchmarks describe it."""

from __future__ import annotations

import os
import platform
from typing import Any


def hardware() -> dict[str, Any]:
    """The machine this runs on: CPU model (``/proc/cpuinfo``), usable cores, memory, GPUs."""
    import torch

    cpu, flags = None, ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu is None:
                    cpu = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = round(int(line.split()[1]) / 2**20, 1)
                    break
    except (OSError, ValueError, IndexError):
        pass
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count())
    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    out: dict[str, Any] = {"cpu": cpu or platform.processor() or platform.machine(),
                           "cores": cores, "memory_gib": memory, "gpus": gpus,
                           "platform": platform.platform(), "python": platform.python_version(),
                           "torch": torch.__version__}
    if flags:
        out["cpu_bf16"] = "avx512_bf16" in flags.split() or "amx_bf16" in flags.split()
    return out
