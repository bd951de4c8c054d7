"""``portable: true``: the stages compute the same bits whatever the CPU offers.

One machine can imitate another by what it lets the libraries see: ATen and oneDNN capped at
SSE4.1, NumPy without its AVX2 / AVX-512 variants, OpenBLAS's Nehalem kernels, one thread
(:data:`OLD_CPU`). The whole tiny pipeline (acquire → occlude → mix_split → train) runs as
stage processes, once on this CPU as it is and once as that older one: with ``portable: true``
the trained weights are the same bits; with ``portable: false`` they differ (so the imitation
reaches the kernels and this test can fail). Which CPUs this has been checked on:
docs/reproducibility.md.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from occlufer import kernels
from occlufer.config import dump_params
from tests.conftest import weights_sha256

#: an SSE4.1 CPU with one core, as far as the libraries can tell
OLD_CPU = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
           "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
           "OPENBLAS_CORETYPE": "Nehalem", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
STAGES = ("acquire", "occlude", "mix_split", "train")


def _run(root: Path, stages: tuple[str, ...], machine: dict[str, str], tracking_uri: str) -> None:
    """Stages as ``dvc repro`` runs them (one process each) in ``root``."""
    env = {k: v for k, v in os.environ.items() if k not in kernels.PORTABLE_ENV}
    env.update(machine, MLFLOW_TRACKING_URI=tracking_uri, PYTHONUNBUFFERED="1")
    for stage in stages:
        proc = subprocess.run([sys.executable, "-m", f"occlufer.stages.{stage}"], cwd=root,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{stage}: {proc.stdout}\n{proc.stderr}"


def _outputs(root: Path) -> dict[str, str]:
    """SHA-256 of the occluded images, the train split, the trained weights and history."""
    return {"occluded": _sha(root / "data" / "occluded" / "images.npy"),
            "split": _sha(root / "data" / "split" / "train" / "images.npy"),
            "weights": weights_sha256(root / "models" / "model.pt"),
            "history": _sha(root / "models" / "history.csv")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_portable_pipeline_gives_the_same_bits_on_an_older_cpu(
        tmp_path: Path, make_params, tracking_store: str) -> None:
    overrides = ("train.log_model=false", "train.augment.fresh_occlusion=true",
                 "train.augment.flip=0.5")
    runs = {}
    for name, machine in (("here", {}), ("old", OLD_CPU)):
        root = runs[name] = tmp_path / name
        root.mkdir()
        dump_params(make_params("portable=true", *overrides).to_dict(), root / "params.yaml")
        _run(root, STAGES, machine, tracking_store)
    here, old = _outputs(runs["here"]), _outputs(runs["old"])
    assert here == old, "portable kernels: every output must be the same bits"

    # the control: the same data, trained with each machine's own kernels
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this CPU has no vector kernels beyond SSE4: nothing to imitate")
    for name, machine in (("here", {}), ("old", OLD_CPU)):
        dump_params(make_params("portable=false", *overrides).to_dict(),
                    runs[name] / "params.yaml")
        _run(runs[name], ("train",), machine, tracking_store)
    assert _outputs(runs["here"])["weights"] != _outputs(runs["old"])["weights"], (
        "this CPU's kernels and the imitated older CPU trained the same bits: the imitation "
        "did not reach the kernels, so the portable case above proves nothing")


def _fresh_python(tmp_path: Path, script: str) -> list[str]:
    """The lines ``script`` prints, run by a new interpreter without the portable settings."""
    (tmp_path / "s.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if k not in kernels.PORTABLE_ENV}
    return subprocess.run([sys.executable, str(tmp_path / "s.py")], env=env,
                          capture_output=True, text=True, timeout=120,
                          check=True).stdout.splitlines()


def test_a_stage_re_executes_itself_with_the_portable_kernels(tmp_path: Path) -> None:
    """``kernels.use(True)`` restarts the process (same id) with :data:`PORTABLE_ENV` once."""
    script = ("import os, sys, torch\n"
              "from occlufer import kernels\n"
              "print('start', os.getpid(), flush=True)\n"
              "kernels.use(True)\n"
              "print('pinned', os.getpid(), kernels.pinned(), torch.get_num_threads(),\n"
              "      torch.backends.mkldnn.enabled, torch.backends.cpu.get_cpu_capability())\n"
              "print(kernels.describe())\n")
    out = _fresh_python(tmp_path, script)
    starts = [line.split()[1] for line in out if line.startswith("start")]
    assert len(starts) == 2 and starts[0] == starts[1], out  # once more, same process
    _, pid, pinned, threads, mkldnn, capability = next(
        line for line in out if line.startswith("pinned")).split()
    assert (pid, pinned, threads, mkldnn, capability) == (
        starts[0], "True", str(kernels.PORTABLE_THREADS), "False", "DEFAULT")
    assert out[-1].startswith("portable kernels (ATen DEFAULT, 2 threads, oneDNN off)")


def test_portable_pins_torch_and_opencv_when_a_stage_imports_them(tmp_path: Path) -> None:
    """A stage that never imports PyTorch does not pay for it: ``kernels.use(True)`` sets
    PyTorch's and OpenCV's switches when they are imported, not before."""
    script = ("import sys\n"
              "from occlufer import kernels\n"
              "kernels.use(True)\n"
              "print('before', 'torch' in sys.modules, 'cv2' in sys.modules, flush=True)\n"
              "import cv2, torch\n"
              "print('after', torch.get_num_threads(), torch.backends.mkldnn.enabled,\n"
              "      cv2.useOptimized())\n")
    out = _fresh_python(tmp_path, script)
    assert "before False False" in out, out
    assert f"after {kernels.PORTABLE_THREADS} False False" in out, out


def test_portable_rejects_what_it_cannot_pin(make_params) -> None:
    from occlufer.config import ConfigError

    with pytest.raises(ConfigError, match="train.num_threads.*portable=false"):
        make_params("portable=true", "train.num_threads=4")
    with pytest.raises(ConfigError, match="cuda.*portable=false"):
        make_params("portable=true", "train.device=cuda")
    with pytest.raises(ConfigError, match="cpu_amp.*portable=false"):
        make_params("portable=true", "train.cpu_amp=true")
    assert make_params("portable=false", "train.num_threads=4").train.num_threads == 4
