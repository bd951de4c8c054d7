"""Inference faces/s by batch size, memory layout and kernels: what ``validate.batch_size`` and
the per-epoch val pass (:func:`occlufer.training.loop.eval_batch`) should be on a CPU.

    python benchmarks/eval_batch.py [--faces 1500] [--repeats 5] [--batches 256,128,64,32]

For ``seed_cnn`` (the default pipeline's model) and ``compact`` (width 32, the FER2013 CPU
recipes'), untrained weights, eval mode, no grad, 2 threads: random 48×48 faces scored in
batches of each size, NCHW and channels-last, once with this CPU's kernels and once with
``portable: true``'s (:mod:`occlufer.kernels`; each in a fresh interpreter, since the settings
are read when torch starts). Prints the median faces/s over ``--repeats`` passes and the
largest difference of a logit from those at the first batch size: the matrix products block
by the batch, so the logits may differ in their last bits (about 1e-8), not more. Compare rows
within one run only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

MODELS = {"seed_cnn": {}, "compact": {"width": 32}}


def measure(portable: bool, faces: int, repeats: int, batches: list[int]) -> None:
    import torch

    from occlufer import kernels

    kernels.use(portable)  # portable: re-executes this script once with the pinned kernels
    torch.set_num_threads(kernels.PORTABLE_THREADS)
    from occlufer.models import build_model

    torch.manual_seed(0)
    x = torch.rand(faces, 1, 48, 48)
    kind = "portable" if portable else "this CPU's"
    for name, arch in MODELS.items():
        model = build_model(name, num_classes=7, image_size=48, **arch).eval()
        for layout, fmt in (("NCHW", torch.contiguous_format),
                            ("channels-last", torch.channels_last)):
            model = model.to(memory_format=fmt)
            xs = x.contiguous(memory_format=fmt)
            first = None
            for bs in batches:
                with torch.no_grad():
                    def run() -> torch.Tensor:
                        return torch.cat([model(xs[i:i + bs]) for i in range(0, faces, bs)])

                    out = run()  # warm-up
                    times = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        run()
                        times.append(time.perf_counter() - t0)
                first = out if first is None else first
                print(f"| {kind} | {name} | {layout} | {bs} | "
                      f"{faces / statistics.median(times):,.0f} | "
                      f"{float((out - first).abs().max()):.1e} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="256,128,64,32")
    ap.add_argument("--portable", choices=["0", "1"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.portable is not None:
        measure(args.portable == "1", args.faces, args.repeats, batches)
        return
    from _common import hardware

    print(f"# {hardware()}")
    print(f"# {args.faces} faces, median of {args.repeats} passes; max |Δ logit| against "
          f"batch {batches[0]} in the same layout")
    print("| kernels | model | layout | batch | faces/s | max abs Δ logit |")
    print("| --- | --- | --- | --- | --- | --- |", flush=True)
    for portable in ("0", "1"):
        subprocess.run([sys.executable, __file__, "--portable", portable, "--faces",
                        str(args.faces), "--repeats", str(args.repeats), "--batches",
                        args.batches], check=True)


if __name__ == "__main__":
    main()
