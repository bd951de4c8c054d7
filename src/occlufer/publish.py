"""``occlufer zoo publish``: a zoo entry built from a finished pipeline run, card included.
Everything on the card is read from the run: ``models/model.pt``, validate's report,
``params.yaml``, ``dvc.lock``, git, and the MLflow run that logged ``model.pt`` (by sha256).
Weights are stored in fp16 when that keeps parity with fp32 (:func:`fp16_parity`).
"""

import contextlib
import copy
import datetime as dt
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from occlufer import __version__
from occlufer.errors import OccluferError
from occlufer.hardware import hardware
from occlufer.recipe import flat_keys
from occlufer.tracking import HARDWARE_TAG, find_model_run, tracking_uri
from occlufer.zoo import FORMAT, MAX_BYTES, check_name, preprocessing, sha256, zoo_dir

#: fp16 weights are kept when no probability of the parity faces moves by more than this
#: against fp32 (labels change only at near-ties) and at least this share keep their label
PARITY_MAX_PROB_DIFF = 0.01
PARITY_MIN_AGREEMENT = 0.99
PARITY_FACES = 512


def _probs(model: Any, faces: np.ndarray) -> np.ndarray:
    import torch

    from occlufer.preprocess import to_input

    with torch.inference_mode():
        return np.concatenate([torch.softmax(model(to_input(faces[i:i + 256])).float(), 1)
                               .numpy() for i in range(0, len(faces), 256)])


