"""A recipe's five stages in one process, without DVC or MLflow: for a machine that has neither.

The GPU machine lent to some development sessions (one H200, 16 cores) has PyTorch but no DVC,
MLflow or Hydra, cannot reach a package registry or ``../shared``, and takes at most 64 MiB of
files. This script is how ``conf/experiment/fer2013_gpu.yaml`` was measured there
(docs/results.md). Three steps:

    # here: the FER2013 JPEGs, byte for byte, in one lzma file (60 MB -> 46 MB)
    python benchmarks/gpu_recipe.py pack ../shared/datasets/fer2013 .gpu/fer2013.pack.xz
    # here: the recipe's params.yaml (Hydra lives here)
    occlufer compose experiment=fer2013_gpu train.workers=14 --out .gpu/params.yaml
    # there: unpack the JPEGs to <work>/shared/datasets/fer2013, run the stages from <work>/repo
    python benchmarks/gpu_recipe.py run --pack .gpu/fer2013.pack.xz --params .gpu/params.yaml \\
        --out $OUT

``run`` calls the stage functions themselves — ``acquire``, ``occlude``, ``mix_split`` — then
trains exactly as ``stages/train.py`` does (the same :mod:`occlufer.training.augment` adapters,
:func:`~occlufer.training.job.prepare`, :func:`fit` and
:func:`~occlufer.training.job.write_outputs`; no MLflow run and no checkpoint) and
evaluates the val and test splits exactly as ``stages/validate.py`` does (the same
:func:`evaluate`, :func:`as_test_metrics`, :func:`summary_line`). It writes to ``--out``:
``log.txt`` is the caller's; ``history.csv``, ``metrics.json`` (the validate metrics file),
``report.md``, ``test_report.md``, ``timings.json`` (seconds per stage and the hardware) and
``model.pt`` cut into ``model.pt.partNN`` pieces of at most 16 MB (``cat`` joins them).
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import shutil
import struct
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
PART = 16_000_000


def pack(src: Path, dst: Path) -> None:
    """Every ``*.jpg`` under ``src`` (relative name + bytes) into one lzma file."""
    files = sorted(src.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"pack: no .jpg files under {src}; give the FER2013 folder "
                         "(../shared/datasets/fer2013)")
    buf = io.BytesIO()
    for f in files:
        name, data = str(f.relative_to(src)).encode(), f.read_bytes()
        buf.write(struct.pack("<HI", len(name), len(data)) + name + data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(lzma.compress(buf.getvalue(), preset=6))
    print(f"pack: {len(files)} files, {buf.tell() / 1e6:.1f} MB -> {dst} "
          f"({dst.stat().st_size / 1e6:.1f} MB)")


def unpack(src: Path, dst: Path) -> int:
    raw, pos, n = lzma.decompress(src.read_bytes()), 0, 0
    while pos < len(raw):
        ln, ld = struct.unpack_from("<HI", raw, pos)
        pos += 6
        path = dst / raw[pos:pos + ln].decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw[pos + ln:pos + ln + ld])
        pos, n = pos + ln + ld, n + 1
    return n


def run(pack_file: Path, params_file: Path, out: Path, work: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    from occlufer.config import load_params
    from occlufer.data.store import read_store
    from occlufer.evaluation.evaluate import EvalSet, evaluate
    from occlufer.hardware import hardware
    from occlufer.headline import write_metrics
    from occlufer.models import load_model
    from occlufer.occlusion import OcclusionSpec
    from occlufer.stages.acquire import acquire
    from occlufer.stages.mix_split import mix_split
    from occlufer.stages.occlude import occlude
    from occlufer.stages.validate import as_test_metrics, summary_line
    from occlufer.training import fit, resolve_device
    from occlufer.training.augment import train_arrays, val_arrays
    from occlufer.training.job import history_frame, prepare, write_outputs

    out.mkdir(parents=True, exist_ok=True)
    params = load_params(params_file)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    n = unpack(pack_file, work / "shared" / "datasets" / "fer2013")
    seconds["unpack"] = time.perf_counter() - t
    print(f"unpack: {n} files in {seconds['unpack']:.1f} s", flush=True)
    repo = work / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    os.chdir(repo)  # acquire.path is relative (../shared/datasets/fer2013), as in a checkout
    data = Path("data")
    for name, step in (("acquire", lambda: acquire(params, data / "acquired")),
                       ("occlude", lambda: occlude(params, data / "acquired", data / "occluded")),
                       ("mix_split", lambda: mix_split(params, data / "acquired",
                                                       data / "occluded", data / "split"))):
        t = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - t
        print(f"{name}: {seconds[name]:.1f} s", flush=True)

    # train: stages/train.py without the MLflow run and the checkpoint
    t = time.perf_counter()
    cfg = params.train
    device = resolve_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_store = read_store(data / "split" / "train")
    val_store = read_store(data / "split" / "val")
    job = prepare(params, list(train_store.manifest["label"].cat.categories),
                  int(train_store.images.shape[1]))
    print(f"train: {params.model.name} ({job.parameters / 1e6:.2f}M parameters) on "
          f"{len(train_store)} faces ({len(val_store)} val), device {device}", flush=True)
    done: list = []

    def on_epoch(stats, _state) -> None:  # noqa: ANN001 - a partial history survives a timeout
        done.append(stats)
        history_frame(done).to_csv(out / "history.csv", index=False)

    result = fit(job.model, train_arrays(train_store), val_arrays(val_store), cfg,
                 params.model, params.occlusion, params.seed, device, on_epoch=on_epoch,
                 before_epoch=job.before_epoch)
    models = Path("models")
    write_outputs(models, job, params, result)
    shutil.copy(models / "history.csv", out / "history.csv")
    seconds["train"] = time.perf_counter() - t
    print(f"train: {seconds['train']:.1f} s, best epoch {result.best_epoch} "
          f"({cfg.monitor} {result.best_score:.4f})", flush=True)

    # validate: stages/validate.py without MLflow
    t = time.perf_counter()
    model, meta = load_model(models / "model.pt")
    spec = OcclusionSpec.from_cfg(params.occlusion)
    report = Path("reports/validate")
    metrics = evaluate(model, meta, EvalSet.from_store(read_store(data / "split" / "val"),
                                                       "data/split/val"),
                       params.validate, spec, params.seed, report,
                       history=models / "history.csv", config=params.to_dict(),
                       model_source="models/model.pt")
    test = read_store(data / "split" / "test")
    scored = evaluate(model, meta, EvalSet.from_store(test, "data/split/test"), params.validate,
                      spec, params.seed, report / "test", config=params.to_dict(),
                      model_source="models/model.pt")
    metrics.update(as_test_metrics(scored))
    write_metrics(report, metrics)
    seconds["validate"] = time.perf_counter() - t
    print(summary_line(metrics, report, params.validate.gap_ratio), flush=True)

    shutil.copy(report / "metrics.json", out / "metrics.json")
    for src, name in ((report / "report.md", "report.md"),
                      (report / "test" / "report.md", "test_report.md")):
        if src.is_file():
            shutil.copy(src, out / name)
    blob = (models / "model.pt").read_bytes()
    for i in range(0, len(blob), PART):
        (out / f"model.pt.part{i // PART:02d}").write_bytes(blob[i:i + PART])
    seconds["total"] = sum(seconds.values())
    (out / "timings.json").write_text(json.dumps(
        {"seconds": seconds, "hardware": hardware(), "torch": torch.__version__,
         "params": params.to_dict()}, indent=2, default=str) + "\n")
    print(f"total {seconds['total']:.1f} s: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                       seconds.items() if k != "total"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("src", type=Path)
    a.add_argument("dst", type=Path)
    a = sub.add_parser("run")
    a.add_argument("--pack", type=Path, required=True)
    a.add_argument("--params", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--work", type=Path, default=Path("/tmp/occlufer_gpu"))
    args = p.parse_args()
    if args.cmd == "pack":
        pack(args.src, args.dst)
    else:
        run(args.pack.resolve(), args.params.resolve(), args.out.resolve(), args.work.resolve())


if __name__ == "__main__":
    main()
