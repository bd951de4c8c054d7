"""DDP: ``train.devices`` × ``train.nodes`` > 1 re-launches the train stage under torchrun
(:func:`run`); each worker joins with :func:`setup` (NCCL on GPUs, gloo on CPUs).
"""

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch

from occlufer.config import TrainCfg
from occlufer.errors import OccluferError


def is_worker() -> bool:
    """True inside a process that torchrun started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_command(cfg: TrainCfg, module: str) -> list[str]:
    """The torchrun command line that runs ``python -m module`` in every process."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.devices}"]
    if cfg.nodes > 1:
        if not cfg.rdzv_endpoint:
            raise OccluferError(f"train.nodes = {cfg.nodes} needs train.rdzv_endpoint, the "
                                "host:port of node 0 that every node can reach "
                                "(e.g. -S train.rdzv_endpoint=10.0.0.1:29400)")
        cmd += [f"--nnodes={cfg.nodes}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={cfg.rdzv_endpoint}",
                f"--rdzv-id={os.environ.get('OCCLUFER_RDZV_ID', 'occlufer')}"]
    else:
        cmd += ["--standalone"]
    return [*cmd, "-m", module]


def launch(cfg: TrainCfg, module: str = "occlufer.stages.train") -> int:
    """Run the stage under torchrun; returns its exit code."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        have = torch.cuda.device_count()
        if have < cfg.devices:
            raise OccluferError(f"train.devices = {cfg.devices} but this node has {have} CUDA "
                                f"device(s); use -S train.devices={max(have, 1)}")
    cmd = launch_command(cfg, module)
    print(f"train: launching {cfg.devices * cfg.nodes} processes: {' '.join(cmd[1:])}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.call(cmd, env=env)


def run(cfg: TrainCfg, work: Callable[[], Any]) -> None:
    """``work()`` here, or in every torchrun process (exit: its code) when ``cfg`` asks."""
    if cfg.devices * cfg.nodes <= 1 or is_worker():
        work()
    elif code := launch(cfg):
        raise SystemExit(code)


def setup(device_name: str) -> torch.device:
    """Join the process group of a torchrun worker; returns this process's device."""
    local = int(os.environ["LOCAL_RANK"])
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.device("cuda", local) if cuda else torch.device("cpu")


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
