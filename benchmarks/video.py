"""Video: frames/s of ``occlufer predict`` on a video, end to end, on a generated 640×480 clip.

    OMP_NUM_THREADS=1 python benchmarks/video.py [--frames 300] [--size 640x480] [--every 1]
        [--detector blazeface] [--model zoo:fer2013] [--threads 1] [--faces 2]

The clip (mp4v in .mp4, 25 frames/s) shows ``--faces`` synthetic faces (120-160 px) moving a
few pixels per frame over a noisy gradient, as a webcam would. Measured in this process, the
model loaded first (start-up excluded), one thread for inference and detection:

- decode: OpenCV reading every frame (the floor: what decoding alone costs);
- predict: :func:`occlufer.inference.video.predict_video`: decoding, face detection and
  alignment on every ``--every``-th frame, classification, tracking, smoothing, CSV rows;
- predict + annotate: the same, also writing the annotated .mp4.

Rates are frames of the clip per second of wall time (with ``--every N`` the frames skipped
count too: that is what a user waits for). Prints a markdown table and the hardware line.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import hardware  # noqa: E402

FPS = 25


def make_clip(path: Path, frames: int, width: int, height: int, faces: int) -> Path:
    """``faces`` synthetic faces drifting over a noisy gradient, as an mp4v .mp4."""
    import cv2

    from occlufer.data.synthetic import SyntheticSpec, generate

    pool = generate(SyntheticSpec(n_per_class=1, size=160), 0)[0]
    rng = np.random.default_rng(0)
    sides = [int(rng.integers(120, 161)) for _ in range(faces)]
    people = [cv2.resize(pool[(1 + 3 * k) % len(pool)], (s, s), interpolation=cv2.INTER_AREA)
              for k, s in enumerate(sides)]
    starts = [(int(rng.integers(0, width - s)), int(rng.integers(0, height - s))) for s in sides]
    steps = [tuple(rng.choice([-3, -2, 2, 3], 2)) for _ in range(faces)]
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :].repeat(height, 0)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    for t in range(frames):
        frame = ramp + rng.normal(0, 8, (height, width)).astype(np.float32)
        for face, side, (x0, y0), (dx, dy) in zip(people, sides, starts, steps, strict=True):
            x = _bounce(x0 + dx * t, width - side)
            y = _bounce(y0 + dy * t, height - side)
            frame[y:y + side, x:x + side] = face
        gray = np.clip(frame, 0, 255).astype(np.uint8)
        out.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    out.release()
    return path


def _bounce(v: int, top: int) -> int:
    """``v`` reflected into [0, top] (a face bouncing off the frame's edges)."""
    period = 2 * max(top, 1)
    v %= period
    return v if v <= top else period - v


def decode_rate(path: Path) -> tuple[int, float]:
    import cv2

    t = time.perf_counter()
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--faces", type=int, default=2)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--detector", default="blazeface",
                    choices=("blazeface", "blazeface_fast", "haar"))
    ap.add_argument("--model", default=None, help="default: as occlufer predict (zoo:fer2013 "
                                                  "here without a trained models/)")
    ap.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from occlufer.inference.photos import FaceSearch, RowWriter
    from occlufer.inference.predictor import load_predictor, resolve_model
    from occlufer.inference.video import VIDEO_COLUMNS, analyse_frame, predict_video

    print(hardware())
    choice = resolve_model(args.model)
    predictor = load_predictor(choice, threads=args.threads)
    search = FaceSearch(size=predictor.image_size, detector=args.detector)
    width, height = map(int, args.size.lower().split("x"))
    analyse_frame(np.zeros((height, width, 3), np.uint8), search)  # the detector's start-up
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        t = time.perf_counter()
        make_clip(clip, args.frames, width, height, args.faces)
        print(f"generated {args.frames} frames {width}×{height} with {args.faces} faces in "
              f"{time.perf_counter() - t:.1f} s; {choice.line}; detector {args.detector}, "
              f"every {args.every}")
        n, decode = decode_rate(clip)
        rows = [("decode only", decode, "")]
        for name, annotate in (("predict", None), ("predict + annotate", Path(tmp) / "a.mp4")):
            writer = RowWriter(io.StringIO(), "csv", predictor.classes, extra=VIDEO_COLUMNS)
            t = time.perf_counter()
            s = predict_video(predictor, clip, writer, search=search, every=args.every,
                              annotate=annotate, progress=False)
            rows.append((name, s.decoded / (time.perf_counter() - t),
                         f"{s.frames} frames analysed, {s.faces} faces in {s.tracks} tracks"))
        print(f"\n| {n} frames {width}×{height} | frames/s | |\n|---|---:|---|")
        for name, rate, note in rows:
            print(f"| {name} | {rate:.1f} | {note} |")


if __name__ == "__main__":
    main()
