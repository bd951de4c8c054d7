"""Which math kernels the stages compute with: this CPU's fastest, or portable ones.

PyTorch, MKL, oneDNN, NumPy and OpenCV each pick their kernels at run time by the CPU's
instruction set (SSE4, AVX2, AVX-512, AMX), and PyTorch's thread count sets the order of
parallel sums; so the same parameters and data give other bits on another CPU
(docs/reproducibility.md). With ``portable: true`` (the default config) every stage runs with
one fixed choice instead, the same on any x86-64 CPU:

- :data:`PORTABLE_ENV`, read by the libraries when they start, so :func:`use` re-executes the
  stage once with it (``os.execve``; the process keeps its id, arguments and other variables):
  ATen's portable kernels, oneDNN capped at SSE4.1, MKL's conditional numerical
  reproducibility on its SSE2 code path (``COMPATIBLE``, ``STRICT``: independent of memory
  alignment), NumPy without its AVX2 / AVX-512 variants and with OpenBLAS's Nehalem kernels,
  :data:`PORTABLE_THREADS` threads for OpenMP, MKL and OpenBLAS, and no GPU;
- in the process: ``torch.set_num_threads(PORTABLE_THREADS)``, oneDNN and NNPACK off (their
  blocking follows the CPU's cache sizes), so convolutions go through ATen and MKL; OpenCV's
  optimised (AVX2 / AVX-512) code paths off. Each is set when its library is imported (now,
  if it already is): a stage that never imports PyTorch (occlude, mix_split) does not pay the
  seconds its import takes.

The price is speed (``benchmarks/pipeline_time.py``, ``benchmarks/isa_bits.py``); the recipes
that train for long (``fer2013_cpu``, ``fer2013_best``, ``fer2013_gpu``, ``finetune_folder``)
and the quick ``smoke`` check set ``portable: false``; their figures name the CPU they ran on.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: threads for every portable computation, whatever the machine has
PORTABLE_THREADS = 2

#: the libraries' own switches, set before they load
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Nehalem",  # NumPy's BLAS (the dot products of split and metrics)
    "CUDA_VISIBLE_DEVICES": "",  # the CPU computes (``device: auto`` finds no GPU)
    "OMP_NUM_THREADS": str(PORTABLE_THREADS),
    "MKL_NUM_THREADS": str(PORTABLE_THREADS),
    "OPENBLAS_NUM_THREADS": str(PORTABLE_THREADS),
}


def pinned() -> bool:
    """True when this process started with :data:`PORTABLE_ENV`."""
    return all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())


def use(portable: bool) -> None:
    """Make this stage process compute with the portable kernels when ``portable``.

    Re-executes the process with :data:`PORTABLE_ENV` unless it already has it (so call it
    before any work, with nothing to lose), then switches off the cache-tuned backends.
    Without ``portable`` it does nothing: the libraries choose for this CPU.
    """
    if not portable:
        return
    if not pinned():
        reexec()
    when_imported("torch", _pin_torch)
    when_imported("cv2", _pin_cv2)


def _pin_torch(torch: Any) -> None:
    torch.set_num_threads(PORTABLE_THREADS)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)


def _pin_cv2(cv2: Any) -> None:
    cv2.setUseOptimized(False)


def when_imported(name: str, then: Callable[[ModuleType], None]) -> None:
    """Call ``then(module)`` once the top-level module ``name`` is imported: now if it is,
    else right after its import completes (and before the importer gets it)."""
    if name in sys.modules:
        then(sys.modules[name])
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, then))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` with the other finders, and runs ``then`` after the module executes."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and find_spec below must not find this finder
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run, then = spec.loader.exec_module, self.then

        def exec_module(module: ModuleType) -> None:
            run(module)
            then(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def reexec() -> None:
    """Replace this process by itself (same id and arguments) with :data:`PORTABLE_ENV`."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
              {**os.environ, **PORTABLE_ENV})


def describe() -> str:
    """One line for logs: which kernels this process computes with."""
    import torch

    if pinned():
        return (f"portable kernels (ATen {torch.backends.cpu.get_cpu_capability()}, "
                f"{torch.get_num_threads()} threads, oneDNN "
                f"{'on' if torch.backends.mkldnn.enabled else 'off'})")
    return (f"this CPU's kernels (ATen {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads)")
