"""S200 occlude: one randomly occluded copy of every face into ``data/occluded``.

Each copy draws from ``(seed, image id, "occlude")``; the store keeps images, exact masks, the
occluder, style, target and realised fraction per row. ``occlusion.keypoints``: region occluders
sit on a face's detected keypoints, if it has any."""

from pathlib import Path

import numpy as np

from occlufer.config import Params
from occlufer.data.store import Store, manifest_keypoints, read_store, write_store
from occlufer.jsonio import write_json
from occlufer.occlusion import OcclusionSpec, occlude_images
from occlufer.occlusion.engine import resolve_workers
from occlufer.occlusion.shapes import POINTS
from occlufer.preview import type_grid
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
    ids = clean.manifest["id"]
    occ = occlude_images(clean.images, list(ids), params.seed, spec, workers=workers, points=points)
    manifest = clean.manifest.assign(src_id=ids, id=ids + "+occ", occluder=occ.types,
                                     fill=occ.styles, target_ratio=occ.target_ratios,
                                     occluded_fraction=occ.fractions)
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


if __name__ == "__main__":
    run_stage("occlude", lambda: occlude(stage_params()))
