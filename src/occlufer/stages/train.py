"""S400 train: fit ``model.name`` on ``data/split/train``, track it in MLflow, write ``models/``.

Outputs: ``model.pt`` (the best epoch's weights by ``train.monitor`` + classes, size,
architecture) and ``history.csv`` (one row per epoch, DVC plots): byte-identical between
executions of the same params and data on one machine. What varies per execution (epoch
seconds, img/s, the total ``train/seconds``, host and hardware) goes to the MLflow run and the
console only. The run is tagged with the sha256 of ``model.pt``
(:data:`occlufer.tracking.MODEL_TAG`): validate finds it by the model's content.

Resume: after every epoch the full training state goes to ``checkpoints/train.pt``
(:mod:`occlufer.training.checkpoints`). If the stage is killed, the next ``dvc repro`` finds a
checkpoint with the same fingerprint (params and data) and continues after its epoch, in the
same MLflow run, ending with the metrics of an uninterrupted run; a finished run deletes it.

Fine-tuning: ``train.init_from`` (``zoo:NAME``, a ``model.pt`` or an MLflow URI) starts the model
from another one's trunk, frozen for the first ``train.freeze_epochs`` epochs
(:mod:`occlufer.training.init`); the checkpoint fingerprint includes that file's content.

With ``train.devices`` × ``train.nodes`` > 1 the stage re-launches itself under torchrun (DDP).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from occlufer import tracking
from occlufer.config import Params, load_params
from occlufer.data.store import read_store
from occlufer.inference.predictor import resolve_model_file
from occlufer.inference.pyfunc import log_pyfunc_model
from occlufer.stages import run_stage
from occlufer.training import EpochStats, TrainState, fit, resolve_device
from occlufer.training import distributed as dist
from occlufer.training.checkpoints import checkpoint_path, fingerprint, resume, save_checkpoint
from occlufer.training.data import train_arrays, val_arrays
from occlufer.training.job import prepare, write_outputs

SRC = Path("data/split")
OUT = Path("models")


def train(params: Params, src: Path = SRC, out: Path = OUT) -> list[EpochStats]:
    """Train (or resume), log to MLflow, write the model folder; returns the per-epoch history.

    Under DDP every process trains its share; rank 0 (``lead``) alone logs, checkpoints and
    writes ``out``.
    """
    cfg = params.train
    ddp = dist.is_worker()
    device = dist.setup(cfg.device) if ddp else resolve_device(cfg.device)
    lead = not ddp or torch.distributed.get_rank() == 0
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_store, val_store = read_store(src / "train"), read_store(src / "val")
    init_file = resolve_model_file(cfg.init_from) if cfg.init_from else None
    job = prepare(params, list(train_store.manifest["label"].cat.categories),
                  int(train_store.images.shape[1]), init_file, print_=lead)
    ckpt = checkpoint_path(out)
    key = fingerprint(params, src, init_file)
    state, meta = resume(ckpt, key, lead)
    if lead:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        _announce(params, job.parameters, len(train_store), len(val_store), len(job.classes),
                  device, state, ckpt)
    run_cm = (tracking.start_run(cfg.mlflow_experiment, params.to_dict(),
                                 run_id=meta.get("run_id"),
                                 active_file=ckpt.with_name("train.mlflow_run.json")) if lead
              else contextlib.nullcontext())
    with run_cm as run:
        def on_epoch(stats: EpochStats, st: TrainState) -> None:
            if lead:
                tracking.log_metrics(stats.metrics(), step=stats.epoch)
                save_checkpoint(ckpt, st, {"fingerprint": key, "run_id": run.info.run_id})

        if lead:
            tracking.set_tags(tracking.execution_tags())
            if state is None:
                _log_inputs(src)
        result = fit(job.model, train_arrays(train_store), val_arrays(val_store), cfg,
                     params.model, params.occlusion, params.seed, device, state=state,
                     on_epoch=on_epoch, before_epoch=job.before_epoch)
        if lead:
            model_file = write_outputs(out, job, params, result)
            tracking.tag_model(model_file)  # validate finds this run by the model's bytes
            seconds = _log_result(result.history, result.best_epoch)
            if cfg.log_model:  # the pyfunc model: preprocessing + classes, servable by MLflow
                log_pyfunc_model(model_file, cfg.registered_model_name,
                                 cfg.registered_model_alias)
            ckpt.unlink(missing_ok=True)
            print(f"train: done in {seconds:.1f} s, best epoch {result.best_epoch} "
                  f"({cfg.monitor} {result.best_score:.4f}), MLflow run {run.info.run_id} "
                  f"-> {out}")
    if ddp:
        dist.teardown()
    return result.history


def _announce(params: Params, n_par: int, n_train: int, n_val: int, n_classes: int,
              device: torch.device, state: TrainState | None, ckpt: Path) -> None:
    ddp = dist.is_worker()
    print(f"train: {params.model.name} ({n_par / 1e6:.2f}M parameters) on {n_train} faces "
          f"({n_val} val), {n_classes} classes, device {device}"
          + (f", {torch.distributed.get_world_size()} processes" if ddp else "")
          + (f"; resuming after epoch {state.epoch} from {ckpt}" if state else ""))


def _log_result(history: list[EpochStats], best_epoch: int) -> float:
    """Log the selected epoch's metrics and the training seconds (a resumed run's earlier
    epochs too); returns those seconds."""
    best = next(h for h in history if h.epoch == best_epoch)
    seconds = sum(h.seconds for h in history)
    tracking.log_metrics({"best/epoch": best.epoch, "best/val/acc": best.val_acc,
                          "best/val_occluded/acc": best.val_occluded_acc,
                          "best/val_mixed/acc": best.val_mixed_acc, "train/seconds": seconds})
    return seconds


def _log_inputs(src: Path) -> None:
    """The data the model saw, from the sibling stage folders: the occlusion preview and split
    summary as artifacts, acquire's counts as ``acquire/read``, ``acquire/kept``,
    ``acquire/rejected``."""
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
