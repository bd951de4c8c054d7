"""S100 acquire: faces into ``data/acquired`` (image store + preview + rejects + summary)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from occlufer.config import Params, load_params
from occlufer.data.store import Store, write_store
from occlufer.data.synthetic import SyntheticSpec, generate, preview_grid
from occlufer.stages import run_stage, write_json

OUT = Path("data/acquired")

def acquire(params: Params, out: Path = OUT) -> dict[str, int]:
    """Draw the embedded synthetic faces; returns the read / kept / rejected counts."""
    cfg = params.acquire
    spec = SyntheticSpec(n_per_class=cfg.n_per_class, n_subjects=cfg.n_subjects,
                         size=cfg.image_size, intensity=tuple(cfg.intensity), noise=cfg.noise)
    images, labels, subjects = generate(spec, params.seed, cfg.classes)
    n = len(images)
    manifest = pd.DataFrame({
        "id": [f"syn-{i:06d}" for i in range(n)],
        "label": pd.Categorical.from_codes(labels, categories=list(cfg.classes)),
        "group": [f"subject-{s:04d}" for s in subjects],
        "source": "synthetic",
        "source_path": "",
        "source_split": "",
    })
    write_store(out, Store(images, manifest))
    pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)}).to_csv(
        out / "rejects.csv", index=False)
    preview_grid(images, labels, list(cfg.classes)).save(out / "preview.png")
    counts = {"read": n, "kept": n, "rejected": 0}
    write_json(out / "summary.json", {**counts, "per_class": per_class(manifest)})
    print(f"acquire: read {n}, kept {n}, rejected 0 -> {out}")
    return counts

def per_class(manifest: pd.DataFrame) -> dict[str, int]:
    """Rows per label, in class order."""
    return {str(k): int(v) for k, v in manifest["label"].value_counts(sort=False).items()}

def main() -> None:
    run_stage("acquire", lambda: acquire(load_params()))

if __name__ == "__main__":
    main()

