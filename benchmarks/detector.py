"""Face detectors on real photos: recall, false detections, keypoints and speed (issue #15).

    OMP_NUM_THREADS=1 python benchmarks/detector.py [--photos DIR] [--min-face N] [--workers 2]
    OMP_NUM_THREADS=1 python benchmarks/detector.py --fer 2000     # the alignment targets' check

On ../shared/datasets/photos (nine PASCAL VOC photos with 43 annotated face boxes in
training.xml / testing.xml, a portrait, a crowd and a photo of dogs), per detector:

- found: annotated faces matched by a detection at IoU ≥ 0.5 (greedy, best IoU first, each
  detection used once), out of 43;
- false: detections matched to no annotated face on the nine photos, plus every detection on
  dogs.jpg (no human face; also shown on its own);
- portrait / crowd: faces reported on Tom_Cruise_avp_2014_4.jpg (one face) and bald_guys.jpg
  (a collage of 24 faces, counted by eye; not annotated, so shown as counts only);
- eye error: mean distance of the detected eyes to the eye centres of the annotated 68-point
  landmarks (``*_with_face_landmarks.xml``), as % of the inter-ocular distance (matched
  faces; detectors with keypoints only);
- photos/s: every photo resized to 640×480, detection plus the aligned 48×48 crops of all
  faces found, one thread per process (OpenCV's too): per core from the CPU time of one
  process (what an idle core gives; wall time suffers when other jobs share the cores), and the
  wall-clock rate of ``--workers`` processes.

``--fer N``: BlazeFace's median keypoints on N FER2013 train faces (each padded by half its
side with its edge pixels and upscaled ×2, as a detector needs some context), as fractions of
the 48-px side, beside the alignment targets (:data:`occlufer.data.detectors.ALIGN_TO`).
Prints markdown tables and the hardware line.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
FER = ROOT.parent / "shared" / "datasets" / "fer2013"
PORTRAIT, CROWD, DOGS = "Tom_Cruise_avp_2014_4.jpg", "bald_guys.jpg", "dogs.jpg"
DETECTORS = ("blazeface", "blazeface_fast", "haar")
SPEED_SIZE = (640, 480)


def annotations(root: Path) -> tuple[dict[str, list[tuple[int, ...]]], dict[str, list]]:
    """Boxes (x1, y1, x2, y2) per photo, and per photo the eye centres (left, right in the
    image) of each face from the 68-point landmarks (points 36-41 and 42-47)."""
    boxes: dict[str, list[tuple[int, ...]]] = {}
    eyes: dict[str, list] = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(root / name).getroot().iter("image"):
            boxes[image.get("file")] = [
                (int(b.get("left")), int(b.get("top")), int(b.get("left")) + int(b.get("width")),
                 int(b.get("top")) + int(b.get("height"))) for b in image.iter("box")]
        marks = ET.parse(root / name.replace(".xml", "_with_face_landmarks.xml")).getroot()
        for image in marks.iter("image"):
            per_face = []
            for b in image.iter("box"):
                pts = {int(p.get("name")): (float(p.get("x")), float(p.get("y")))
                       for p in b.iter("part")}
                per_face.append((np.mean([pts[i] for i in range(36, 42)], 0),
                                 np.mean([pts[i] for i in range(42, 48)], 0)))
            eyes[image.get("file")] = per_face
    return boxes, eyes


def match(truth: list[tuple], found: list[tuple], at: float = 0.5) -> list[tuple[int, int]]:
    """(truth index, found index) pairs, greedy by IoU, each used once, IoU ≥ ``at``."""
    from occlufer.data.detectors import greedy_matches

    return greedy_matches(truth, found, at)


def accuracy(name: str, root: Path, min_face: int) -> dict[str, float]:
    from occlufer.data.detectors import get_detector

    detector = get_detector(name)
    truth, eyes = annotations(root)
    found = false = 0
    errors: list[float] = []
    counts = {}
    for photo in [*truth, DOGS, PORTRAIT, CROWD]:
        faces = detector.detect(cv2.imread(str(root / photo)), min_face)
        boxes = [(f.box[0], f.box[1], f.box[0] + f.box[2], f.box[1] + f.box[3]) for f in faces]
        if photo not in truth:
            counts[photo] = len(faces)
            false += len(faces) if photo == DOGS else 0
            continue
        pairs = match(truth[photo], boxes)
        found += len(pairs)
        false += len(boxes) - len(pairs)
        for i, j in pairs:
            if len(faces[j].keypoints):
                left, right = eyes[photo][i]
                iod = np.linalg.norm(right - left)
                errors += [np.linalg.norm(faces[j].point("left_eye") - left) / iod,
                           np.linalg.norm(faces[j].point("right_eye") - right) / iod]
    return {"found": found, "of": sum(map(len, truth.values())), "false": false,
            "dogs": counts[DOGS], "portrait": counts[PORTRAIT], "crowd": counts[CROWD],
            "eye_error": float(np.mean(errors)) * 100 if errors else float("nan")}


def _speed_job(args: tuple[str, list[str], int, int]) -> int:
    from occlufer.data import faces
    from occlufer.data.detectors import get_detector

    name, paths, min_face, repeat = args
    cv2.setNumThreads(1)
    detector = get_detector(name)
    n = 0
    for _ in range(repeat):
        for path in paths:
            image = cv2.resize(cv2.imread(path), SPEED_SIZE, interpolation=cv2.INTER_AREA)
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            for face in detector.detect(image, min_face):
                faces.face_crop(gray, face, size=48, margin=0.2)
            n += 1
    return n


def speed(name: str, root: Path, min_face: int, workers: int, repeat: int) -> float:
    """Photos per second (640×480): with ``workers`` = 1 per CPU second of this process, else
    per wall-clock second of ``workers`` processes."""
    paths = sorted(str(p) for p in root.glob("*.jpg"))
    _speed_job((name, paths[:1], min_face, 1))  # warm-up: the interpreter, the cascade
    if workers <= 1:
        start = time.process_time()
        n = _speed_job((name, paths, min_face, repeat))
        return n / (time.process_time() - start)
    start = time.perf_counter()
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    jobs = [(name, paths[k::workers], min_face, repeat) for k in range(workers)]
    with ctx.Pool(workers) as pool:
        n = sum(pool.map(_speed_job, jobs))
    return n / (time.perf_counter() - start)


def fer_keypoints(n: int) -> None:
    from occlufer.data.detectors import ALIGN_TO, KEYPOINTS, get_detector

    paths = sorted((FER / "train").glob("*/*.jpg"))
    if not paths:
        sys.exit(f"{FER}/train: no FER2013 faces")
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(paths), size=min(n, len(paths)), replace=False)
    detector = get_detector("blazeface_fast")
    points = []
    for k in chosen:
        face = cv2.imread(str(paths[k]), cv2.IMREAD_GRAYSCALE)
        pad = face.shape[0] // 2
        big = cv2.resize(cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE),
                         None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        found = detector.detect(big, 1)
        if found:
            points.append((found[0].keypoints / 2 - pad) / face.shape[0])
    med = np.median(np.array(points), 0)
    print(f"BlazeFace keypoints on {len(points)} of {len(chosen)} FER2013 train faces "
          "(the rest: no face found), median, fractions of the side\n")
    print("| keypoint | x | y | alignment target |")
    print("|---|---|---|---|")
    for name, (x, y) in zip(KEYPOINTS, med, strict=True):
        target = ALIGN_TO.get(name)
        shown = f"{target[0]:.2f}, {target[1]:.2f}" if target else "—"
        print(f"| {name} | {x:.3f} | {y:.3f} | {shown} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--min-face", type=int, default=None,
                    help="smallest face, pixels (default: predict's, FaceSearch().min_face)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2,
                    help="passes over the photos for speed (0: no speed columns)")
    ap.add_argument("--fer", type=int, default=0, metavar="N",
                    help="instead: BlazeFace keypoints on N FER2013 faces")
    args = ap.parse_args()
    if args.fer:
        fer_keypoints(args.fer)
        print(f"\n{hardware()}")
        return
    if not (args.photos / "training.xml").is_file():
        sys.exit(f"{args.photos}: no annotated photos (training.xml); pass --photos")
    from occlufer.inference.photos import FaceSearch

    min_face = FaceSearch().min_face if args.min_face is None else args.min_face
    print(f"{args.photos}: min_face {min_face} px; speed on photos resized to "
          f"{SPEED_SIZE[0]}×{SPEED_SIZE[1]}, detection + aligned crops\n")
    print(f"| detector | found (IoU ≥ 0.5) | false detections | on dogs | portrait | crowd "
          f"(24) | eye error (% IOD) | photos/s per core (CPU time) | photos/s, "
          f"{args.workers} processes (wall) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.detectors.split(","):
        r = accuracy(name, args.photos, min_face)
        one = speed(name, args.photos, min_face, 1, args.repeat) if args.repeat else None
        many = (speed(name, args.photos, min_face, args.workers, args.repeat) if args.repeat
                else None)
        eye = "—" if np.isnan(r["eye_error"]) else f"{r['eye_error']:.1f}"
        rates = " | ".join("—" if v is None else f"{v:.1f}" for v in (one, many))
        print(f"| {name} | {r['found']}/{r['of']} ({r['found'] / r['of']:.0%}) | {r['false']} "
              f"| {r['dogs']} | {r['portrait']} | {r['crowd']} | {eye} | {rates} |", flush=True)
    print(f"\n{hardware()}; load average {os.getloadavg()[0]:.1f} when done")


if __name__ == "__main__":
    main()
