"""S400 train: fit ``model.name`` on ``data/split/train``, track it in MLflow, write ``models/``.

``model.pt`` and ``history.csv`` are byte-identical between executions; the MLflow run is tagged
with the model's SHA-256. A killed stage resumes from ``checkpoints/train.pt``. Options:
``train.init_from``, ``train.teacher`` (distillation), DDP (under torchrun; rank 0 writes)."""

import contextlib
from pathlib import Path

import torch

from occlufer import tracking
from occlufer.config import Params
from occlufer.data.store import read_store
from occlufer.inference.pyfunc import log_pyfunc_model
from occlufer.model_files import resolve_model_file
from occlufer.stages import run_stage, stage_params
from occlufer.training import EpochStats, TrainState, distill, fit, resolve_device
from occlufer.training import distributed as dist
from occlufer.training.augment import train_arrays, val_arrays
from occlufer.training.checkpoints import checkpoint_path, fingerprint, resume, save_checkpoint
from occlufer.training.job import announce, log_inputs, log_result, prepare, write_outputs

SRC = Path("data/split")
OUT = Path("models")


def train(params: Params, src: Path = SRC, out: Path = OUT) -> list[EpochStats]:
    """Train (or resume), log to MLflow, write ``out``; returns the per-epoch history."""
    cfg = params.train
    ddp = dist.is_worker()
    device = dist.setup(cfg.device) if ddp else resolve_device(cfg.device)
    lead = not ddp or torch.distributed.get_rank() == 0  # logs, checkpoints, writes
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    train_store, val_store = read_store(src / "train"), read_store(src / "val")
    init_file = resolve_model_file(cfg.init_from) if cfg.init_from else None
    classes = list(train_store.manifest["label"].cat.categories)
    image_size = int(train_store.images.shape[1])
    teacher = (distill.load_teacher(str(cfg.teacher), classes, image_size)
               if cfg.teacher else None)  # checked before anything is written
    job = prepare(params, classes, image_size, init_file, print_=lead)
    ckpt = checkpoint_path(out)
    key = fingerprint(params, src, init_file, teacher.path if teacher is not None else None)
    state, meta = resume(ckpt, key, lead)
    if lead:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        announce(params, job, len(train_store), len(val_store), device, state, ckpt)
    with (tracking.start_run(cfg.mlflow_experiment, params.to_dict(), run_id=meta.get("run_id"),
                             active_file=ckpt.with_name("train.mlflow_run.json"))
          if lead else contextlib.nullcontext()) as run:
        def on_epoch(stats: EpochStats, st: TrainState) -> None:
            if lead:
                tracking.log_metrics(stats.metrics(), step=stats.epoch)
                save_checkpoint(ckpt, st, {"fingerprint": key, "run_id": run.info.run_id})

        if lead:
            tracking.set_tags(tracking.execution_tags())
            if state is None:
                log_inputs(src)
        arrays, taught_by = train_arrays(train_store), None
        if teacher is not None:
            arrays.teacher = teacher.logits(arrays, device)
            if lead:
                acc = distill.teacher_accuracy(arrays.teacher, arrays)
                print(distill.announce(teacher.ref, teacher.meta, acc), flush=True)
                tracking.log_metrics({"teacher/train_acc": acc})
                taught_by = teacher.provenance(acc, cfg.distill, cfg.distill_temperature)
            teacher = None  # its logits are all the fit needs: the model is not kept in memory
        result = fit(job.model, arrays, val_arrays(val_store), cfg,
                     params.model, params.occlusion, params.seed, device, state=state,
                     on_epoch=on_epoch, before_epoch=job.before_epoch)
        if lead:
            model_file = write_outputs(out, job, params, result, teacher=taught_by)
            tracking.tag_model(model_file)  # validate finds this run by the model's bytes
            seconds = log_result(result)
            if cfg.log_model:  # the pyfunc model: preprocessing + classes, servable by MLflow
                log_pyfunc_model(model_file, cfg.registered_model_name, cfg.registered_model_alias)
            ckpt.unlink(missing_ok=True)
            print(f"train: done in {seconds:.1f} s, best epoch {result.best_epoch} ({cfg.monitor} "
                  f"{result.best_score:.4f}), MLflow run {run.info.run_id} -> {out}")
    if ddp:
        dist.teardown()
    return result.history


def main() -> None:
    params = stage_params()
    dist.run(params.train, lambda: train(params))  # here, or under torchrun (DDP)


if __name__ == "__main__":
    run_stage("train", main)
