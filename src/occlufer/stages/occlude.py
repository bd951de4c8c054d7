"""S200 occlude: one randomly occluded copy of every face into ``data/occluded``.

Each copy's generator is derived from ``(seed, image id, "occlude")``; the store keeps the
occluded images, their exact masks and, per row, the occluder, fill and realised fraction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from occlufer.config import Params, load_params
from occlufer.data.store import Store, read_store, write_store
from occlufer.occlusion import occlude_block
from occlufer.rng import item_rng
from occlufer.stages import run_stage, write_json
from occlufer.viz import image_grid

SRC = Path("data/acquired")
OUT = Path("data/occluded")


def occlude(params: Params, src: Path = SRC, dst: Path = OUT) -> dict[str, float]:
    """Write the occluded copies of ``src`` to ``dst``; returns count and mean realised ratio."""
    cfg = params.occlusion
    clean = read_store(src)
    n = len(clean)
    images = np.empty_like(clean.images)
    masks = np.zeros(clean.images.shape, dtype=bool)
    fills = []
    for i, image_id in enumerate(tqdm(clean.manifest["id"], desc="occlude", disable=None)):
        rng = item_rng(params.seed, image_id, "occlude")
        images[i], masks[i], fill = occlude_block(rng, clean.images[i], cfg.ratio, cfg.fills,
                                                  cfg.aspect)
        fills.append(fill)
    manifest = clean.manifest.copy()
    manifest["src_id"] = manifest["id"]
    manifest["id"] = manifest["id"] + "+occ"
    manifest["occluder"] = "block"
    manifest["fill"] = fills
    manifest["target_ratio"] = cfg.ratio
    manifest["occluded_fraction"] = masks.reshape(n, -1).mean(axis=1)
    write_store(dst, Store(images, manifest, masks))
    k = min(8, n)
    image_grid([list(clean.images[:k]), list(images[:k])], ["clean", "occluded"]).save(
        dst / "preview.png")
    summary = {"images": n, "mean_occluded_fraction": float(manifest["occluded_fraction"].mean())}
    write_json(dst / "summary.json", summary)
    print(f"occlude: {n} occluded copies, mean occluded fraction "
          f"{summary['mean_occluded_fraction']:.3f} (target {cfg.ratio}) -> {dst}")
    return summary


def main() -> None:
    run_stage("occlude", lambda: occlude(load_params()))


if __name__ == "__main__":
    main()
