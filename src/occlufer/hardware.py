"""The machine a run happens on, as zoo model cards and the benchmarks describe it."""

import contextlib
import os
import platform
from typing import Any


def hardware() -> dict[str, Any]:
    """The machine this runs on: CPU model (``/proc/cpuinfo``), usable cores, memory, GPUs."""
    import torch

    cpu: dict[str, str] = {}  # the first CPU's fields
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            cpu.setdefault(key.strip(), value.strip())
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        memory = None
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count())
    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    out: dict[str, Any] = {"cpu": cpu.get("model name") or platform.processor()
                           or platform.machine(), "cores": cores, "memory_gib": memory,
                           "gpus": gpus, "platform": platform.platform(),
                           "python": platform.python_version(), "torch": torch.__version__}
    if cpu.get("flags"):
        out["cpu_bf16"] = bool({"avx512_bf16", "amx_bf16"} & set(cpu["flags"].split()))
    return out
