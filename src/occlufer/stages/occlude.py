"""S200 occlude: one randomly occluded copy of every face into ``data/occluded``.

Each copy's generator is derived from ``(seed, image id, "occlude")``; the store keeps the
occluded images, their exact masks and, per row, the occluder type, its style (fill, or
e.g. surgical/scarf), the target and the realised fraction. ``preview.png`` shows each type of
the configured mixture on the first faces. The region occluders (sunglasses, mask, hand, hair)
sit on the canonical landmarks (``occlusion.landmarks``), or with ``occlusion.keypoints`` on a
face's own eyes, nose and mouth where acquire recorded its detected keypoints (photos with
BlazeFace).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from occlufer.config import Params
from occlufer.data.store import Store, manifest_keypoints, read_store, write_store
from occlufer.jsonio import write_json
from occlufer.occlusion import OcclusionSpec, occlude_images
from occlufer.occlusion.engine import resolve_workers
from occlufer.occlusion.preview import type_grid
from occlufer.occlusion.shapes import POINTS
from occlufer.stages import run_stage, stage_params

SRC = Path("data/acquired")
OUT = Path("data/occluded")


def occlude(params: Params, src: Path = SRC, dst: Path = OUT) -> dict:
    """Write the occluded copies of ``src`` to ``dst``; returns counts and realised ratios."""
    cfg = params.occlusion
    spec = OcclusionSpec.from_cfg(cfg)
    clean = read_store(src)
    n = len(clean)
    workers = resolve_workers(cfg.workers, n)
    points = manifest_keypoints(clean.manifest, POINTS) if cfg.keypoints else None
    occ = occlude_images(clean.images, list(clean.manifest["id"]), params.seed, spec,
                         workers=workers, points=points)
    manifest = clean.manifest.copy()
    manifest["src_id"] = manifest["id"]
    manifest["id"] = manifest["id"] + "+occ"
    manifest["occluder"] = occ.types
    manifest["fill"] = occ.styles
    manifest["target_ratio"] = occ.target_ratios
    manifest["occluded_fraction"] = occ.fractions
    write_store(dst, Store(occ.images, manifest, occ.masks))
    type_grid(np.asarray(clean.images[:min(8, n)]), params.seed, spec,
              points=None if points is None else points[:8]).save(dst / "preview.png")
    per_type = manifest.groupby("occluder")["occluded_fraction"].agg(["count", "mean"])
    summary = {"images": n,
               "mean_occluded_fraction": float(manifest["occluded_fraction"].mean()),
               "per_type": {k: {"count": int(r["count"]), "mean_occluded_fraction":
                                float(r["mean"])} for k, r in per_type.iterrows()}}
    write_json(dst / "summary.json", summary)
    mix = ", ".join(f"{k} {int(r['count'])}" for k, r in per_type.iterrows())
    print(f"occlude: {n} occluded copies ({mix}), mean occluded fraction "
          f"{summary['mean_occluded_fraction']:.3f} (target {cfg.ratio}), {workers} "
          f"worker(s) -> {dst}")
    if points is not None:
        own = int(np.isfinite(points).all(axis=2).any(axis=1).sum())
        print(f"  {own} of {n} faces occluded at their detected keypoints, the others at "
              "occlusion.landmarks")
    return summary


def main() -> None:
    run_stage("occlude", lambda: occlude(stage_params()))


if __name__ == "__main__":
    main()
