"""A grid with examples of each occluder type (one row per type, clean faces on top).

``python -m occlufer.preview --images DIR --out grid.png``: from a folder of faces."""

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from occlufer.occlusion.engine import OcclusionSpec, occlude_batch
from occlufer.occlusion.registry import TYPES
from occlufer.rng import item_rng
from occlufer.viz import image_grid


def type_grid(images: np.ndarray, seed: int, spec: OcclusionSpec,
              types: Sequence[str] | None = None, scale: int = 2,
              points: np.ndarray | None = None) -> Image.Image:
    """Row 0: the clean faces; then one row per type (``points``: the faces' own landmarks)."""
    types = list(types or spec.types)
    rows = [list(images)]
    for kind in types:
        rngs = [item_rng(seed, f"preview-{i}", f"preview:{kind}") for i in range(len(images))]
        rows.append(list(occlude_batch(images, rngs, spec.only(kind), points=points).images))
    return image_grid(rows, ["clean", *types], scale=scale, label_width=95)


def _load(folder: Path, k: int, size: int) -> np.ndarray:
    files = sorted(folder.rglob("*.jpg")) + sorted(folder.rglob("*.png"))
    if not files:
        raise SystemExit(f"{folder}: no .jpg/.png images")
    pick = np.random.default_rng(0).choice(len(files), size=min(k, len(files)), replace=False)
    return np.stack([np.asarray(Image.open(files[i]).convert("L").resize((size, size)))
                     for i in sorted(pick)])


def main(argv: Sequence[str] | None = None) -> None:
    from occlufer.config import compose, parse_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("-k", type=int, default=10, help="faces per row")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--conf", type=Path, default=Path("conf"))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. occlusion.ratio=0.3")
    args = ap.parse_args(argv)
    params = parse_params(compose(args.overrides, args.conf))
    type_grid(_load(args.images, args.k, args.size), params.seed,
              OcclusionSpec.from_cfg(params.occlusion), TYPES, scale=args.scale).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
