"""Occlusion on real photos: do sunglasses, mask and hair land on the eyes, mouth and brows of
aligned photo crops, placed by the canonical landmarks or by the detected keypoints? (issue #15)

    OMP_NUM_THREADS=1 python benchmarks/photo_occlusion.py [--photos DIR] [--size 48]
        [--ratios 0.15,0.25] [--draws 50] [--seed 0] [--detector blazeface]

On ../shared/datasets/photos (nine PASCAL VOC photos, 43 faces with dlib's 68 landmarks in
``*_with_face_landmarks.xml``): each photo goes through acquire's photo path
(:func:`occlufer.data.faces.photo_faces`, policy ``all``, BlazeFace, aligned size×size crops);
a crop counts for the annotated face whose box it overlaps at IoU ≥ 0.5. The 68 true points
are mapped into the crop by the crop's own transform. Each face is occluded ``--draws`` times
per occluder and ratio (generators ``item_rng(seed, "<photo>#<face>/<draw>", "occlude")``),
once with the canonical landmarks (``occlusion.landmarks``: what occlude did before) and once
with the crop's detected keypoints (what occlude does with acquire's ``kp_*`` columns), the
same draws both times. Per occluder, its target points: sunglasses → the eyes (points 36-47),
mask → the mouth (48-67), hair → the brows (17-26). Reported per occluder, style and ratio:
the share of target points under the occluder's mask (mean over draws, then over faces), the
share of draws that cover all of them, and detected − canonical in points with a paired
bootstrap 95 % interval over faces (2,000 resamples). Also printed: how far the canonical and
the detected eyes and mouth are from the true ones in the crop (% of the true eye distance).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware  # noqa: E402
from detector import match  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
#: occluder → (its target, the 68-point indices of that target)
TARGETS = {"sunglasses": ("eyes", range(36, 48)), "mask": ("mouth", range(48, 68)),
           "hair": ("brows", range(17, 27))}


def annotated(root: Path) -> dict[str, list[tuple[tuple[int, ...], np.ndarray]]]:
    """Per photo: (box x1, y1, x2, y2; 68×2 landmarks) of each annotated face, file pixels."""
    out: dict[str, list] = {}
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        path = root / name
        if not path.is_file():
            sys.exit(f"{path}: missing (the annotated photos, see ../shared/datasets/README.md)")
        for image in ET.parse(path).getroot().iter("image"):
            faces = []
            for b in image.iter("box"):
                x, y, w, h = (int(b.get(k)) for k in ("left", "top", "width", "height"))
                pts = {int(p.get("name")): (float(p.get("x")), float(p.get("y")))
                       for p in b.iter("part")}
                if len(pts) == 68:
                    faces.append(((x, y, x + w, y + h), np.array([pts[i] for i in range(68)])))
            out[image.get("file")] = faces
    return out


def crops(root: Path, size: int, detector: str) -> tuple[list[str], np.ndarray, np.ndarray,
                                                          np.ndarray, int]:
    """(face names, crops N×size×size, detected keypoints N×4×2 and true landmarks N×68×2 in
    the crops as fractions of the side, annotated faces in all)."""
    import pandas as pd

    from occlufer.data.faces import photo_faces
    from occlufer.data.images import Reject
    from occlufer.data.readers import KEYPOINT_COLUMNS
    from occlufer.data.store import manifest_keypoints
    from occlufer.occlusion.shapes import POINTS

    names, images, rows, truth, total = [], [], [], [], 0
    for photo, faces in sorted(annotated(root).items()):
        total += len(faces)
        try:
            _, scale, found = photo_faces((root / photo).read_bytes(), size=size, policy="all",
                                          margin=0.2, min_face=24, detector=detector)
        except Reject:
            continue
        boxes = [(x * scale, y * scale, (x + w) * scale, (y + h) * scale)
                 for x, y, w, h in (c.box for c in found)]
        for i, j in match([f[0] for f in faces], boxes):
            crop, marks = found[j], faces[i][1] / scale
            if len(crop.crop_keypoints) == 0:
                continue  # a detector without keypoints: nothing to compare
            m = crop.transform
            names.append(f"{photo}#{i}")
            images.append(crop.image)
            rows.append(crop.crop_keypoints.reshape(-1))
            truth.append((marks @ m[:, :2].T + m[:, 2]) / size)
    if not names:
        sys.exit(f"{root}: no annotated face found with keypoints by {detector}")
    # acquire's manifest columns (float32), read back as occlude reads them
    manifest = pd.DataFrame(np.array(rows, np.float32), columns=KEYPOINT_COLUMNS)
    points = manifest_keypoints(manifest, POINTS)
    return names, np.stack(images), points, np.stack(truth), total


def covered(masks: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Per mask (B×H×W) the share of its points (B×K×2, fractions) on covered pixels; points
    outside the crop count as not covered."""
    b, h, w = masks.shape
    col, row = np.floor(pts[..., 0] * w).astype(int), np.floor(pts[..., 1] * h).astype(int)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    hit = masks[np.arange(b)[:, None], row.clip(0, h - 1), col.clip(0, w - 1)] & inside
    return hit.mean(axis=1)


