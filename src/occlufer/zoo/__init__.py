"""The model zoo: each entry ``NAME`` is ``NAME.pt``, ``NAME.json`` (the card) and ``NAME.md`` in
:func:`zoo_dir`, written by ``occlufer zoo publish``. ``--model zoo:NAME`` names one;
:data:`DEFAULT` is used when no model is named or trained. Imports neither PyTorch nor MLflow.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occlufer.errors import OccluferError
from occlufer.hashing import file_sha256 as sha256

#: the entry used when no model is named and none was trained here
DEFAULT = "fer2013"
SCHEME = "zoo:"
ENV = "OCCLUFER_ZOO_DIR"
FORMAT = 1
#: the largest weights file an entry may have (the zoo is committed to git)
MAX_BYTES = 10 * 1024 * 1024
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def zoo_dir() -> Path:
    """``$OCCLUFER_ZOO_DIR`` when set, else this package's folder (``src/occlufer/zoo``)."""
    env = os.environ.get(ENV)
    return Path(env) if env else Path(__file__).resolve().parent


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise OccluferError(f"zoo entry name {name!r}: use lower-case letters, digits, '_', '-' "
                            "or '.' (e.g. fer2013)")
    return name


def names(folder: Path | None = None) -> list[str]:
    """Entries with a card in the zoo folder, sorted."""
    folder = folder or zoo_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _fix(name: str, what: Path) -> str:
    """How to get a good copy of a shipped file back."""
    if what.parent.resolve() == Path(__file__).resolve().parent:
        restore = (f"restore it (`git checkout -- src/occlufer/zoo/{what.name}` or reinstall "
                   "occlufer)")
    else:
        restore = f"restore it from where {what.parent} came from"
    return f"{restore} or republish it (`occlufer zoo publish {name}`)"


