"""Which CPU settings change the bits of a trained model: the same few training steps, once per
setting, each in a fresh interpreter (the settings are read when torch starts).

    python benchmarks/isa_bits.py [--steps 6] [--threads 1]

Trains occlufer's ``seed_cnn`` for ``--steps`` Adam steps on one fixed random batch (64 faces,
48×48) and prints the SHA-256 of its weights under: this CPU's defaults; ATen's portable
kernels (``ATEN_CPU_CAPABILITY=default``); oneDNN capped at SSE4.1
(``ONEDNN_MAX_CPU_ISA=SSE41``); MKL's reproducible mode (``MKL_CBWR=COMPATIBLE``); all three;
all three without oneDNN; the defaults on two threads; occlufer's ``portable: true``
(:mod:`occlufer.kernels`: its environment, 2 threads, oneDNN and NNPACK off) as this CPU is and
as an imitated older one (ATen and oneDNN at SSE4.1, one thread). Equal hashes = the setting
does not matter for these steps; see docs/reproducibility.md for what the differences mean. The
last column is the seconds the steps took (one run: compare settings within one run only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time

from occlufer.kernels import PORTABLE_ENV, PORTABLE_THREADS

PINNED = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
          "MKL_CBWR": "COMPATIBLE"}
OLD_CPU = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}
SETTINGS: dict[str, tuple[dict[str, str], int | None, bool, bool]] = {
    # name: (environment, threads (None: --threads), oneDNN on, occlufer.kernels.use(True))
    "defaults": ({}, None, True, False),
    "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, None, True, False),
    "ONEDNN_MAX_CPU_ISA=SSE41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, None, True, False),
    "MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, None, True, False),
    "all three": (PINNED, None, True, False),
    "all three, oneDNN off": (PINNED, None, False, False),
    "defaults, 2 threads": ({}, 2, True, False),
    "defaults, older CPU, 1 thread": (OLD_CPU, 1, True, False),
    "portable": ({}, PORTABLE_THREADS, True, True),
    "portable, older CPU, 1 thread": (OLD_CPU, 1, True, True),
}


def train_once(steps: int, threads: int, mkldnn: bool, portable: bool) -> str:
    """Run the steps in this interpreter; one line: capability, loss, weights sha, seconds."""
    import torch

    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
    if portable:
        from occlufer import kernels

        kernels.use(True)  # main started this child with kernels.PORTABLE_ENV
    from occlufer.models import build_model

    torch.manual_seed(0)
    model = build_model("seed_cnn", num_classes=7, image_size=48, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 48, 48, generator=g)
    y = torch.randint(0, 7, (64,), generator=g)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode() + v.numpy().tobytes())
    seconds = time.perf_counter() - start
    return (f"{torch.backends.cpu.get_cpu_capability():8s} {torch.get_num_threads()} "
            f"{loss.item():.9f} {h.hexdigest()[:16]} {seconds:7.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # threads, mkldnn, portable
    args = ap.parse_args()
    if args.child:
        print(train_once(args.steps, int(args.child[0]), args.child[1] == "1",
                         args.child[2] == "1"))
        return
    from _common import hardware

    print(f"# {hardware()}; {args.steps} Adam steps of seed_cnn on one fixed batch")
    print(f"{'setting':30s} {'ATen':8s} thr {'last loss':11s} {'weights sha256':16s} seconds")
    base = {k: v for k, v in os.environ.items() if k not in {**PINNED, **PORTABLE_ENV}}
    for name, (env, threads, mkldnn, portable) in SETTINGS.items():
        n = threads or args.threads
        out = subprocess.run(
            [sys.executable, __file__, "--steps", str(args.steps), "--child", str(n),
             "1" if mkldnn else "0", "1" if portable else "0"],
            env={**base, **env, "OMP_NUM_THREADS": str(n), **(PORTABLE_ENV if portable else {})},
            capture_output=True, text=True, check=True)
        print(f"{name:30s} {out.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
