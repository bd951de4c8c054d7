"""Parameters: compose ``conf/`` into ``params.yaml``, load it, and validate every key.

Each section is a strict, closed (``extra="forbid"``) pydantic dataclass with its ranges, choices
and relations beside the fields; :func:`_one_line` words pydantic's first error as one line.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass

from occlufer.errors import OccluferError
from occlufer.labels import CLASSES, LABELS

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"


class ConfigError(OccluferError, ValueError):
    """A bad parameter: the message is one line with what, where and how to fix it."""


# -- the vocabulary: strict scalars, choices, pairs. A check raises ValueError worded in full;
# `$at` in it becomes the key (or the section, for a rule over several of its keys) -----------

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]   # an integer is accepted and stored as a float
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def one_of(names: Callable[[], Sequence[Any]]) -> AfterValidator:
    """A choice among names known at run time (a registry's), for one value."""
    def check(value: Any) -> Any:
        if value is not None and value not in names():
            raise ValueError(f"`$at` = {value!r} is not one of: "
                             f"{', '.join(map(str, names()))}")
        return value

    return AfterValidator(check)


def subset_of(names: Callable[[], Sequence[str]]) -> AfterValidator:
    """Every item of a non-empty list, or every key of a mapping, among ``names()``."""
    def check(value: Any) -> Any:
        bad = [v for v in value if v not in names()]
        if bad and isinstance(value, dict):
            raise ValueError(f"unknown key `$at.{bad[0]}`; allowed keys here: "
                             f"{', '.join(names())}")
        if bad or not value:
            raise ValueError(f"`$at` has unknown values {bad or '[] (empty)'}; allowed: "
                             f"{', '.join(names())}")
        return value

    return AfterValidator(check)


def _ordered(value: list[float]) -> list[float]:
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"`$at` must be [min, max] with min <= max, got {value}")
    return value


def _number_or_range(value: Any) -> Any:
    """A ratio in [0, 1), or ``[min, max]`` of them, as floats."""
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if isinstance(value, list | tuple) and all(number(v) for v in value):
        value = _ordered([float(v) for v in value])
    elif number(value):
        value = float(value)
    else:
        raise ValueError(f"`$at` must be a number or [min, max], got {value!r}")
    if not all(0.0 <= v < 1.0 for v in (value if isinstance(value, list) else [value])):
        raise ValueError(f"`$at` = {value!r} is outside [0.0, 1.0)")
    return value


def _xy(value: list[float]) -> list[float]:
    if len(value) != 2:
        raise ValueError(f"`$at` must be [x, y] (fractions of the image side), got {value}")
    return value


def _distinct_classes(value: list[str]) -> list[str]:
    if len(set(value)) < 2:
        raise ValueError(f"`$at` needs at least two distinct classes, got {value}")
    return value


def _increasing(value: list[float]) -> list[float]:
    if len(value) < 2 or any(b <= a for a, b in zip(value[:-1], value[1:], strict=True)):
        raise ValueError(f"`$at` must be at least two increasing ratios, got {value}; "
                         "e.g. [0, 0.1, 0.2, 0.3, 0.4, 0.5]")
    return value


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"`$at` = {value!r} is not a valid regular expression "
                             f"({exc})") from None
    return value


Unit = Annotated[Float, Field(ge=0.0, le=1.0)]                     # a fraction in [0, 1]
XY = Annotated[list[Unit], AfterValidator(_xy)]                      # a point, fractions


def pair(**bounds: float) -> Any:
    """``[min, max]`` of numbers, each within ``bounds`` (``ge=``, ``gt=``, ``le=``, ``lt=``)."""
    return Annotated[list[Annotated[Float, Field(**bounds)]], AfterValidator(_ordered)]


def _names(path: str, order: Callable[[Any], list[Any]] = list) -> Callable[[], list[Any]]:
    """The names in ``module:NAME``, imported when first checked (keeps this module light)."""
    module, name = path.split(":")
    return lambda: order(getattr(importlib.import_module(module), name))


_model_names = _names("occlufer.models:MODELS", sorted)
_detector_names = _names("occlufer.data.detectors:DETECTORS")
_occluder_types = _names("occlufer.occlusion.registry:TYPES")
_fill_names = _names("occlufer.occlusion.occluder:FILLS")


