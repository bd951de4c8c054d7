"""Portable math kernels (``portable: true``): the same bits on any x86-64 CPU.

:data:`PORTABLE_ENV` is read by the libraries when they load (:mod:`occlufer.stages` sets it
before NumPy or PyTorch are imported); :func:`use` / :func:`pin_torch` set the in-process
switches. Why and what it costs: docs/reproducibility.md, ``benchmarks/isa_bits.py``.
"""

import os
import sys

from occlufer.errors import OccluferError

#: threads for every portable computation, whatever the machine has
PORTABLE_THREADS = 2

#: the libraries' own switches, read when they load
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE,STRICT",  # MKL's SSE2 path, independent of memory alignment
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Nehalem",  # NumPy's BLAS (the dot products of split and metrics)
    "CUDA_VISIBLE_DEVICES": "",  # the CPU computes (``device: auto`` finds no GPU)
    "OMP_NUM_THREADS": str(PORTABLE_THREADS),
    "MKL_NUM_THREADS": str(PORTABLE_THREADS),
    "OPENBLAS_NUM_THREADS": str(PORTABLE_THREADS),
}


def pinned() -> bool:
    """True when this process has :data:`PORTABLE_ENV`."""
    return all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())


def use(portable: bool) -> None:
    """Compute with the portable kernels when ``portable`` (a stage calls it before any work).

    :data:`PORTABLE_ENV` must be set before NumPy or PyTorch load; a process that loaded them
    without it stops with one line. Without ``portable`` the libraries choose for this CPU.
    """
    if not portable:
        return
    if not pinned():
        loaded = [m for m in ("numpy", "torch", "cv2") if m in sys.modules]
        if loaded:
            raise OccluferError(f"portable: true pins the math kernels before {loaded[0]} "
                                "loads, but it is loaded; run the stage as `python -m "
                                "occlufer.stages.<stage>` (as dvc repro does) or set "
                                "portable=false")
        os.environ.update(PORTABLE_ENV)
    import cv2  # cheap to load; the stages that use it load it anyway

    cv2.setUseOptimized(False)
    if "torch" in sys.modules:  # else pinned by devices.resolve_device, before torch computes
        pin_torch()


def pin_torch() -> None:
    """PyTorch's in-process switches of the portable kernels (no environment variable has
    them): :data:`PORTABLE_THREADS` threads, oneDNN and NNPACK off."""
    import torch

    torch.set_num_threads(PORTABLE_THREADS)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)


def describe() -> str:
    """One line for logs: which kernels this process computes with."""
    import torch

    if pinned():
        return (f"portable kernels (ATen {torch.backends.cpu.get_cpu_capability()}, "
                f"{torch.get_num_threads()} threads, oneDNN "
                f"{'on' if torch.backends.mkldnn.enabled else 'off'})")
    return (f"this CPU's kernels (ATen {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads)")