@dataclass(frozen=True)
class Entry:
    """A zoo entry whose card could be read (the weights are checked by :func:`verify`)."""

    name: str
    card: dict[str, Any]
    folder: Path

    @property
    def pt(self) -> Path:
        return self.folder / f"{self.name}.pt"

    @property
    def md(self) -> Path:
        return self.folder / f"{self.name}.md"

    @property
    def json(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def image_size(self) -> int:
        return int(self.card["image_size"])

    @property
    def headline(self) -> dict[str, Any]:
        """The clean accuracy the card reports: split, acc, ci_low, ci_high (may be empty)."""
        ev = self.card.get("evaluation") or {}
        return {"split": ev.get("split"), **(ev.get("clean") or {})}

    def line(self) -> str:
        """``model: zoo:NAME (title, test acc 0.660; occlufer zoo show NAME)``."""
        head = self.headline
        acc = (f", {head['split']} acc {head['acc']:.3f}" if isinstance(head.get("acc"), float)
               else "")
        return (f"model: {SCHEME}{self.name} ({self.card.get('title', self.name)}{acc}; "
                f"occlufer zoo show {self.name})")


def entry(name: str, folder: Path | None = None) -> Entry:
    """The card of entry ``name``; an unknown name or an unreadable card is one line."""
    folder = folder or zoo_dir()
    path = folder / f"{name}.json"
    if not path.is_file():
        if (folder / f"{name}.pt").is_file():
            raise OccluferError(f"zoo:{name}: {path} (its model card) is missing; "
                                + _fix(name, path))
        have = names(folder)
        listed = (f"available: {', '.join(have)}" if have
                  else "the zoo is empty: no model has been published yet")
        raise OccluferError(f"zoo:{name}: no such zoo entry in {folder} ({listed}); see "
                            "`occlufer zoo list`, or train a model with `dvc repro`")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            raise ValueError("not a JSON object")
        for key, kind in (("classes", list), ("image_size", int), ("file", dict),
                          ("preprocessing", dict)):
            if not isinstance(card.get(key), kind):
                raise ValueError(f"no `{key}` ({kind.__name__})")
    except (ValueError, UnicodeDecodeError) as exc:
        raise OccluferError(f"zoo:{name}: {path} is not a valid model card "
                            f"({str(exc).splitlines()[0][:120]}); " + _fix(name, path)) from None
    return Entry(name, card, folder)


def verify(name: str, folder: Path | None = None) -> Entry:
    """The entry, once its ``.pt`` is checked against its card (size, sha256, classes, image
    size, architecture, preprocessing); each failure is one line naming the file and the fix."""
    e = entry(check_name(name), folder)
    card, pt = e.card, e.pt
    republish = f"republish it (`occlufer zoo publish {name}`)"

    def bad(problem: str, fix: str = _fix(name, pt)) -> OccluferError:
        return OccluferError(f"zoo:{name}: {problem}; {fix}")

    if not pt.is_file():
        raise bad(f"{pt} is missing (the card {e.json.name} is there)")
    want_sha, want_bytes = card["file"].get("sha256"), card["file"].get("bytes")
    size = pt.stat().st_size
    if want_bytes is not None and size != want_bytes:
        raise bad(f"{pt} has {size} bytes, its card says {want_bytes} (truncated or replaced)")
    got = sha256(pt)
    if got != want_sha:
        raise bad(f"{pt} has sha256 {got[:12]}…, its card says {str(want_sha)[:12]}… (changed "
                  "or corrupted)")
    import torch

    from occlufer.labels import LABELS
    from occlufer.models import MODELS

    try:
        meta = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise bad(f"{pt} is not a readable model file ({str(exc).splitlines()[0][:120]})") \
            from None
    if not isinstance(meta, dict) or "state_dict" not in meta:
        raise bad(f"{pt} is not an occlufer model file")
    if list(meta.get("classes", [])) != e.classes:
        raise bad(f"{pt} has classes {list(meta.get('classes', []))}, its card says {e.classes}")
    if int(meta.get("image_size", -1)) != e.image_size:
        raise bad(f"{pt} takes {meta.get('image_size')} px faces, its card says {e.image_size}")
    unknown = [c for c in e.classes if c not in LABELS]
    if unknown:
        raise bad(f"classes {unknown} are not occlufer labels ({', '.join(LABELS)})")
    if meta.get("name") not in MODELS:
        raise bad(f"architecture {meta.get('name')!r} is not registered in this occlufer "
                  "(occlufer.models.MODELS)", f"upgrade occlufer or {republish}")
    want, have = card["preprocessing"], preprocessing(e.image_size)
    diff = [k for k in ("mean", "std", "scale", "channels") if want.get(k) != have[k]]
    if diff:
        raise bad(f"the card's preprocessing ({', '.join(f'{k}={want.get(k)}' for k in diff)}) "
                  f"is not this occlufer's ({', '.join(f'{k}={have[k]}' for k in diff)})",
                  "use the occlufer version it was published with "
                  f"({card.get('occlufer_version')}) or {republish}")
    return e


def preprocessing(image_size: int) -> dict[str, Any]:
    """What a model of this occlufer expects (:func:`occlufer.preprocess.to_input`)."""
    from occlufer.data.faces import FACE_MARGIN, FACE_MIN_SIZE
    from occlufer.preprocess import MEAN, STD

    return {"input": f"uint8 grayscale face crop, {image_size}×{image_size}, one per face",
            "formula": "(x / scale - mean) / std, one channel",
            "scale": 255.0, "mean": float(MEAN), "std": float(STD), "channels": 1,
            "function": "occlufer.preprocess.to_input",
            "photos": {"detector": "BlazeFace full range, crops aligned by eyes and mouth to "
                                   "FER2013 geometry (occlufer predict; --detector haar: "
                                   "OpenCV's Haar cascade, box with the margin)",
                       "margin": FACE_MARGIN, "min_face": FACE_MIN_SIZE,
                       "no_detect": "centred square of the image, resized"}}
