"""What ``occlufer evaluate`` scores: any model ``--model`` takes and labelled faces (an image
folder or a stage's image store), read with the pipeline's own rules."""

from pathlib import Path
from typing import Any

import numpy as np

from occlufer.data.store import read_store
from occlufer.errors import OccluferError
from occlufer.evaluation.evaluate import EvalSet
from occlufer.inference.predictor import ModelChoice, resolve_model


def load_any_model(ref: str | ModelChoice | None, tmp: Path | None = None,
                   ) -> tuple[Any, dict[str, Any], str]:
    """(model in eval mode, metadata, where it came from) for anything ``--model`` takes
    (:func:`occlufer.inference.predictor.resolve_model`)."""
    from occlufer.models import load_model

    choice = ref if isinstance(ref, ModelChoice) else resolve_model(ref)
    model, meta = load_model(choice.torch_file())
    return model, meta, choice.ref


def load_faces(ref: str, image_size: int, tmp: Path) -> tuple[EvalSet, list[tuple[str, str]]]:
    """(faces at ``image_size``, unused inputs as (path, reason)) from a store folder or an image
    folder (``root/[<split>/]<class>/...``, decoded by acquire's reader)."""
    from occlufer.config import AcquireCfg
    from occlufer.data.images import resize
    from occlufer.data.readers import read_image_folder
    from occlufer.labels import LABELS

    path = Path(ref)
    if not path.is_dir():
        raise OccluferError(f"--data {ref}: not a folder; give an image folder (class "
                            "subfolders) or a stage store such as data/split/val")
    if (path / "images.npy").is_file() and (path / "manifest.parquet").is_file():
        store, rejects = read_store(path), []
    else:
        unused = ("labels_path", "group_regex", "faces", "face_margin", "face_min_size",
                  "detector", "n_per_class", "n_subjects", "intensity", "noise")
        cfg = AcquireCfg(source="image_folder", path=str(path), image_size=image_size,
                         classes=list(LABELS), unknown_labels="drop", min_size=1,
                         max_reject_fraction=1.0, dedupe=False, workers=0,
                         **dict.fromkeys(unused))
        acquired = read_image_folder(cfg, tmp / "faces")
        if acquired.manifest.empty:
            raise OccluferError(f"--data {ref}: no labelled images found (layout "
                                "root/<class>/<image>, class folders named after the labels)")
        store, rejects = read_store(tmp / "faces"), acquired.rejects
    data = EvalSet.from_store(store, ref)
    if data.images.shape[1:] != (image_size, image_size):
        data.images = np.stack([resize(np.asarray(im), image_size) for im in data.images])
    return data, rejects