def _styles(value: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per occluder with drawn styles, a non-empty subset of them (``occlusion.styles``)."""
    from occlufer.occlusion.registry import DRAWN_STYLES as drawn

    for kind, styles in value.items():
        if kind not in drawn:
            raise ValueError(f"`$at` names {kind!r}, which draws no styles; the occluders that do: "
                             f"{', '.join(drawn)}")
        bad = [s for s in styles if s not in drawn[kind]]
        if bad or not styles:
            raise ValueError(f"`$at.{kind}` = {styles} must be a non-empty list of "
                             f"{', '.join(drawn[kind])}")
    return value


#: ``train.monitor``'s choices: clean, occluded or mixed val (fields of ``loop.EpochStats``)
MONITORS = ("val/acc", "val_occluded/acc", "val_mixed/acc")

SOURCES = ("synthetic", "fer2013_csv", "image_folder", "photos")
DEVICES = Literal["auto", "cpu", "cuda"]

#: keys each acquire source needs (the others it leaves null in conf/acquire/<source>.yaml)
SOURCE_NEEDS = {"synthetic": ("n_per_class", "n_subjects", "intensity", "noise"),
                "photos": ("path", "faces", "face_margin", "face_min_size", "detector"),
                "image_folder": ("path",), "fer2013_csv": ("path",)}

_SECTION = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_SECTION)
class AcquireCfg:
    """S100: where faces come from."""

    source: Literal[SOURCES]  # type: ignore[valid-type]
    path: Str | None                       # dataset folder or CSV file (all but synthetic)
    labels_path: Str | None                # FER+ vote CSV joined by row (fer2013_csv only)
    image_size: Literal[48, 64, 96, 112]
    classes: Annotated[list[Str], subset_of(lambda: LABELS), AfterValidator(_distinct_classes)]
    unknown_labels: Literal["error", "drop"]
    group_regex: Annotated[Str | None, AfterValidator(_regex)]  # subject id from the file
    #                                                             name, e.g. ^(S\d+)_
    min_size: Annotated[Int, Field(ge=1)]  # smallest accepted source side, pixels
    max_reject_fraction: Unit
    dedupe: Bool                           # exact duplicates (same pixels) kept once
    workers: Annotated[Int, Field(ge=0)]  # decoding processes; 0 = all available cores
    faces: Literal["largest", "all", "skip"] | None  # photos: several faces in one photo
    face_margin: Unit | None               # photos: margin around the face box
    face_min_size: Annotated[Int, Field(ge=8)] | None  # photos: smallest face, pixels
    detector: Annotated[Str | None, one_of(_detector_names)]  # photos: blazeface, ..., haar
    n_per_class: Annotated[Int, Field(ge=1)] | None  # synthetic only from here on
    n_subjects: Annotated[Int, Field(ge=1)] | None
    intensity: pair(ge=0.0, le=1.0) | None
    noise: Annotated[Float, Field(ge=0.0, le=0.5)] | None

    @model_validator(mode="after")
    def _source_keys(self) -> AcquireCfg:
        for key in SOURCE_NEEDS[self.source]:
            if getattr(self, key) is None:
                raise ValueError(f"`$at.{key}` is required for source {self.source!r}; set it, "
                                 f"e.g. `-S $at.{key}=...`")
        drawn = [c for c in self.classes if c not in CLASSES]
        if self.source == "synthetic" and drawn:
            raise ValueError(f"`$at.classes` has {drawn}, which source 'synthetic' cannot draw; "
                             f"use classes from {', '.join(CLASSES)}")
        if self.labels_path is not None and self.source != "fer2013_csv":
            raise ValueError(f"`$at.labels_path` is only read by source 'fer2013_csv'; set it to "
                             f"null for {self.source!r}")
        return self


@dataclass(frozen=True, config=_SECTION)
class LandmarksCfg:
    """Canonical landmarks of an aligned face crop, ``[x, y]`` fractions of the side (y down),
    where region occluders are placed (defaults: ``occlufer.occlusion.shapes.Landmarks``)."""

    left_eye: XY
    right_eye: XY
    nose: XY
    mouth: XY
    brows: Unit                                          # y of the eyebrows
    face_width: Annotated[Float, Field(gt=0.0, le=1.0)]  # cheek to cheek
    jitter: Annotated[Float, Field(ge=0.0, le=0.2)]      # per-image shift/scale of all points


@dataclass(frozen=True, config=_SECTION)
class OcclusionCfg:
    """S200: one randomly occluded copy of each face."""

    types: Annotated[dict[Str, Annotated[Float, Field(ge=0.0)]], subset_of(_occluder_types)]
    ratio: Annotated[Float | list[Float], BeforeValidator(_number_or_range)]  # fraction of the
    #   face crop covered, in [0, 1): a number or [min, max] per image
    fills: Annotated[list[Str], subset_of(_fill_names)]
    aspect: pair(gt=0.0)
    landmarks: LandmarksCfg
    keypoints: Bool  # region occluders at a face's detected keypoints (kp_* columns)
    styles: Annotated[dict[Str, list[Str]], AfterValidator(_styles)]  # styles each may draw
    workers: Annotated[Int, Field(ge=0)]

    @model_validator(mode="after")
    def _some_weight(self) -> OcclusionCfg:
        if not sum(self.types.values()) > 0:
            raise ValueError(f"`$at.types` needs a positive weight for at least one occluder, got "
                             f"{self.types}; e.g. `-S $at.types.block=1`")
        return self


@dataclass(frozen=True, config=_SECTION)
class SplitCfg:
    """S300: mix clean and occluded copies 1:1 and split into train / val (/ test)."""

    strategy: Literal["group_stratified", "keep_source"]
    val_fraction: Annotated[Float, Field(gt=0.0, lt=1.0)]
    test_fraction: Annotated[Float, Field(ge=0.0, lt=1.0)]
    source_val: Literal["val", "test"]  # keep_source: what the dataset's own val becomes
    #                                     (test: val carved from its train)

    @model_validator(mode="after")
    def _some_train(self) -> SplitCfg:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(f"`$at.val_fraction` + `$at.test_fraction` = "
                             f"{self.val_fraction + self.test_fraction} leaves no train data; make "
                             "their sum < 1")
        return self


@dataclass(frozen=True, config=_SECTION)
class ModelCfg:
    """S400: which architecture (see ``occlufer.models``)."""

    name: Annotated[Str, one_of(_model_names)]
    dropout: Annotated[Float, Field(ge=0.0, lt=1.0)]
    width: Annotated[Int, Field(ge=4)] | None   # channels of the first stage (resnet family)
    blocks: list[Annotated[Int, Field(ge=1)]] | None  # residual blocks per stage (resnets)
    mask_loss: Annotated[Float, Field(ge=0.0)]  # weight of the occlusion-mask attention loss


@dataclass(frozen=True, config=_SECTION)
class AugmentCfg:
    """Training-time augmentation, drawn afresh every epoch."""

    flip: Unit                                       # probability of a horizontal mirror
    rotate: Annotated[Float, Field(ge=0.0, le=45.0)]  # max rotation, degrees
    scale: pair(gt=0.0)           # zoom range
    translate: Annotated[Float, Field(ge=0.0, le=0.3)]  # max shift, fraction of the side
    brightness: Unit                                 # max brightness change, fraction of range
    contrast: Unit                                   # max contrast change (factor 1 ± contrast)
    fresh_occlusion: Bool                            # re-occlude occluded rows from their clean
    #                                                  source every epoch (new occluder, mask)
    occlude_clean: Unit                              # also occlude this fraction of clean rows
    warmup_epochs: Annotated[Float, Field(ge=0.0)]  # ramp rotate/scale/translate/brightness/
    #                                                  contrast from 0 to full over these epochs


@dataclass(frozen=True, config=_SECTION)
class TrainCfg:
    """S400: the training loop and where it is tracked."""

    epochs: Annotated[Int, Field(ge=1)]
    batch_size: Annotated[Int, Field(ge=1)]         # per process (DDP: per device)
    lr: Annotated[Float, Field(gt=0.0)]             # peak learning rate
    weight_decay: Annotated[Float, Field(ge=0.0)]
    optimizer: Literal["adam", "adamw", "sgd"]
    schedule: Literal["constant", "cosine", "onecycle"]
    warmup_epochs: Annotated[Float, Field(ge=0.0)]  # linear warm-up (constant and cosine)
    label_smoothing: Annotated[Float, Field(ge=0.0, lt=1.0)]
    monitor: Literal[MONITORS]  # type: ignore[valid-type]  # model selection, early stopping
    early_stopping: Annotated[Int, Field(ge=0)]     # patience in epochs; 0 = off
    tta_flip: Bool                                   # average logits of face and mirror at eval
    tta_shift: Annotated[Int, Field(ge=0, le=8)]    # also average views shifted by ± this many
    #                                                  pixels (validate/evaluate/predict; 0 = off)
    mix: Literal["none", "mixup", "cutmix"]          # batch mixing of images and labels
    mix_prob: Unit                                   # share of batches that are mixed
    mix_alpha: Annotated[Float, Field(gt=0.0)]      # Beta(alpha, alpha) draw of the weight
    pair: Bool                                       # batches of clean faces beside their
    #                                                  occluded twins (same geometric draw)
    consistency: Annotated[Float, Field(ge=0.0)]    # weight of KL(p_clean || p_occluded) on
    #                                                  pairs (clean side detached; needs pair)
    consistency_temperature: Annotated[Float, Field(gt=0.0)]  # softening of both sides
    ema: Annotated[Float, Field(ge=0.0, lt=1.0)]    # weight EMA decay per step (0 = off); the
    #                                                  EMA weights are evaluated, selected, saved
    init_from: Str | None                            # start from this model's trunk (and head,
    #                                                  same classes): zoo:NAME, a model.pt path
    #                                                  or an MLflow runs:/ or models:/ URI
    freeze_epochs: Annotated[Int, Field(ge=0)]      # trunk frozen for this many first epochs
    teacher: Str | None                              # distil from this model's predictions on
    #                                                  the clean faces (same refs as init_from)
    distill: Annotated[Float, Field(ge=0.0, le=1.0)]  # weight of the distillation term (the
    #                                                  label's cross-entropy gets 1 - distill)
    distill_temperature: Annotated[Float, Field(gt=0.0)]  # softening of both distributions
    augment: AugmentCfg
    device: DEVICES
    amp: Bool                                        # CUDA: bf16 autocast + channels_last
    cpu_amp: Bool                                    # CPU: the same where it has native bf16
    devices: Annotated[Int, Field(ge=1)]            # processes on this node (DDP via torchrun)
    nodes: Annotated[Int, Field(ge=1)]              # nodes (each runs the stage; see README)
    rdzv_endpoint: Str | None                        # host:port of node 0 when nodes > 1
    workers: Annotated[Int, Field(ge=0)]            # DataLoader worker processes
    num_threads: Annotated[Int, Field(ge=0)]        # torch CPU threads, 0 = torch's default
    mlflow_experiment: Str
    log_model: Bool
    registered_model_name: Str | None                # register the logged model under this
    registered_model_alias: Str | None               # and point this alias at the new version

    @model_validator(mode="after")
    def _combinations(self) -> TrainCfg:
        if self.consistency > 0 and not self.pair:
            raise ValueError(f"`$at.consistency` = {self.consistency} needs paired batches; set "
                             "`$at.pair=true` (or `$at.consistency=0`)")
        if self.mix != "none" and self.pair:
            raise ValueError(f"`$at.mix` = {self.mix} mixes faces across the batch, which breaks "
                             "the clean/occluded twins of `$at.pair=true`; set `$at.mix=none` or "
                             "`$at.pair=false`")
        if self.freeze_epochs > 0 and self.init_from is None:
            raise ValueError(f"`$at.freeze_epochs` = {self.freeze_epochs} freezes a pretrained "
                             "trunk, but `$at.init_from` is null; set it (e.g. "
                             "`-S $at.init_from=zoo:fer2013`) or `$at.freeze_epochs=0`")
        if self.distill > 0 and self.teacher is None:
            raise ValueError(f"`$at.distill` = {self.distill} learns from a teacher, but "
                             "`$at.teacher` is null; set it (e.g. `-S $at.teacher=zoo:fer2013`) or "
                             "`$at.distill=0`")
        if self.teacher is not None and self.distill == 0:
            raise ValueError(f"`$at.teacher` = {self.teacher} is not used while `$at.distill` = 0; "
                             "set `$at.distill` (e.g. 0.5) or `$at.teacher=null`")
        if self.pair and self.augment.occlude_clean > 0:
            raise ValueError("`$at.pair=true` compares each occluded face with its clean twin, but "
                             f"`$at.augment.occlude_clean` = {self.augment.occlude_clean} would "
                             "occlude the twins too; set one of them off")
        return self


@dataclass(frozen=True, config=_SECTION)
class ValidateCfg:
    """S500 (and ``occlufer evaluate``): how the model is scored; robustness curves re-occlude
    the clean val faces with each type at each ratio (seeded per face)."""

    batch_size: Annotated[Int, Field(ge=1)]
    device: DEVICES
    robustness_types: Annotated[list[Str], subset_of(_occluder_types)]
    robustness_ratios: Annotated[list[Annotated[Float, Field(ge=0.0, lt=1.0)]],
                                 AfterValidator(_increasing)]
    robustness_max_faces: Annotated[Int, Field(ge=1)]  # stratified, seeded subset of faces
    bootstrap: Annotated[Int, Field(ge=100)]        # resamples for the confidence intervals
    ci_level: Annotated[Float, Field(gt=0.5, lt=1.0)]
    ece_bins: Annotated[Int, Field(ge=2, le=100)]
    mistakes: Annotated[Int, Field(ge=0, le=200)]   # most confident mistakes shown in the grid
    gap_ratio: Annotated[Float, Field(gt=0.0, lt=1.0)]  # robustness/<type>/gap: clean acc -
    #                                                      acc at this ratio


@dataclass(frozen=True, config=_SECTION)
class Params:
    """The whole of ``params.yaml``."""

    seed: Annotated[Int, Field(ge=0)]
    portable: Bool  # the same bits on any x86-64 CPU: pinned kernels, 2 threads, no GPU
    #                 (occlufer.kernels); false: this CPU's fastest kernels
    acquire: AcquireCfg
    occlusion: OcclusionCfg
    split: SplitCfg
    model: ModelCfg
    train: TrainCfg
    validate: ValidateCfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @model_validator(mode="after")
    def _portable(self) -> Params:
        from occlufer.kernels import PORTABLE_THREADS

        if self.portable and self.train.num_threads not in (0, PORTABLE_THREADS):
            raise ValueError(f"`portable` computes with {PORTABLE_THREADS} threads on any machine, "
                             f"but `train.num_threads` = {self.train.num_threads}; set "
                             "`train.num_threads=0` or `portable=false`")
        if self.portable and self.train.cpu_amp:
            raise ValueError("`portable` computes in fp32 with oneDNN off, but `train.cpu_amp` "
                             "asks for bf16 (oneDNN, on some CPUs only); set "
                             "`train.cpu_amp=false` or `portable=false`")
        if self.portable and "cuda" in (self.train.device, self.validate.device):
            raise ValueError("`portable` computes on the CPU, but a device is `cuda`; set "
                             "`train.device` and `validate.device` to auto or cpu, or "
                             "`portable=false`")
        return self


# -- one line per error ------------------------------------------------------------------------

#: how to fix what pydantic's own message names (what is wrong)
_FIX = {"missing": "add it under conf/ and run `occlufer compose` to rewrite params.yaml",
        "list_type": "write it as [a, b, ...]", "dict_type": "write it as {a: 1, b: 2}"}


def _fields(loc: Sequence[Any], root: type) -> list[str]:
    """The keys allowed in the section at ``loc`` (a path of field names)."""
    for part in loc:
        root = root.__pydantic_fields__[part].annotation
    return list(root.__pydantic_fields__)


def _one_line(err: dict[str, Any], root: type, prefix: str, where: str) -> str:
    """A pydantic error as one line: what, where (the dotted key), how to fix it."""
    at = ".".join(map(str, [prefix, *err["loc"]] if prefix else err["loc"]))
    kind, msg = err["type"], " ".join(str(err["msg"]).split())
    if kind == "value_error":  # a check of this schema, worded in full
        return f"{where}: {msg.removeprefix('Value error, ').replace('$at', at)}"
    text = f"{where}: `{at or 'the file'}`: {msg}"
    if kind != "missing":  # (its input is the whole section)
        text += f", got {err['input']!r}"
    if kind == "unexpected_keyword_argument":
        text += f"; allowed keys here: {', '.join(_fields(err['loc'][:-1], root))}"
    return text + (f"; {_FIX[kind]}" if kind in _FIX else "")


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def _parse(cls: type, data: Any, prefix: str, where: str) -> Any:
    """Validate ``data`` as the section ``cls`` found at ``prefix`` (``""``: the whole file)."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = next((e for e in errors if e["type"] == "unexpected_keyword_argument"),
                     errors[0])
        raise ConfigError(_one_line(first, cls, prefix, where)) from None


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
