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


def _fresh_python(tmp_path: Path, script: str, *args: str) -> list[str]:
    """The lines ``script`` prints, run in ``tmp_path`` by a new interpreter without the
    portable settings."""
    (tmp_path / "s.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if k not in kernels.PORTABLE_ENV}
    return subprocess.run([sys.executable, str(tmp_path / "s.py"), *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=True).stdout.splitlines()


def test_a_stage_pins_the_kernels_before_numpy_and_torch_load(tmp_path: Path) -> None:
    """Under ``python -m occlufer.stages.<stage>`` with ``portable: true`` in params.yaml, the
    stages package sets :data:`PORTABLE_ENV` when imported: before NumPy or PyTorch load."""
    (tmp_path / "params.yaml").write_text("portable: true\n")
    script = ("import sys\n"
              "if sys.argv[1:] == ['stage']:  # as dvc repro runs a stage\n"
              "    sys.orig_argv = [sys.executable, '-m', 'occlufer.stages.acquire']\n"
              "import occlufer.stages\n"
              "from occlufer import kernels\n"
              "print(kernels.pinned(), 'numpy' in sys.modules, 'torch' in sys.modules)\n")
    assert _fresh_python(tmp_path, script, "stage") == ["True False False"]
    assert _fresh_python(tmp_path, script) == ["False False False"]  # not run as a stage


def test_portable_pins_torch_and_opencv_in_the_process(tmp_path: Path) -> None:
    """``kernels.use(True)`` before NumPy and PyTorch load: the environment, OpenCV's switch,
    and PyTorch's (no environment variable has them) once a stage resolves its device."""
    script = ("import sys\n"
              "from occlufer import kernels\n"
              "kernels.use(True)\n"
              "print('before', kernels.pinned(), 'torch' in sys.modules, flush=True)\n"
              "import cv2, torch\n"
              "from occlufer.devices import resolve_device\n"
              "print('device', resolve_device('auto'))\n"
              "print('after', torch.get_num_threads(), torch.backends.mkldnn.enabled,\n"
              "      torch._C._get_nnpack_enabled(), cv2.useOptimized(),\n"
              "      torch.backends.cpu.get_cpu_capability())\n"
              "print(kernels.describe())\n")
    out = _fresh_python(tmp_path, script)
    assert "before True False" in out, out
    assert "device cpu" in out, out  # CUDA_VISIBLE_DEVICES="": the CPU computes
    assert f"after {kernels.PORTABLE_THREADS} False False False DEFAULT" in out, out
    assert out[-1] == "portable kernels (ATen DEFAULT, 2 threads, oneDNN off)", out


def test_portable_after_numpy_loaded_is_one_line(tmp_path: Path) -> None:
    script = ("import numpy\n"
              "from occlufer import kernels\n"
              "from occlufer.errors import OccluferError\n"
              "try:\n    kernels.use(True)\nexcept OccluferError as exc:\n    print(exc)\n")
    out = _fresh_python(tmp_path, script)
    assert len(out) == 1 and "before numpy loads" in out[0] and "python -m" in out[0], out


def test_portable_rejects_what_it_cannot_pin(make_params) -> None:
    from occlufer.config import ConfigError

    with pytest.raises(ConfigError, match="train.num_threads.*portable=false"):
        make_params("portable=true", "train.num_threads=4")
    with pytest.raises(ConfigError, match="cuda.*portable=false"):
        make_params("portable=true", "train.device=cuda")
    with pytest.raises(ConfigError, match="cpu_amp.*portable=false"):
        make_params("portable=true", "train.cpu_amp=true")
    assert make_params("portable=false", "train.num_threads=4").train.num_threads == 4