def fp16_parity(model: Any, faces: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fp16 state dict, parity): ``model`` against itself with fp16-rounded weights loaded
    back into fp32 (as :func:`load_model` does): ``argmax_agreement``, ``max_prob_diff``."""
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    rounded = copy.deepcopy(model)
    rounded.load_state_dict(half)
    rounded.eval()
    a, b = _probs(model.eval(), faces), _probs(rounded, faces)
    agree = float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0
    diff = float(np.abs(a - b).max()) if len(a) else 0.0
    ok = agree >= PARITY_MIN_AGREEMENT and diff <= PARITY_MAX_PROB_DIFF
    return half, {"faces": int(len(faces)), "argmax_agreement": round(agree, 6),
                  "max_prob_diff": float(f"{diff:.3g}"), "parity": ok,
                  "rule": f"max probability difference <= {PARITY_MAX_PROB_DIFF} and argmax "
                          f"agreement >= {PARITY_MIN_AGREEMENT}"}


def parity_faces(run: Path, image_size: int, n: int = PARITY_FACES) -> tuple[np.ndarray, str]:
    """(faces, where from): the first ``n`` of the run's test (else val) split, else synthetic."""
    for split in ("test", "val"):
        try:
            images = np.load(run / "data" / "split" / split / "images.npy", mmap_mode="r")
        except (OSError, ValueError):
            continue
        if images.ndim == 3 and images.shape[1:] == (image_size, image_size) and len(images):
            return np.asarray(images[:n], dtype=np.uint8), f"data/split/{split} (first {n})"
    from occlufer.data.synthetic import SyntheticSpec, generate

    faces = generate(SyntheticSpec(n_per_class=-(-n // 7), size=image_size), seed=0)[0][:n]
    return faces, "synthetic faces: occlufer.data.synthetic, seed 0"


def _read_json(path: Path, what: str, fix: str) -> Any:
    if not path.is_file():
        raise OccluferError(f"{path}: no {what}; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise OccluferError(f"{path}: not valid JSON ({str(exc)[:120]}); {fix}") from None


def read_report(folder: Path, fix: str) -> dict[str, Any]:
    """A validate report's metrics: ``metrics.json`` merged with ``detail.json`` if present."""
    from occlufer.headline import DETAIL_FILE, HEADLINE_FILE

    head = _read_json(folder / HEADLINE_FILE, "validate report", fix)
    detail = folder / DETAIL_FILE
    return {**(_read_json(detail, "validate detail", fix) if detail.is_file() else {}), **head}


def _git_out(run: Path, *args: str, text: bool = True) -> Any:
    """stdout of ``git args`` in ``run`` (bytes with ``text=False``); None on failure."""
    try:
        out = subprocess.run(["git", *args], cwd=run, capture_output=True, text=text,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _git(run: Path) -> dict[str, Any]:
    commit = _git_out(run, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "note": "not a git checkout"}
    status = _git_out(run, "status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(changed), "changed": changed[:30]}


def _committed(run: Path, file: Path, digest: str, head: str | None) -> dict[str, str] | None:
    """{commit, path} when ``run``'s checkout holds ``file``'s exact bytes at HEAD (``head``)."""
    top = _git_out(run, "rev-parse", "--show-toplevel")
    if not top or not head:
        return None
    try:
        rel = file.resolve().relative_to(Path(top.strip()).resolve()).as_posix()
    except ValueError:
        return None
    blob = _git_out(run, "show", f"HEAD:{rel}", text=False)
    if blob is None or hashlib.sha256(blob).hexdigest() != digest:
        return None
    return {"commit": head, "path": rel}


def _lock(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise OccluferError(f"{path}: no dvc.lock; publish from the folder of a finished "
                            "pipeline run (`dvc exp run -S experiment=fer2013_cpu`)")
    try:
        return dict((yaml.safe_load(path.read_text(encoding="utf-8")) or {})["stages"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        raise OccluferError(f"{path}: not a DVC lock file (no `stages`); run the pipeline "
                            "(`dvc repro`) to write it") from None


def data_hashes(stages: Mapping[str, Any]) -> dict[str, Any]:
    """Per stage of ``dvc.lock``: md5 of its outs and deps (``.dir`` for folders)."""
    return {stage: {kind: {str(e["path"]): e.get("md5") for e in (body or {}).get(kind) or []
                           if isinstance(e, Mapping) and "path" in e}
                    for kind in ("outs", "deps")}
            for stage, body in stages.items()}


def _check_lock_params(stages: Mapping[str, Any], params: Mapping[str, Any], lock: Path,
                       params_path: Path) -> None:
    """The params dvc.lock recorded for each stage must be those of params.yaml."""
    for stage, body in stages.items():
        recorded = ((body or {}).get("params") or {}).get("params.yaml") or {}
        for key, value in recorded.items():
            if reduce(lambda d, k: d.get(k) if isinstance(d, Mapping) else None,
                      key.split("."), params) != value:
                raise OccluferError(f"{params_path}: `{key}` differs from what {lock} recorded "
                                    f"for stage {stage}, so models/ was not trained with it; "
                                    "publish from the run's own workspace (`dvc exp apply "
                                    "<exp>`, or rerun `dvc repro`)")


def recipe_of(params: Mapping[str, Any], conf: Path, recipe: str | None) -> dict[str, Any]:
    """The recipe (``conf/experiment/<recipe>.yaml``) and how the run's params differ from it;
    without ``recipe``, the experiment composing to params.yaml (else ``custom``)."""
    import yaml
    from omegaconf import OmegaConf

    from occlufer.config import compose

    if not (conf / "config.yaml").is_file():
        return {"name": recipe or "custom", "conf": None, "overrides": None,
                "note": f"{conf}/ not found: params not compared with the recipe"}
    candidates = [recipe] if recipe else [
        None, *sorted(p.stem for p in (conf / "experiment").glob("*.yaml"))]
    flat = flat_keys(params)
    for cand in candidates:  # composed as `dvc exp run` writes params.yaml (YAML round trip)
        data = compose([f"experiment={cand}"] if cand else [], conf)
        composed = flat_keys(yaml.safe_load(OmegaConf.to_yaml(OmegaConf.create(dict(data)))))
        diff = {k: {"recipe": composed.get(k), "run": flat.get(k)}
                for k in sorted(set(composed) | set(flat)) if composed.get(k) != flat.get(k)}
        if recipe or not diff:
            break
    else:
        return {"name": "custom", "conf": None, "overrides": None,
                "note": "params.yaml matches no conf/experiment option; name it with --recipe"}
    name = cand or "default"
    return {"name": name, "conf": (f"conf/experiment/{name}.yaml" if name != "default"
                                   else "conf/config.yaml"),
            "command": ("dvc exp run" + (f" -S experiment={name}" if name != "default" else "")
                        + "".join(f" -S '{k}={json.dumps(v['run'])}'" for k, v in diff.items())),
            "overrides": diff}


def _group(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    keys = {"acc": "acc", "ci_low": "acc_ci_low", "ci_high": "acc_ci_high", "n": "n",
            "ece": "ece", "macro_f1": "macro_f1"}
    return {k: (int(metrics[f"{prefix}/{m}"]) if k == "n" else float(metrics[f"{prefix}/{m}"]))
            for k, m in keys.items() if f"{prefix}/{m}" in metrics}


def evaluation(metrics: Mapping[str, float], validate: Mapping[str, Any]) -> dict[str, Any]:
    """The card's accuracy and calibration: the test split's keys when present, else val's."""
    split = "test" if "test/acc" in metrics else "val" if "val/acc" in metrics else None
    if split is None:
        raise OccluferError("the validate report has neither test/acc nor val/acc; run the "
                            "validate stage (`dvc repro validate`)")
    rob = "test_robustness" if split == "test" else "robustness"
    occ = f"{split}_occluded/occluder/"
    types = sorted({k[len(occ):].split("/")[0] for k in metrics if k.startswith(occ)}
                   | {k[len(rob) + 1:].split("/")[0] for k in metrics
                      if k.startswith(f"{rob}/") and k.endswith("/gap")})
    occluders = {}
    for t in types:
        row = _group(metrics, f"{occ}{t}")
        row.pop("ece", None)
        row.update({m: float(metrics[f"{rob}/{t}/{m}"]) for m in ("acc_at_gap", "gap", "auc")
                    if f"{rob}/{t}/{m}" in metrics})
        occluders[t] = row
    note = ("held-out test split (data/split/test): training never read it and it did not "
            "select the epoch" if split == "test" else
            "validation split: it also selected the best epoch, so the figures lean optimistic "
            "(the run had no test split)")
    out = {"split": split, "split_note": note, "source_keys": f"{split}/..., {split}_occluded/..."
           f", {rob}/...", "ci_level": validate.get("ci_level"),
           "ci_method": "percentile bootstrap over faces", "gap_ratio": validate.get("gap_ratio"),
           "clean": _group(metrics, split), "occluded": _group(metrics, f"{split}_occluded"),
           "occluders": occluders}
    if f"{rob}/mean_auc" in metrics:
        auc = {"value": metrics[f"{rob}/mean_auc"],
               "ci_low": metrics.get(f"{rob}/mean_auc_ci_low"),
               "ci_high": metrics.get(f"{rob}/mean_auc_ci_high")}
        out["robustness_mean_auc"] = {k: float(v) for k, v in auc.items() if v is not None}
    return out


def teacher_of(meta: Mapping[str, Any], params: Mapping[str, Any], run: Path,
               head: str | None) -> dict[str, Any] | None:
    """A distilled model's teacher: as ``model.pt`` recorded it, else the file ``train.teacher``
    names now; with ``git`` (commit, path) when the checkout holds those bytes at ``head``."""
    from occlufer.model_files import resolve_model_file

    train = params.get("train") or {}
    recorded = meta.get("teacher")
    if recorded is None and not train.get("teacher"):
        return None
    ref = str(recorded["ref"] if recorded is not None else train["teacher"])
    local = "://" not in ref and not ref.startswith(("runs:/", "models:/"))  # no download
    file: Path | None = None
    if local:
        with contextlib.suppress(OccluferError):
            file = resolve_model_file(ref)
    if recorded is not None:
        out = {**recorded, "source": "model.pt (recorded by train)"}
    else:
        old = "not recorded by model.pt (trained before train recorded its teacher)"
        out = {"ref": ref, "distill": train.get("distill"),
               "temperature": train.get("distill_temperature"),
               "sha256": sha256(file) if file is not None else None,
               "source": (f"{old}; an MLflow reference is not fetched to publish" if not local
                          else "not recorded by model.pt, and the reference no longer resolves"
                          if file is None else
                          f"{old}: the file the reference names when the card was published")}
    where = (_committed(run, file, out["sha256"], head)
             if file is not None and out.get("sha256") else None)
    if where:
        out["git"] = where
    return out


def training_time(meta: Mapping[str, Any], history: Path,
                  run: Any | None = None) -> dict[str, Any]:
    """``seconds`` from model.pt (older runs), else the MLflow ``run``'s ``train/seconds``,
    else the sum of history.csv's ``train/epoch_seconds``; ``epochs`` from history.csv."""
    import pandas as pd

    frame = pd.read_csv(history) if history.is_file() else pd.DataFrame()
    out: dict[str, Any] = {"epochs": int(len(frame))} if len(frame) else {}
    if meta.get("train_seconds") is not None:
        return {"seconds": float(meta["train_seconds"]), **out,
                "source": "model.pt (train_seconds, recorded by train)"}
    seconds = run.data.metrics.get("train/seconds") if run is not None else None
    what = "training and per-epoch validation, not data preparation or the validate stage)"
    if seconds is not None:
        return {"seconds": round(float(seconds), 1), **out,
                "source": f"MLflow run {run.info.run_id} (train/seconds: the sum of the "
                          f"epochs' {what}"}
    if "train/epoch_seconds" in frame:
        return {"seconds": round(float(frame["train/epoch_seconds"].sum()), 1), **out,
                "source": f"{history.name} (sum of train/epoch_seconds: {what}"}
    return {"seconds": None, **out, "source": "not recorded"}


def limits(card: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """What the model is not for: input, classes, data, occluders, calibration."""
    size, classes = card["image_size"], card["classes"]
    acquire = params.get("acquire") or {}
    ev = card["evaluation"]
    out = [f"Input: one {size}×{size} grayscale face crop per face (uint8), roughly frontal "
           "and centred as in the training data. Photos need a face detector first: "
           "`occlufer predict` finds faces with BlazeFace and aligns them to FER2013's eye and "
           "mouth positions; it misses faces under about 4% of the photo's longer side, and "
           "profile views align poorly.",
           f"{len(classes)} classes only ({', '.join(classes)}): every face is put in one of "
           "them, including faces showing none of them or things that are not faces. A facial "
           "expression is not a felt emotion.",
           f"The accuracy and calibration figures hold for the {ev['split']} split of the "
           "training data's distribution; on other people, cameras, lighting or spontaneous "
           "expressions expect lower accuracy.",
           "The occluders are occlufer's synthetic ones (drawn blocks, sunglasses, masks, hands, "
           f"hair, ...) covering {ev.get('gap_ratio')} of the face in the per-occluder figures; "
           "real occlusions may differ."]
    if acquire.get("source") == "synthetic":
        out.append("Trained on occlufer's synthetic faces: a pipeline check, not a model "
                   "for real photos.")
    elif "fer" in str(acquire.get("path") or "").lower() or "fer" in card["recipe"]["name"]:
        out.append("Trained on FER2013 (web images found by keyword search, one label each): "
                   "labels are noisy (its authors report about 65% human accuracy), the classes "
                   "are imbalanced (disgust is rare), and the people, ages, skin tones and "
                   "settings are those of web photos, not a balanced sample; the model inherits "
                   "these biases. Not for decisions about people.")
    ece = (ev.get("clean") or {}).get("ece")
    if ece is not None:
        out.append(f"Calibration: ECE {ece:.3f} on the clean {ev['split']} faces; confidences "
                   "outside that distribution are not probabilities of being right.")
    return out


def _save(card: Mapping[str, Any], out_json: Path, out_md: Path,
          weights: tuple[Path, Path] | None = None) -> None:
    """Write the card's json and Markdown whole, after moving the staged ``weights`` in place."""
    from occlufer.zoo.card import render

    staged = []
    for path, text in ((out_json, json.dumps(card, indent=2) + "\n"), (out_md, render(card))):
        staged.append((path.with_suffix(path.suffix + ".tmp"), path))
        staged[-1][0].write_text(text, encoding="utf-8")
    for tmp, path in ([weights] if weights else []) + staged:
        os.replace(tmp, path)


def publish(name: str, *, run: Path | None = None, models: str = "models",
            report: str = "reports/validate", params: str = "params.yaml",
            lock: str = "dvc.lock", recipe: str | None = None, conf: str = "conf",
            title: str | None = None, folder: Path | None = None) -> dict[str, Any]:
    """Write ``<name>.{pt,json,md}`` into ``folder`` (the zoo) from the pipeline run in ``run``
    (default: the working directory; other paths relative to it); returns the card."""
    import torch
    import yaml

    from occlufer.config import load_params
    from occlufer.models import load_model

    check_name(name)
    run = Path(run) if run is not None else Path()
    folder = Path(folder or zoo_dir())
    pt = run / models / "model.pt"
    if not pt.is_file():
        raise OccluferError(f"{pt}: no trained model; run the pipeline first (`dvc exp run "
                            "-S experiment=fer2013_cpu`) or pass --models")
    metrics = read_report(run / report, "run the validate stage (`dvc repro validate`) or pass "
                                         "--report")
    params_path = run / params
    checked = load_params(params_path).to_dict()  # validated: a bad params.yaml stops here
    raw = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    stages = _lock(run / lock)
    _check_lock_params(stages, raw, run / lock, params_path)
    git = _git(run)  # before anything is written: the zoo may be inside this checkout

    model, meta = load_model(pt)
    size, classes = int(meta["image_size"]), list(meta["classes"])
    faces, faces_from = parity_faces(run, size)
    half, parity = fp16_parity(model, faces)
    parity["faces_from"] = faces_from
    record = {k: v for k, v in meta.items() if k != "state_dict"}
    folder.mkdir(parents=True, exist_ok=True)
    out_pt = folder / f"{name}.pt"
    tmp_pt = out_pt.with_suffix(".pt.tmp")
    torch.save({**record, "state_dict": half if parity["parity"] else model.state_dict()},
               tmp_pt)
    nbytes = tmp_pt.stat().st_size
    if nbytes > MAX_BYTES:
        tmp_pt.unlink()
        raise OccluferError(f"{pt}: {nbytes / 2**20:.1f} MB even as "
                            f"{'fp16' if parity['parity'] else 'fp32'}; the zoo takes at most "
                            f"{MAX_BYTES / 2**20:.0f} MB (it is committed to git): publish a "
                            "smaller model (e.g. the fer2013_cpu recipe's)")

    tracked = None  # the MLflow run that logged model.pt (by sha256), in the run's store
    with contextlib.suppress(Exception):  # an unreachable server or broken store: not on it
        tracked = find_model_run(pt, tracking_uri(run))
    recipe_info = recipe_of(raw, run / conf, recipe)
    hw, hw_source = meta.get("hardware"), "model.pt (recorded by train)"
    if not hw and tracked is not None and tracked.data.tags.get(HARDWARE_TAG):
        hw = json.loads(tracked.data.tags[HARDWARE_TAG])
        hw_source = f"MLflow run {tracked.info.run_id} (tag {HARDWARE_TAG}, recorded by train)"
    if not hw:
        hw, hw_source = hardware(), ("the machine that ran `occlufer zoo publish` (taken as the "
                                     "one that trained)")
    card: dict[str, Any] = {
        "zoo_format": FORMAT,
        "name": name,
        "title": title or " ".join(p.upper() for p in recipe_info["name"].split("_")) + " recipe",
        "classes": classes,
        "image_size": size,
        "preprocessing": preprocessing(size),
        "file": {"path": out_pt.name, "sha256": sha256(tmp_pt), "bytes": nbytes,
                 "weights_dtype": "float16" if parity["parity"] else "float32",
                 "fp16_parity": parity, "loads_with": "occlufer.models.load_model"},
        "model": {"arch": meta["name"], "arch_params": dict(meta.get("arch") or {}),
                  "dropout": meta.get("dropout"),
                  "parameters": int(sum(p.numel() for p in model.parameters())),
                  "tta_flip": bool(meta.get("tta_flip", False)),
                  "tta_shift": int(meta.get("tta_shift", 0)), "best_epoch": meta.get("epoch")},
        "recipe": {**recipe_info, "params": raw},
        "provenance": {
            "git": git,
            "dvc_lock": data_hashes(stages),
            "source_model": {"path": str(Path(models) / "model.pt"), "sha256": sha256(pt)},
            "mlflow_run_id": tracked.info.run_id if tracked is not None else None,
            "published": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "occlufer_version": __version__,
            "torch_version": torch.__version__,
        },
        "training": {**training_time(meta, run / models / "history.csv", tracked),
                     "hardware": hw, "hardware_source": hw_source},
        "evaluation": evaluation(metrics, checked["validate"]),
        "occlufer_version": __version__,
    }
    summary = run / "data" / "acquired" / "summary.json"
    if summary.is_file():
        counts = json.loads(summary.read_text(encoding="utf-8"))
        card["training"]["data"] = {k: counts[k] for k in ("faces", "per_class", "per_split")
                                    if k in counts}
    taught = teacher_of(meta, raw, run, git.get("commit"))
    if taught:
        card["training"]["teacher"] = taught
    card["limits"] = limits(card, raw)
    _save(card, folder / f"{name}.json", folder / f"{name}.md", (tmp_pt, out_pt))
    return card


def refresh(name: str, folder: Path | None = None) -> dict[str, Any]:
    """Re-generate the card's parts describing occlufer, not the run (preprocessing, test-time
    views, limits), and its Markdown; weights and figures stay."""
    from occlufer import zoo

    entry = zoo.verify(name, folder)
    card = json.loads(entry.json.read_text(encoding="utf-8"))
    card["preprocessing"] = zoo.preprocessing(int(card["image_size"]))
    card["model"].setdefault("tta_shift", 0)  # cards written before tta_shift existed
    card["limits"] = limits(card, card["recipe"].get("params") or {})
    _save(card, entry.json, entry.md)
    return card


def check(name: str, report: Path, folder: Path | None = None) -> tuple[bool, str]:
    """(within, one line): whether a fresh run's clean accuracy lies in the card's interval."""
    from occlufer.zoo import verify

    entry = verify(name, folder)
    head = entry.headline
    split = head.get("split")
    if not split or "ci_low" not in head or "ci_high" not in head:
        raise OccluferError(f"zoo:{name}: the card has no clean accuracy interval; republish "
                            f"it (`occlufer zoo publish {name}`)")
    metrics = read_report(report, "run the recipe first (`dvc exp run -S experiment=...`) or "
                                  "pass --report")
    key = f"{split}/acc"
    if key not in metrics:
        raise OccluferError(f"{report / 'metrics.json'}: no {key} (the card's numbers are on the "
                            f"{split} split); rerun with the card's recipe: "
                            f"`{entry.card['recipe'].get('command') or 'dvc exp run'}`")
    acc = float(metrics[key])
    low, high = float(head["ci_low"]), float(head["ci_high"])
    within = low <= acc <= high
    fresh_ci = (f" [{metrics[f'{key}_ci_low']:.3f}, {metrics[f'{key}_ci_high']:.3f}]"
                if f"{key}_ci_low" in metrics and f"{key}_ci_high" in metrics else "")
    level = entry.card["evaluation"].get("ci_level")
    lvl = f"{level:.0%} " if isinstance(level, float) else ""
    return within, (f"zoo check {name}: fresh {key} {acc:.4f}{fresh_ci} is "
                    f"{'WITHIN' if within else 'OUTSIDE'} the card's {lvl}interval "
                    f"[{low:.3f}, {high:.3f}] (card: {head['acc']:.4f}, from {report})")
