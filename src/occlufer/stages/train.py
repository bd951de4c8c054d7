"""S400 train: fit ``model.name`` on ``data/split/train``, track it in MLflow, write ``models/``.

Outputs: ``model.pt`` (the best epoch's weights by ``train.monitor`` + classes, size,
architecture) and ``history.csv`` (one row per epoch, DVC plots): byte-identical between
executions of the same params and data on one machine. What varies per execution (epoch
seconds, img/s, the total ``train/seconds``, host and hardware) goes to the MLflow run and the
console only. The run is tagged with the sha256 of ``model.pt``
(:data:`occlufer.tracking.MODEL_TAG`): validate finds it by the model's content.

Resume: after every epoch the full training state goes to ``checkpoints/train.pt`` (beside
``models/``, not a DVC output, git-ignored). If the stage is killed, the next ``dvc repro`` finds
a checkpoint with the same fingerprint (params and data) and continues after its epoch, in the
same MLflow run, ending with the metrics of an uninterrupted run; a finished run deletes it.

Fine-tuning: ``train.init_from`` (``zoo:NAME``, a ``model.pt`` or an MLflow URI) starts the model
from another one's trunk, frozen for the first ``train.freeze_epochs`` epochs
(:mod:`occlufer.training.init`); the checkpoint fingerprint includes that file's content.

With ``train.devices`` × ``train.nodes`` > 1 the stage re-launches itself under torchrun (DDP).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from occlufer import tracking
from occlufer.config import Params, load_params
from occlufer.data.store import IMAGES, MANIFEST, Store, read_store
from occlufer.errors import OccluferError
from occlufer.models import build_model, save_model
from occlufer.models.refs import resolve_model_file
from occlufer.stages import run_stage
from occlufer.training import (
    EpochStats,
    TrainArrays,
    TrainState,
    ValArrays,
    fit,
    resolve_device,
    source_rows,
)
from occlufer.training import distributed as dist
from occlufer.training.init import init_model

SRC = Path("data/split")
OUT = Path("models")
#: per-epoch metrics that vary per execution: logged to MLflow, left out of ``history.csv``
TIMING_METRICS = ("train/img_per_s", "train/epoch_seconds")
#: keys of ``train`` that do not change the result (left out of the checkpoint fingerprint)
_NOT_RESULT = ("workers", "num_threads", "mlflow_experiment", "log_model",
               "registered_model_name", "registered_model_alias", "rdzv_endpoint")


def label_codes(manifest: pd.DataFrame) -> np.ndarray:
    """Class indices of the (categorical) label column."""
    return manifest["label"].cat.codes.to_numpy(dtype=np.int64)


def train_arrays(store: Store) -> TrainArrays:
    m = store.manifest
    occluded = m["occluded"].to_numpy(dtype=bool)
    src = m["src_id"].to_numpy() if "src_id" in m.columns else m["id"].to_numpy()
    return TrainArrays(images=store.images, labels=label_codes(m), occluded=occluded,
                       source=source_rows(m["id"].to_numpy(), src, occluded), masks=store.masks)


def checkpoint_path(out: Path) -> Path:
    return out.parent / "checkpoints" / "train.pt"


def fingerprint(params: Params, src: Path, init_file: Path | None = None) -> str:
    """What a checkpoint must match to be resumed: the result-relevant params, the data and
    the content of the ``train.init_from`` model (``init_file``: that reference resolved by
    :func:`~occlufer.models.refs.resolve_model_file`; resolved here when not given)."""
    cfg = {k: v for k, v in asdict(params.train).items() if k not in _NOT_RESULT}
    h = hashlib.sha256(json.dumps({"seed": params.seed, "model": asdict(params.model),
                                   "train": cfg, "occlusion": asdict(params.occlusion)},
                                  sort_keys=True).encode())
    for part in ("train", "val"):
        h.update((src / part / MANIFEST).read_bytes())
        h.update(str((src / part / IMAGES).stat().st_size).encode())
    if params.train.init_from is not None:
        h.update((init_file or resolve_model_file(params.train.init_from)).read_bytes())
    return h.hexdigest()


def _load_checkpoint(path: Path, print_: bool) -> tuple[TrainState | None, dict[str, Any]]:
    """The checkpoint's state and meta, or ``(None, {})`` when there is none or it is unreadable.

    Loaded with ``weights_only=True``: a checkpoint holds tensors and plain Python values only,
    so a file that needs anything else (a planted pickle that would run code) is refused.
    """
    if not path.is_file():
        return None, {}
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" on foreign files
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
        return TrainState(**blob["state"]), blob["meta"]
    except pickle.UnpicklingError:
        raise OccluferError(f"{path}: refused to load, it holds more than tensors and plain "
                            f"values (it was not written by occlufer and could run code); "
                            f"delete it (`rm {path}`) and re-run `dvc repro -f -s train`") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: start over
        if print_:
            print(f"train: ignoring unreadable checkpoint {path} ({exc.__class__.__name__})")
        return None, {}


def train(params: Params, src: Path = SRC, out: Path = OUT) -> list[EpochStats]:
    """Train (or resume), log to MLflow, write the model folder; returns the per-epoch history.

    Besides ``src`` (``data/split``), the run records what the model was trained on from the
    sibling stage folders: the occlusion preview and split summary as artifacts, and acquire's
    counts as ``acquire/read``, ``acquire/kept``, ``acquire/rejected``.
    """
    cfg = params.train
    ddp = dist.is_worker()
    device = dist.setup(cfg.device) if ddp else resolve_device(cfg.device)
    rank = torch.distributed.get_rank() if ddp else 0
    lead = rank == 0
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_store, val_store = read_store(src / "train"), read_store(src / "val")
    classes = list(train_store.manifest["label"].cat.categories)
    image_size = int(train_store.images.shape[1])
    arch = {"width": params.model.width, "blocks": params.model.blocks}
    torch.manual_seed(params.seed)
    model = build_model(params.model.name, num_classes=len(classes), image_size=image_size,
                        dropout=params.model.dropout, **arch)
    init_file = resolve_model_file(cfg.init_from) if cfg.init_from else None
    before_epoch = init_model(model, params, classes, image_size, init_file, print_=lead)
    ckpt = checkpoint_path(out)
    key = fingerprint(params, src, init_file)
    state, meta = _load_checkpoint(ckpt, lead)
    if state is not None and meta.get("fingerprint") != key:
        if lead:
            print(f"train: {ckpt} is from other params or data; starting afresh")
        state, meta = None, {}
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        n_par = sum(p.numel() for p in model.parameters())
        print(f"train: {params.model.name} ({n_par / 1e6:.2f}M parameters) on "
              f"{len(train_store)} faces ({len(val_store)} val), {len(classes)} classes, "
              f"device {device}" + (f", {torch.distributed.get_world_size()} processes"
                                    if ddp else "")
              + (f"; resuming after epoch {state.epoch} from {ckpt}" if state else ""))

    run_cm = (tracking.start_run(cfg.mlflow_experiment, params.to_dict(),
                                 run_id=meta.get("run_id"),
                                 active_file=ckpt.with_name("train.mlflow_run.json")) if lead
              else contextlib.nullcontext())
    with run_cm as run:
        if lead:
            tracking.set_tags(tracking.execution_tags())

        def on_epoch(stats: EpochStats, st: TrainState) -> None:
            if not lead:
                return
            tracking.log_metrics(stats.metrics(), step=stats.epoch)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"state": asdict(st), "meta": {"fingerprint": key,
                                                      "run_id": run.info.run_id}}, tmp)
            os.replace(tmp, ckpt)  # atomic: a kill never leaves half a checkpoint

        if lead and state is None:
            _log_inputs(src)
        vm = val_store.manifest
        result = fit(model, train_arrays(train_store),
                     ValArrays(val_store.images, label_codes(vm),
                               vm["occluded"].to_numpy(dtype=bool)),
                     cfg, params.model, params.occlusion, params.seed, device,
                     state=state, on_epoch=on_epoch, before_epoch=before_epoch)
        if not lead:
            dist.teardown()
            return result.history
        model.cpu().eval()
        save_model(out / "model.pt", model, name=params.model.name, classes=classes,
                   image_size=image_size, dropout=params.model.dropout, arch=arch,
                   tta_flip=cfg.tta_flip, tta_shift=cfg.tta_shift,
                   epoch=result.best_epoch)
        history_frame(result.history).to_csv(out / "history.csv", index=False)
        tracking.tag_model(out / "model.pt")  # validate finds this run by the model's bytes
        best = next(h for h in result.history if h.epoch == result.best_epoch)
        seconds = sum(h.seconds for h in result.history)  # a resumed run's earlier epochs too
        tracking.log_metrics({"best/epoch": best.epoch, "best/val/acc": best.val_acc,
                              "best/val_occluded/acc": best.val_occluded_acc,
                              "best/val_mixed/acc": best.val_mixed_acc,
                              "train/seconds": seconds})
        if cfg.log_model:  # the pyfunc model: preprocessing + classes, servable by MLflow
            tracking.log_pyfunc_model(out / "model.pt", cfg.registered_model_name,
                                      cfg.registered_model_alias)
        ckpt.unlink(missing_ok=True)
        print(f"train: done in {seconds:.1f} s, best epoch {best.epoch} ({cfg.monitor} "
              f"{result.best_score:.4f}), MLflow run {run.info.run_id} -> {out}")
    if ddp:
        dist.teardown()
    return result.history


def history_frame(history: list[EpochStats]) -> pd.DataFrame:
    """``history.csv``: one row per epoch, every metric but the timings (:data:`TIMING_METRICS`,
    which differ between executions and stay in MLflow), so that the file is reproducible."""
    return pd.DataFrame([{"epoch": h.epoch, **{k: v for k, v in h.metrics().items()
                                               if k not in TIMING_METRICS}} for h in history])


def _log_inputs(src: Path) -> None:
    for path in (src.parent / "occluded" / "preview.png", src / "summary.csv"):
        if path.is_file():
            tracking.log_artifact(path, "data")
    acquire_summary = src.parent / "acquired" / "summary.json"
    if acquire_summary.is_file():
        counts = json.loads(acquire_summary.read_text(encoding="utf-8"))
        tracking.log_metrics({f"acquire/{k}": counts[k] for k in ("read", "kept", "rejected")})


def main() -> None:
    def work() -> None:
        params = load_params()
        if dist.processes(params.train) > 1 and not dist.is_worker():
            code = dist.launch(params.train)
            if code:
                raise SystemExit(code)
            return
        train(params)

    run_stage("train", work)


if __name__ == "__main__":
    main()
