"""S100 acquire: faces into ``data/acquired`` (image store + preview + rejects + summary).

``acquire.source``: synthetic faces or a reader of :mod:`occlufer.data.readers`. Every input
ends up in the manifest or in ``rejects.csv``; the stage stops when too much was rejected."""

import time
from collections import Counter
from pathlib import Path

import pandas as pd

from occlufer.config import Params
from occlufer.data.readers import EXCLUDED, Acquired, AcquireError, no_keypoints, read_source
from occlufer.data.store import Store, read_store, write_store
from occlufer.data.synthetic import SyntheticSpec, generate, preview_grid
from occlufer.jsonio import write_json
from occlufer.stages import run_stage, stage_params

OUT = Path("data/acquired")


def synthetic(params: Params, out: Path) -> Acquired:
    """Draw the embedded synthetic faces."""
    cfg = params.acquire
    spec = SyntheticSpec(n_per_class=cfg.n_per_class, n_subjects=cfg.n_subjects,
                         size=cfg.image_size, intensity=tuple(cfg.intensity), noise=cfg.noise)
    images, labels, subjects = generate(spec, params.seed, cfg.classes)
    n = len(images)
    manifest = pd.DataFrame({
        "id": [f"syn-{i:06d}" for i in range(n)],
        "label": pd.Categorical.from_codes(labels, categories=list(cfg.classes)),
        "group": [f"subject-{s:04d}" for s in subjects],
        "source": "synthetic", "source_path": "", "source_split": "", **no_keypoints(n),
    })
    write_store(out, Store(images, manifest))
    return Acquired(manifest, [], n)


def acquire(params: Params, out: Path = OUT) -> dict[str, int]:
    """Acquire ``params.acquire.source`` into ``out``; returns the read / kept / rejected counts."""
    cfg = params.acquire
    start = time.perf_counter()
    got = synthetic(params, out) if cfg.source == "synthetic" else read_source(cfg, out)
    rejects = pd.DataFrame(got.rejects, columns=["path", "reason"], dtype=str)
    rejects.to_csv(out / "rejects.csv", index=False)
    reasons = Counter(r.split(":", 1)[0] for _, r in got.rejects)
    counts = {"read": got.read, "kept": got.kept, "rejected": len(got.rejects)}
    bad = sum(v for k, v in reasons.items() if k not in EXCLUDED)
    m = got.manifest
    per_class = {str(k): int(v) for k, v in m["label"].value_counts(sort=False).items()}
    per_split = {str(k): int(v) for k, v in m["source_split"].value_counts().sort_index().items()}
    write_json(out / "summary.json", {  # no timing: a DVC output is the same in every execution
        **counts, "faces": len(m), "rejected_by_reason": dict(sorted(reasons.items())),
        "per_class": per_class, "per_split": per_split, "notes": got.notes})
    print(f"acquire: read {got.read}, kept {got.kept}, rejected {len(got.rejects)} -> {out}"
          + (f" ({len(m)} faces)" if len(m) != got.kept else "")
          + f" in {time.perf_counter() - start:.1f} s")
    if reasons:
        print("  rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
              + f" (details in {out / 'rejects.csv'})")
    for cls in (c for c, k in per_class.items() if k == 0):
        print(f"  warning: no images of class {cls!r}")
    if len(m) == 0:
        raise AcquireError(f"nothing usable in {cfg.path or cfg.source}: read {got.read}, all "
                           f"rejected; see {out / 'rejects.csv'}")
    if got.read and bad / got.read > cfg.max_reject_fraction:
        raise AcquireError(f"{bad} of {got.read} inputs rejected ({bad / got.read:.1%}) > "
                           f"acquire.max_reject_fraction {cfg.max_reject_fraction}; see "
                           f"{out / 'rejects.csv'}, fix the data or raise the fraction")
    store = read_store(out)
    preview_grid(store.images, store.manifest["label"].cat.codes.to_numpy(),
                 list(cfg.classes)).save(out / "preview.png")
    return counts


def main() -> None:  # tests/stages/test_acquire_faults.py calls it
    run_stage("acquire", lambda: acquire(stage_params()))


if __name__ == "__main__":
    main()
