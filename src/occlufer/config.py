"""Parameters: compose ``conf/`` into ``params.yaml``, load it, and validate every key.

The schema lives here and only here. Each section of ``params.yaml`` is a dataclass; loading
checks for missing and unknown keys, types, ranges and choices, and raises :class:`ConfigError`
with one line that says what is wrong, where, and how to fix it. Stages call
:func:`load_params` first, so a bad value stops the pipeline before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from occlufer.errors import OccluferError
from occlufer.labels import CLASSES, LABELS

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"


class ConfigError(OccluferError, ValueError):
    """A bad parameter: the message is one line with what, where and how to fix it."""


def _opt(*, choices: Sequence[Any] | None = None,
         ge: float | None = None, gt: float | None = None, lt: float | None = None,
         le: float | None = None, subset_of: Sequence[str] | None = None,
         pair: bool = False) -> Any:
    """A schema field with its constraints (checked by :func:`_check`).

    Bounds apply element-wise to lists and to the values of mappings; ``subset_of`` to list
    items and mapping keys (a callable is called for the allowed names); ``pair`` asks a list
    value to be ``[min, max]`` with ``min <= max`` (so ``float | list[float]`` reads "a number
    or a range").
    """
    meta = {"choices": choices, "ge": ge, "gt": gt, "lt": lt, "le": le, "subset_of": subset_of,
            "pair": pair}
    return field(metadata=meta)


def _model_names() -> list[str]:
    from occlufer.models import MODELS

    return sorted(MODELS)


#: what ``train.monitor`` may select on: clean val, occluded val, or both together (the
#: patent's mixed validation set)
MONITORS = ("val/acc", "val_occluded/acc", "val_mixed/acc")

SOURCES = ("synthetic", "fer2013_csv", "image_folder", "photos")


def _detector_names() -> tuple[str, ...]:
    from occlufer.data.detectors import DETECTORS  # local import: keeps this module light

    return DETECTORS


def _occluder_types() -> tuple[str, ...]:
    from occlufer.occlusion.registry import TYPES  # local import: keeps this module light

    return TYPES


def _fill_names() -> tuple[str, ...]:
    from occlufer.occlusion.occluder import FILLS

    return FILLS


@dataclass(frozen=True)
class AcquireCfg:
    """S100: where faces come from.

    One flat section for every source: keys a source does not use are null in its option file
    (``conf/acquire/<source>.yaml``), and :func:`_check_relations` requires the ones it does.
    """

    source: str = _opt(choices=SOURCES)
    path: str | None = _opt()              # dataset folder or CSV file (all but synthetic)
    labels_path: str | None = _opt()       # FER+ vote CSV joined by row (fer2013_csv only)
    image_size: int = _opt(choices=(48, 64, 96, 112))
    classes: list[str] = _opt(subset_of=LABELS)
    unknown_labels: str = _opt(choices=("error", "drop"))
    group_regex: str | None = _opt()       # subject id from the file name, e.g. ^(S\d+)_
    min_size: int = _opt(ge=1)             # smallest accepted source side, pixels
    max_reject_fraction: float = _opt(ge=0.0, le=1.0)
    dedupe: bool = _opt()                  # exact duplicates (same pixels) kept once
    workers: int = _opt(ge=0)              # decoding processes; 0 = all available cores
    faces: str | None = _opt(choices=("largest", "all", "skip"))  # photos: several faces
    face_margin: float | None = _opt(ge=0.0, le=1.0)  # photos: margin around the face box
    face_min_size: int | None = _opt(ge=8)  # photos: smallest face, pixels
    detector: str | None = _opt(choices=_detector_names)  # photos: blazeface, ..., haar
    n_per_class: int | None = _opt(ge=1)   # synthetic only from here on
    n_subjects: int | None = _opt(ge=1)
    intensity: list[float] | None = _opt(ge=0.0, le=1.0, pair=True)
    noise: float | None = _opt(ge=0.0, le=0.5)


@dataclass(frozen=True)
class LandmarksCfg:
    """Canonical landmark positions of an aligned face crop, as fractions of the side.

    Points are ``[x, y]`` (x to the right, y downwards); region occluders are placed by them.
    """

    left_eye: list[float] = _opt(ge=0.0, le=1.0)
    right_eye: list[float] = _opt(ge=0.0, le=1.0)
    nose: list[float] = _opt(ge=0.0, le=1.0)
    mouth: list[float] = _opt(ge=0.0, le=1.0)
    brows: float = _opt(ge=0.0, le=1.0)        # y of the eyebrows
    face_width: float = _opt(gt=0.0, le=1.0)   # cheek to cheek
    jitter: float = _opt(ge=0.0, le=0.2)       # per-image shift/scale of all points


@dataclass(frozen=True)
class OcclusionCfg:
    """S200: one randomly occluded copy of each face."""

    types: dict[str, float] = _opt(subset_of=_occluder_types, ge=0.0)  # type: ignore[arg-type]
    ratio: float | list[float] = _opt(ge=0.0, lt=1.0, pair=True)
    fills: list[str] = _opt(subset_of=_fill_names)  # type: ignore[arg-type]
    aspect: list[float] = _opt(gt=0.0, pair=True)
    landmarks: LandmarksCfg = _opt()
    keypoints: bool = _opt()  # region occluders at a face's detected keypoints (kp_* columns)
    workers: int = _opt(ge=0)


@dataclass(frozen=True)
class SplitCfg:
    """S300: mix clean and occluded copies 1:1 and split into train / val (/ test)."""

    strategy: str = _opt(choices=("group_stratified", "keep_source"))
    val_fraction: float = _opt(gt=0.0, lt=1.0)
    test_fraction: float = _opt(ge=0.0, lt=1.0)
    source_val: str = _opt(choices=("val", "test"))  # keep_source: what the dataset's own val
    #                                                   becomes (test: val carved from its train)


@dataclass(frozen=True)
class ModelCfg:
    """S400: which architecture (see ``occlufer.models``)."""

    name: str = _opt(choices=_model_names)  # type: ignore[arg-type]
    dropout: float = _opt(ge=0.0, lt=1.0)
    width: int | None = _opt(ge=4)          # channels of the first stage (resnet family)
    blocks: list[int] | None = _opt(ge=1)   # residual blocks per stage (resnet family)
    mask_loss: float = _opt(ge=0.0)         # weight of the occlusion-mask attention loss


@dataclass(frozen=True)
class AugmentCfg:
    """Training-time augmentation, drawn afresh every epoch."""

    flip: float = _opt(ge=0.0, le=1.0)          # probability of a horizontal mirror
    rotate: float = _opt(ge=0.0, le=45.0)       # max rotation, degrees
    scale: list[float] = _opt(gt=0.0, pair=True)  # zoom range
    translate: float = _opt(ge=0.0, le=0.3)     # max shift, fraction of the side
    brightness: float = _opt(ge=0.0, le=1.0)    # max brightness change, fraction of the range
    contrast: float = _opt(ge=0.0, le=1.0)      # max contrast change (factor 1 ± contrast)
    fresh_occlusion: bool = _opt()              # re-occlude occluded rows from their clean
    #                                             source every epoch (new occluder, new mask)
    occlude_clean: float = _opt(ge=0.0, le=1.0)  # also occlude this fraction of clean rows
    warmup_epochs: float = _opt(ge=0.0)         # ramp rotate/scale/translate/brightness/contrast
    #                                             from 0 to full over these epochs (0 = off)


@dataclass(frozen=True)
class TrainCfg:
    """S400: the training loop and where it is tracked."""

    epochs: int = _opt(ge=1)
    batch_size: int = _opt(ge=1)                # per process (DDP: per device)
    lr: float = _opt(gt=0.0)                    # peak learning rate
    weight_decay: float = _opt(ge=0.0)
    optimizer: str = _opt(choices=("adam", "adamw", "sgd"))
    schedule: str = _opt(choices=("constant", "cosine", "onecycle"))
    warmup_epochs: float = _opt(ge=0.0)         # linear warm-up (constant and cosine)
    label_smoothing: float = _opt(ge=0.0, lt=1.0)
    monitor: str = _opt(choices=MONITORS)      # model selection and early stopping
    early_stopping: int = _opt(ge=0)            # patience in epochs; 0 = off
    tta_flip: bool = _opt()                     # average logits of face and mirror at eval
    tta_shift: int = _opt(ge=0, le=8)           # also average views shifted by ± this many
    #                                             pixels (validate/evaluate/predict; 0 = off)
    mix: str = _opt(choices=("none", "mixup", "cutmix"))  # batch mixing of images and labels
    mix_prob: float = _opt(ge=0.0, le=1.0)      # share of batches that are mixed
    mix_alpha: float = _opt(gt=0.0)             # Beta(alpha, alpha) draw of the mixing weight
    pair: bool = _opt()                         # batches of clean faces beside their occluded
    #                                             twins (same geometric/photometric draw)
    consistency: float = _opt(ge=0.0)           # weight of KL(p_clean || p_occluded) on pairs
    #                                             (clean side detached; needs pair)
    consistency_temperature: float = _opt(gt=0.0)  # softening of both distributions in it
    ema: float = _opt(ge=0.0, lt=1.0)           # weight EMA decay per step (0 = off); the EMA
    #                                             weights are evaluated, selected and saved
    init_from: str | None = _opt()              # start from this model's trunk (and head, for
    #                                             the same classes): zoo:NAME, a model.pt path
    #                                             or an MLflow runs:/ or models:/ URI
    freeze_epochs: int = _opt(ge=0)             # trunk frozen for this many first epochs
    #                                             (needs init_from)
    augment: AugmentCfg = _opt()
    device: str = _opt(choices=("auto", "cpu", "cuda"))
    amp: bool = _opt()                          # CUDA: bf16 autocast + channels_last
    cpu_amp: bool = _opt()                      # CPU: the same where the CPU has native bf16
    devices: int = _opt(ge=1)                   # processes on this node (DDP via torchrun)
    nodes: int = _opt(ge=1)                     # nodes (each runs the stage; see README)
    rdzv_endpoint: str | None = _opt()          # host:port of node 0 when nodes > 1
    workers: int = _opt(ge=0)                   # DataLoader worker processes (augmentation)
    num_threads: int = _opt(ge=0)               # torch CPU threads, 0 = torch's default
    mlflow_experiment: str = _opt()
    log_model: bool = _opt()
    registered_model_name: str | None = _opt()  # register the logged model under this name
    registered_model_alias: str | None = _opt()  # and point this alias at the new version


@dataclass(frozen=True)
class ValidateCfg:
    """S500 (and ``occlufer evaluate``): how the model is scored.

    Robustness curves re-occlude the clean val faces with each of ``robustness_types`` at each
    of ``robustness_ratios`` (the ``occlusion`` section's fills and landmarks, seeded per face).
    """

    batch_size: int = _opt(ge=1)
    device: str = _opt(choices=("auto", "cpu", "cuda"))
    robustness_types: list[str] = _opt(subset_of=_occluder_types)  # type: ignore[arg-type]
    robustness_ratios: list[float] = _opt(ge=0.0, lt=1.0)
    robustness_max_faces: int = _opt(ge=1)   # stratified, seeded subset of the clean faces
    bootstrap: int = _opt(ge=100)            # resamples for the confidence intervals
    ci_level: float = _opt(gt=0.5, lt=1.0)
    ece_bins: int = _opt(ge=2, le=100)
    mistakes: int = _opt(ge=0, le=200)       # most confident mistakes shown in the grid
    gap_ratio: float = _opt(gt=0.0, lt=1.0)  # robustness/<type>/gap: clean acc - acc at this ratio


@dataclass(frozen=True)
class Params:
    """The whole of ``params.yaml``."""

    seed: int = _opt(ge=0)
    acquire: AcquireCfg = _opt()
    occlusion: OcclusionCfg = _opt()
    split: SplitCfg = _opt()
    model: ModelCfg = _opt()
    train: TrainCfg = _opt()
    validate: ValidateCfg = _opt()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, str, bool, list[...])."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        listy = [a for a in args if typing.get_origin(a) is list]
        if isinstance(value, list | tuple) and listy:
            return _coerce(value, listy[0], key, where)
        scalar = [a for a in args if typing.get_origin(a) is not list] or args
        if len(args) > 1 and not isinstance(value, list | tuple):
            try:
                return _coerce(value, scalar[0], key, where)
            except ConfigError:
                what = "number" if scalar[0] in (int, float) else _type_name(scalar[0])
                raise ConfigError(f"{where}: `{key}` must be a {what} or "
                                  f"[min, max], got {value!r}") from None
        return _coerce(value, args[0], key, where)
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: `{key}` must be a mapping of name: "
                              f"{_type_name(item_tp)}, got {value!r}; write it as {{a: 1, b: 2}}")
        return {_coerce(k, key_tp, key, where): _coerce(v, item_tp, f"{key}.{k}", where)
                for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: `{key}` must be a list of {_type_name(item_tp)}, "
                              f"got {value!r}; write it as [a, b, ...]")
        return [_coerce(v, item_tp, key, where) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: `{key}` must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: `{key}` must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: `{key}` must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: `{key}` must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported schema type {tp!r} for {key}")  # a bug in the schema


def _check(value: Any, meta: Mapping[str, Any], key: str, where: str) -> None:
    """Apply the range / choice constraints of one field (element-wise for lists; for a
    mapping, per entry, naming the entry's own key: ``occlusion.types.block``)."""
    if value is None:  # only optional (``X | None``) fields get here with None
        return
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    if choices is not None and value not in choices:
        allowed = ", ".join(map(str, choices))
        raise ConfigError(f"{where}: `{key}` = {value!r} is not one of: {allowed}")
    subset = meta.get("subset_of")
    if callable(subset):
        subset = subset()
    if subset is not None:
        bad = [v for v in value if v not in subset]
        if bad and isinstance(value, dict):
            raise ConfigError(f"{where}: unknown key `{key}.{bad[0]}`; allowed keys here: "
                              f"{', '.join(subset)}")
        if bad or not value:
            raise ConfigError(f"{where}: `{key}` has unknown values {bad or '[] (empty)'}; "
                              f"allowed: {', '.join(subset)}")
    if meta.get("pair") and isinstance(value, list) and (len(value) != 2
                                                          or value[0] > value[1]):
        raise ConfigError(f"{where}: `{key}` must be [min, max] with min <= max, got {value}")
    items = ([(f"{key}.{k}", v, v) for k, v in value.items()] if isinstance(value, dict)
             else [(key, v, value) for v in value] if isinstance(value, list)
             else [(key, value, value)])
    for name, v, shown in items:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        for bound, ok in ((meta.get("ge"), lambda a, b: a >= b),
                          (meta.get("gt"), lambda a, b: a > b),
                          (meta.get("le"), lambda a, b: a <= b),
                          (meta.get("lt"), lambda a, b: a < b)):
            if bound is not None and not ok(v, bound):
                lo = meta["ge"] if meta["ge"] is not None else meta["gt"]
                hi = meta["le"] if meta["le"] is not None else meta["lt"]
                left = "[" if meta.get("ge") is not None else "("
                right = "]" if meta.get("le") is not None else ")"
                rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
                raise ConfigError(f"{where}: `{name}` = {shown!r} is outside {rng}")


def _parse(cls: type, data: Any, prefix: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: `{prefix or 'the file'}` must be a mapping of keys, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: unknown key `{key}`; allowed keys here: {', '.join(names)}")
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if f.name not in data:
            raise ConfigError(f"{where}: missing key `{key}`; add it under conf/ and run "
                              "`occlufer compose` to rewrite params.yaml")
        if dataclasses.is_dataclass(tp):
            values[f.name] = _parse(tp, data[f.name], key, where)
        else:
            value = _coerce(data[f.name], tp, key, where)
            _check(value, f.metadata, key, where)
            values[f.name] = value
    obj = cls(**values)
    _check_relations(obj, prefix, where)
    return obj


def _check_relations(obj: Any, prefix: str, where: str) -> None:
    """Constraints that involve more than one value."""
    if isinstance(obj, AcquireCfg):
        _check_acquire(obj, prefix, where)
    if isinstance(obj, OcclusionCfg) and not obj.fills:
        raise ConfigError(f"{where}: `{prefix}.fills` must name at least one fill")
    if isinstance(obj, OcclusionCfg) and not sum(obj.types.values()) > 0:
        raise ConfigError(f"{where}: `{prefix}.types` needs a positive weight for at least one "
                          f"occluder, got {obj.types}; e.g. `-S {prefix}.types.block=1`")
    if isinstance(obj, LandmarksCfg):
        for name in ("left_eye", "right_eye", "nose", "mouth"):
            if len(getattr(obj, name)) != 2:
                raise ConfigError(f"{where}: `{prefix}.{name}` must be [x, y] (fractions of the "
                                  f"image side), got {getattr(obj, name)}")
    if isinstance(obj, ValidateCfg):
        r = obj.robustness_ratios
        if len(r) < 2 or any(b <= a for a, b in zip(r[:-1], r[1:], strict=True)):
            raise ConfigError(f"{where}: `{prefix}.robustness_ratios` must be at least two "
                              f"increasing ratios, got {r}; e.g. [0, 0.1, 0.2, 0.3, 0.4, 0.5]")
    if isinstance(obj, TrainCfg) and obj.consistency > 0 and not obj.pair:
        raise ConfigError(f"{where}: `{prefix}.consistency` = {obj.consistency} needs paired "
                          f"batches; set `{prefix}.pair=true` (or `{prefix}.consistency=0`)")
    if isinstance(obj, TrainCfg) and obj.mix != "none" and obj.pair:
        raise ConfigError(f"{where}: `{prefix}.mix` = {obj.mix} mixes faces across the batch, "
                          f"which breaks the clean/occluded twins of `{prefix}.pair=true`; set "
                          f"`{prefix}.mix=none` or `{prefix}.pair=false`")
    if isinstance(obj, TrainCfg) and obj.freeze_epochs > 0 and obj.init_from is None:
        raise ConfigError(f"{where}: `{prefix}.freeze_epochs` = {obj.freeze_epochs} freezes a "
                          f"pretrained trunk, but `{prefix}.init_from` is null; set it (e.g. "
                          f"`-S {prefix}.init_from=zoo:fer2013`) or `{prefix}.freeze_epochs=0`")
    if isinstance(obj, TrainCfg) and obj.pair and obj.augment.occlude_clean > 0:
        raise ConfigError(f"{where}: `{prefix}.pair=true` compares each occluded face with its "
                          f"clean twin, but `{prefix}.augment.occlude_clean` = "
                          f"{obj.augment.occlude_clean} would occlude the twins too; set one of "
                          "them off")
    if isinstance(obj, SplitCfg) and obj.val_fraction + obj.test_fraction >= 1.0:
        raise ConfigError(f"{where}: `{prefix}.val_fraction` + `{prefix}.test_fraction` = "
                          f"{obj.val_fraction + obj.test_fraction} leaves no train data; "
                          "make their sum < 1")


def _check_acquire(cfg: AcquireCfg, prefix: str, where: str) -> None:
    """The keys each acquire source needs, and the ones it must leave null."""
    if len(set(cfg.classes)) < 2:
        raise ConfigError(f"{where}: `{prefix}.classes` needs at least two distinct classes, "
                          f"got {cfg.classes}")
    needs = {"synthetic": ("n_per_class", "n_subjects", "intensity", "noise"),
             "photos": ("path", "faces", "face_margin", "face_min_size", "detector"),
             }.get(cfg.source, ("path",))
    for key in needs:
        if getattr(cfg, key) is None:
            raise ConfigError(f"{where}: `{prefix}.{key}` is required for source "
                              f"{cfg.source!r}; set it, e.g. `-S {prefix}.{key}=...`")
    if cfg.source == "synthetic":
        drawn = [c for c in cfg.classes if c not in CLASSES]
        if drawn:
            raise ConfigError(f"{where}: `{prefix}.classes` has {drawn}, which source "
                              f"'synthetic' cannot draw; use classes from {', '.join(CLASSES)}")
    if cfg.labels_path is not None and cfg.source != "fer2013_csv":
        raise ConfigError(f"{where}: `{prefix}.labels_path` is only read by source "
                          f"'fer2013_csv'; set it to null for {cfg.source!r}")
    if cfg.group_regex is not None:
        import re

        try:
            re.compile(cfg.group_regex)
        except re.error as exc:
            raise ConfigError(f"{where}: `{prefix}.group_regex` = {cfg.group_regex!r} is not a "
                              f"valid regular expression ({exc})") from None


def parse_params(data: Any, where: str = PARAMS_FILE) -> Params:
    """Validate a parameter mapping (as read from ``params.yaml``) into :class:`Params`."""
    return _parse(Params, data, "", where)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such parameter file; run from the repository root "
                          "or create it with `occlufer compose`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first}); fix the file or recreate it "
                          "with `occlufer compose`") from None
    return parse_params(data, str(path))


def compose(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> dict[str, Any]:
    """Compose ``conf/config.yaml`` with Hydra overrides, as ``dvc exp run`` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf_dir = Path(conf_dir).resolve()
    if not (conf_dir / "config.yaml").is_file():
        raise ConfigError(f"{conf_dir}/config.yaml: not found; run from the repository root")
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{conf_dir}: cannot compose with overrides {list(overrides)}: "
                          f"{first}") from None


def dump_params(data: Mapping[str, Any], path: str | Path = PARAMS_FILE) -> None:
    """Write composed parameters byte for byte as DVC's Hydra integration does."""
    from omegaconf import OmegaConf

    Path(path).write_text(OmegaConf.to_yaml(OmegaConf.create(dict(data))), encoding="utf-8")