def interval(d: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    means = d[rng.integers(0, len(d), (2000, len(d)))].mean(1) * 100
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def errors(points: np.ndarray, truth: np.ndarray, lm) -> None:  # noqa: ANN001 - Landmarks
    eyes = np.stack([truth[:, 36:42].mean(1), truth[:, 42:48].mean(1)], 1)
    iod = np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=1)
    mouth = truth[:, 48:68].mean(1)
    canonical = np.array([lm.left_eye, lm.right_eye, lm.nose, lm.mouth])
    print("| point (true: mean of the 68-point landmarks) | canonical: error, % of the eye "
          "distance | detected: error | true position in the crop (median x, y) |")
    print("|---|---|---|---|")
    rows = (("left eye (36-41)", 0, eyes[:, 0]), ("right eye (42-47)", 1, eyes[:, 1]),
            ("mouth (48-67)", 3, mouth))
    for name, k, true in rows:
        c = np.linalg.norm(canonical[k] - true, axis=1) / iod * 100
        d = np.linalg.norm(points[:, k] - true, axis=1) / iod * 100
        mx, my = np.median(true, 0)
        print(f"| {name} | {c.mean():.1f} (median {np.median(c):.1f}) | {d.mean():.1f} "
              f"(median {np.median(d):.1f}) | {mx:.3f}, {my:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--ratios", default="0.15,0.25",
                    help="comma-separated; 0.25 is conf/occlusion's ratio")
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", default="blazeface")
    args = ap.parse_args()
    from occlufer.config import compose, parse_params
    from occlufer.occlusion import OcclusionSpec, occlude_batch
    from occlufer.rng import item_rng

    try:
        ratios = [float(r) for r in args.ratios.split(",")]
    except ValueError:
        sys.exit(f"--ratios {args.ratios!r}: expected numbers such as 0.15,0.25")
    spec = OcclusionSpec.from_cfg(parse_params(compose([], ROOT / "conf")).occlusion)
    names, images, points, truth, total = crops(args.photos, args.size, args.detector)
    n = len(names)
    print(f"{n} of {total} annotated faces found with keypoints by {args.detector} "
          f"({args.photos.name}/), {args.size}×{args.size} aligned crops; {args.draws} draws "
          f"per face, occluder and ratio\n")
    errors(points, truth, spec.landmarks)
    head = ["occluder → target", "style", "ratio", "faces (occlusions)",
            "canonical: target covered", "detected: target covered",
            "detected − canonical, points [95% CI]", "all covered: canonical → detected"]
    print("\n| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    rng = np.random.default_rng(args.seed)
    for kind, (target, idx) in TARGETS.items():
        pts = np.repeat(truth[:, list(idx)], args.draws, axis=0)
        for ratio in ratios:
            one = dataclasses.replace(spec.only(kind), ratio=(ratio, ratio))
            keys = [f"{name}/{d}" for name in names for d in range(args.draws)]
            faces = np.repeat(images, args.draws, axis=0)

            def run(given: np.ndarray | None, one=one, keys=keys, faces=faces):
                rngs = [item_rng(args.seed, k, "occlude") for k in keys]
                return occlude_batch(faces, rngs, one, points=given)

            base, own = run(None), run(np.repeat(points, args.draws, axis=0))
            styles = np.array(own.styles)
            for style in ("all", *sorted(set(own.styles))):
                keep = np.ones(len(keys), bool) if style == "all" else styles == style
                c, d = covered(base.masks[keep], pts[keep]), covered(own.masks[keep], pts[keep])
                face = np.repeat(np.arange(n), args.draws)[keep]
                per_c = np.bincount(face, c, n) / np.maximum(np.bincount(face, None, n), 1)
                per_d = np.bincount(face, d, n) / np.maximum(np.bincount(face, None, n), 1)
                used = np.bincount(face, None, n) > 0
                low, high = interval(per_d[used] - per_c[used], rng)
                diff = (per_d[used] - per_c[used]).mean() * 100
                row = [f"{kind} → {target}", style, f"{ratio:g}",
                       f"{used.sum()} ({keep.sum()})", f"{per_c[used].mean():.1%}",
                       f"{per_d[used].mean():.1%}", f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]",
                       f"{(c == 1).mean():.1%} → {(d == 1).mean():.1%}"]
                print("| " + " | ".join(row) + " |", flush=True)
    print(f"\n{hardware()}; load average {os.getloadavg()[0]:.1f} when done")


if __name__ == "__main__":
    main()
