"""Wall time of the default pipeline, stage by stage, in a fresh copy of this repository.

    python benchmarks/pipeline_time.py [--overrides occlusion.ratio=0.3 ...]

Runs `dvc repro --single-item <stage>` for each stage in order (a cold start per stage, as in
`dvc repro`) with a private MLflow store, and prints seconds per stage, the total and val/acc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import copy_repo, hardware  # noqa: E402

STAGES = ("acquire", "occlude", "mix_split", "train", "validate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "NO_ALBUMENTATIONS_UPDATE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    print(f"hardware: {hardware()}")
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_repo(Path(tmp) / "occlufer")
        if args.overrides:
            subprocess.run([str(bin_dir / "occlufer"), "compose", *args.overrides], cwd=repo,
                           env=env, check=True, capture_output=True)
        total = 0.0
        for stage in STAGES:
            t0 = time.perf_counter()
            proc = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=repo, env=env,
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode:
                sys.exit(f"stage {stage} failed:\n{proc.stdout}\n{proc.stderr}")
            total += seconds
            print(f"{stage:10s} {seconds:6.1f} s")
        metrics = json.loads((repo / "reports/validate/metrics.json").read_text())
        print(f"{'total':10s} {total:6.1f} s  (dvc repro, default params"
              f"{' + ' + ' '.join(args.overrides) if args.overrides else ''})")
        print(f"val/acc {metrics['val/acc']:.4f}  val_occluded/acc "
              f"{metrics['val_occluded/acc']:.4f}")


if __name__ == "__main__":
    main()
