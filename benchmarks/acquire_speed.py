"""S100 acquire speed and peak memory on real-sized inputs.

    python benchmarks/acquire_speed.py [--fer PATH] [--n-large 200000] [--cases folders,csv,large]

Cases (each runs `occlufer.stages.acquire.acquire` in a fresh process, output in a temp dir):
  folders  FER2013 as folders (../shared/datasets/fer2013: 32,298 JPGs)
  csv      the same faces as a fer2013.csv (emotion,pixels,Usage), generated into a temp dir
  large    a generated folder of --n-large small JPGs (default 200,000): memory stays bounded
Prints the acquire time, the whole process time and the peak RSS (ru_maxrss of the process;
the decoding workers are its children and are reported separately), plus the hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER = ROOT.parent / "shared" / "datasets" / "fer2013"


def _child(source: str, path: str, out: str) -> None:
    t0 = time.perf_counter()
    from occlufer.config import compose, parse_params
    from occlufer.stages.acquire import acquire

    params = parse_params(compose([f"acquire={source}", f"acquire.path='{path}'",
                                   "acquire.max_reject_fraction=1.0"], ROOT / "conf"))
    t1 = time.perf_counter()
    counts = acquire(params, Path(out))
    t2 = time.perf_counter()
    rss = {w: resource.getrusage(getattr(resource, f"RUSAGE_{w.upper()}")).ru_maxrss / 1024
           for w in ("self", "children")}
    print(json.dumps({"counts": counts, "acquire_s": t2 - t1, "process_s": t2 - t0,
                      "rss_mb": rss}))


def _run(source: str, path: Path, tmp: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", source, str(path),
                           str(tmp / f"out-{source}")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=False)
    if proc.returncode:
        raise SystemExit(f"{source} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fer_csv(fer: Path, dst: Path) -> Path:
    """fer2013.csv (emotion,pixels,Usage) from the FER2013 JPG folders."""
    import numpy as np
    from PIL import Image

    from occlufer.labels import FER2013_CODES

    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    with open(dst, "w", encoding="ascii") as f:
        f.write("emotion,pixels,Usage\n")
        for split in sorted(p.name for p in fer.iterdir()):
            for cls in sorted(p.name for p in (fer / split).iterdir()):
                for img in sorted((fer / split / cls).glob("*.jpg")):
                    px = " ".join(map(str, np.asarray(Image.open(img).convert("L")).ravel()))
                    f.write(f"{FER2013_CODES.index(cls)},{px},{usage[split]}\n")
    return dst


def _large_folder(root: Path, n: int) -> Path:
    """n distinct 48×48 JPGs in 7 class folders (gradients + noise; ~1.5 kB each)."""
    import cv2
    import numpy as np

    from occlufer.labels import CLASSES

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = (xx * rng.uniform(-3, 3) + yy * rng.uniform(-3, 3) + rng.uniform(0, 255)
             + rng.normal(0, 12, (48, 48))).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(root / CLASSES[i % 7] / f"{i:07d}.jpg"), a)
    return root


def _row(name: str, r: dict) -> str:
    c = r["counts"]
    return (f"{name:<10} read {c['read']:>7}  kept {c['kept']:>7}  acquire {r['acquire_s']:6.1f} s"
            f"  process {r['process_s']:6.1f} s  peak RSS {r['rss_mb']['self']:6.0f} MB"
            f" (worker {r['rss_mb']['children']:4.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fer", type=Path, default=FER)
    parser.add_argument("--n-large", type=int, default=200_000)
    parser.add_argument("--cases", default="folders,csv,large")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    cores = len(os.sched_getaffinity(0))
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line),
               platform.processor())
    print(f"hardware: {cores} cores ({cpu}), Python {platform.python_version()}, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    cases = args.cases.split(",")
    with tempfile.TemporaryDirectory(prefix="acquire-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if ("folders" in cases or "csv" in cases) and not args.fer.is_dir():
            raise SystemExit(f"{args.fer}: FER2013 folders not found (use --fer)")
        if "folders" in cases:
            print(_row("folders", _run("image_folder", args.fer, tmp)), flush=True)
        if "csv" in cases:
            t = time.perf_counter()
            csv = _fer_csv(args.fer, tmp / "fer2013.csv")
            print(f"(generated {csv.stat().st_size / 1e6:.0f} MB CSV in "
                  f"{time.perf_counter() - t:.0f} s)", flush=True)
            print(_row("csv", _run("fer2013_csv", csv, tmp)), flush=True)
            csv.unlink()
        if "large" in cases:
            t = time.perf_counter()
            root = _large_folder(tmp / "large", args.n_large)
            print(f"(generated {args.n_large} JPGs in {time.perf_counter() - t:.0f} s)",
                  flush=True)
            print(_row("large", _run("image_folder", root, tmp)), flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f} (the machine is shared)")


if __name__ == "__main__":
    main()
