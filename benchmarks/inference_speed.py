"""Inference speed of the default model (seed_cnn; untrained weights: speed does not depend on
them) on the CPU, PyTorch and onnxruntime, and end-to-end ``occlufer predict`` on photos.

    python benchmarks/inference_speed.py [--threads 2] [--photos 1000] [--photo-size 640x480]

- batched: faces/s through ``Predictor.predict_proba`` (uint8 faces in, probabilities out,
  preprocessing included) at batch 256, best of 3 passes over 4,096 faces;
- single face: latency of one ``predict_proba`` call with one face, median and p95 of 300;
- end to end: ``occlufer predict`` (a subprocess: start-up, decoding, Haar detection on every
  photo, inference, CSV) on a generated folder of JPEG photos, each with one synthetic face
  (80-200 px) pasted on a noisy gradient background; images/s including start-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import hardware  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_model(folder: Path) -> tuple[Path, Path]:
    import torch

    from occlufer.inference.export import export_onnx
    from occlufer.labels import CLASSES
    from occlufer.models import build_model, load_model, save_model

    torch.manual_seed(0)
    model = build_model("seed_cnn", num_classes=len(CLASSES), image_size=48)
    save_model(folder / "model.pt", model, name="seed_cnn", classes=CLASSES, image_size=48,
               dropout=0.0)
    onnx = export_onnx(*load_model(folder / "model.pt"), folder / "model.onnx")
    return folder / "model.pt", onnx


def batched(predictor, faces: np.ndarray, batch: int = 256, reps: int = 3) -> float:
    predictor.predict_proba(faces[:batch], batch)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        predictor.predict_proba(faces, batch)
        best = min(best, time.perf_counter() - t)
    return len(faces) / best


def single(predictor, faces: np.ndarray, n: int = 300) -> tuple[float, float]:
    for i in range(20):
        predictor.predict_proba(faces[i:i + 1])
    times = []
    for i in range(n):
        t = time.perf_counter()
        predictor.predict_proba(faces[i % len(faces):i % len(faces) + 1])
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.95 * len(times))] * 1e3


def make_photos(folder: Path, n: int, width: int, height: int) -> None:
    import cv2

    from occlufer.data.synthetic import SyntheticSpec, generate

    faces = generate(SyntheticSpec(n_per_class=20, size=200), 1)[0]  # 140 distinct faces
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :].repeat(height, 0)
    for i in range(n):
        photo = ramp + rng.normal(0, 12, (height, width)).astype(np.float32)
        side = int(rng.integers(80, 200))
        face = cv2.resize(faces[i % len(faces)], (side, side), interpolation=cv2.INTER_AREA)
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        photo[y:y + side, x:x + side] = face
        rgb = np.clip(photo, 0, 255).astype(np.uint8)[..., None].repeat(3, 2)
        rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 15, 0, 255)  # a colour cast
        cv2.imwrite(str(folder / f"photo_{i:05d}.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--photo-size", default="640x480")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from occlufer.data.synthetic import SyntheticSpec, generate
    from occlufer.inference.predictor import onnx_predictor, torch_predictor

    print(hardware())
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        pt, onnx = make_model(tmp_path)
        faces = generate(SyntheticSpec(n_per_class=37, size=48), 0)[0]  # 259 faces
        many = np.concatenate([faces] * 16)[:4096]
        for name, predictor in (("pytorch", torch_predictor(pt)),
                                ("onnxruntime", onnx_predictor(onnx, threads=args.threads))):
            rate = batched(predictor, many)
            med, p95 = single(predictor, faces)
            print(f"{name:12s} batched (batch 256, {args.threads} threads): {rate:,.0f} faces/s; "
                  f"single face: median {med:.2f} ms, p95 {p95:.2f} ms")
        if args.photos:
            width, height = map(int, args.photo_size.lower().split("x"))
            folder = tmp_path / "photos"
            folder.mkdir()
            t = time.perf_counter()
            make_photos(folder, args.photos, width, height)
            print(f"generated {args.photos} {width}×{height} JPEG photos in "
                  f"{time.perf_counter() - t:.1f} s")
            out = tmp_path / "preds.csv"
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "occlufer.cli", "predict", str(folder),
                                   "--out", str(out), "--model", str(pt), "--threads",
                                   str(args.threads)], capture_output=True, text=True,
                                  cwd=ROOT, check=True)
            wall = time.perf_counter() - t
            print(f"occlufer predict (detection, {os.cpu_count()} workers): "
                  f"{args.photos / wall:.1f} images/s ({wall:.1f} s with start-up); "
                  f"{proc.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
