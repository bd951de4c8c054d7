"""Shared helpers for the benchmark scripts: hardware description and repository copies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def hardware() -> str:
    """One line: CPU model, cores, memory, torch threads, GPU if any
    (from :func:`occlufer.hardware.hardware`, the description model cards use)."""
    import torch

    from occlufer.hardware import hardware as machine

    hw = machine()
    mem = f", {hw['memory_gib']:.0f} GiB RAM" if hw["memory_gib"] is not None else ""
    gpu = hw["gpus"][0] if hw["gpus"] else "no GPU"
    return (f"{hw['cpu']}, {hw['cores']} cores{mem}, torch {hw['torch']} "
            f"({torch.get_num_threads()} threads), {gpu}")


def copy_repo(dst: Path) -> Path:
    """Tracked and untracked-not-ignored files of this checkout, as a fresh git repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def mixed_train_arrays(images: np.ndarray, labels: np.ndarray, occlusion: Any):
    """Faces plus one occluded copy each (the patent's 1:1 mix), as ``fit`` takes them."""
    from occlufer.occlusion import OcclusionSpec, occlude_images
    from occlufer.training import TrainArrays, source_rows

    n = len(images)
    ids = np.array([f"f{i}" for i in range(n)])
    occ = occlude_images(images, list(ids), 0, OcclusionSpec.from_cfg(occlusion), workers=1)
    occluded = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    return TrainArrays(images=np.concatenate([images, occ.images]),
                       labels=np.r_[labels, labels].astype(np.int64), occluded=occluded,
                       source=source_rows(np.r_[ids, ids + "#o"], np.r_[ids, ids], occluded),
                       masks=np.concatenate([np.zeros_like(occ.masks), occ.masks]))


def epoch_img_per_s(params: Any, data: Any, device: str = "cpu", **train: Any) -> float:
    """Training img/s of one real epoch of ``occlufer.training.fit`` (evaluation excluded).

    ``params``: composed ``Params`` (model, train, occlusion); ``train``: fields of
    ``params.train`` to replace (e.g. ``augment=...``, ``workers=1``).
    """
    from dataclasses import replace

    import torch

    from occlufer.models import build_model
    from occlufer.training import ValArrays, fit

    cfg = replace(params.train, epochs=1, **train)
    val = ValArrays(data.images[:64], data.labels[:64], np.zeros(64, bool))
    torch.manual_seed(0)
    m = params.model
    model = build_model(m.name, num_classes=7, image_size=48, dropout=m.dropout, width=m.width,
                        blocks=m.blocks)
    result = fit(model, data, val, cfg, m, params.occlusion, 0, torch.device(device))
    return result.history[0].img_per_s


def fer_faces(files: list[Path], size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """FER2013-style ``<class>/*.jpg`` files as (N×size×size uint8 gray, class index by the
    folder name in ``occlufer.labels.CLASSES``)."""
    from PIL import Image

    from occlufer.labels import CLASSES

    images = np.stack([np.asarray(Image.open(f).convert("L").resize((size, size)))
                       for f in files])
    return images, np.array([CLASSES.index(f.parent.name) for f in files], dtype=np.int64)


def fer_folder(folder: Path, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Every ``<class>/*.jpg`` of ``folder`` (classes of ``occlufer.labels.CLASSES``, sorted by
    path) as :func:`fer_faces` gives them; exits with one line when there is none."""
    from occlufer.labels import CLASSES

    files = sorted(f for f in folder.glob("*/*.jpg") if f.parent.name in CLASSES)
    if not files:
        raise SystemExit(f"{folder}: no <class>/*.jpg images; pass --fer")
    return fer_faces(files, size)


GAP_RATIO = 0.25
#: test set -> (occluder, the styles it draws; None = all). ``mask`` is the first two styles, so
#: its column stays comparable with the rows measured before the varied masks (2026-11-29)
TEST_SETS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "block": ("block", None), "sunglasses": ("sunglasses", None),
    "mask": ("mask", ("surgical", "scarf")),
    "mask_varied": ("mask", ("respirator", "cloth", "bandana", "gaiter")),
    "hand": ("hand", None), "hair": ("hair", None), "polygon": ("polygon", None),
    "strokes": ("strokes", None)}


def occluded_test_sets(faces: np.ndarray, spec: Any, seed: int,
                       sets: tuple[str, ...] = tuple(TEST_SETS)) -> dict[str, np.ndarray]:
    """The test faces re-occluded by each test set's occluder at ``GAP_RATIO`` (``validate``'s
    draw, with the set's styles)."""
    from dataclasses import replace

    from occlufer.occlusion import occlude_images

    ids = [f"test-{i}" for i in range(len(faces))]
    out = {}
    for name in sets:
        kind, styles = TEST_SETS[name]
        one = replace(spec.only(kind), ratio=(GAP_RATIO, GAP_RATIO),
                      styles=spec.styles if styles is None else ((kind, styles),))
        out[name] = occlude_images(faces, ids, seed, one, purpose="robustness").images
    return out
