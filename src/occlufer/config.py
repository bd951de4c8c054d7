"""Parameters: compose ``conf/`` into ``params.yaml``, load it, and validate every key.

The schema lives here and only here: each section of ``params.yaml`` is a pydantic dataclass.
pydantic checks what is missing or unknown (``extra="forbid"``), the types (strict: ``"3"`` is
not a number, ``1`` is not ``true``), the fixed choices (``Literal``) and the ranges, choices
and relations written next to their fields; :func:`_one_line` turns its first error into
:class:`ConfigError`: one line that says what is wrong, where (the exact key, e.g.
``occlusion.types.block``) and how to fix it. Stages call :func:`load_params` first, so a bad
value stops the pipeline before any work starts.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from occlufer.errors import OccluferError
from occlufer.labels import CLASSES, LABELS

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"


class ConfigError(OccluferError, ValueError):
    """A bad parameter: the message is one line with what, where and how to fix it."""


# -- the vocabulary of the schema: strict scalars, ranges, choices, pairs ---------------------

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]   # an integer is accepted and stored as a float
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def _fail(kind: str, **ctx: Any) -> PydanticCustomError:
    """An error of ``kind`` that :func:`_one_line` words from ``ctx``."""
    return PydanticCustomError(kind, kind, ctx)


def _rule(text: str) -> PydanticCustomError:
    """A broken rule, worded in full: ``$at`` in ``text`` becomes the key (a field's rule) or
    the section (a rule over several of its keys)."""
    return _fail("rule", text=text)


def _interval(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    lo, hi = (ge if ge is not None else gt), (le if le is not None else lt)
    return (f"{'[' if ge is not None else '('}{'-inf' if lo is None else lo}, "
            f"{'inf' if hi is None else hi}{']' if le is not None else ')'}")


def within(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> AfterValidator:
    """A range for a number, or for each number of a ``[min, max]`` value."""
    text = _interval(ge, gt, le, lt)

    def check(value: Any) -> Any:
        for v in value if isinstance(value, list) else [value]:
            if ((ge is not None and v < ge) or (gt is not None and v <= gt)
                    or (le is not None and v > le) or (lt is not None and v >= lt)):
                raise _fail("outside", value=value, interval=text)
        return value

    return AfterValidator(check)


def one_of(names: Callable[[], Sequence[Any]]) -> AfterValidator:
    """A choice among names known at run time (a registry's), for one value."""
    def check(value: Any) -> Any:
        if value is not None and value not in names():
            raise _fail("choice", value=value, allowed=", ".join(map(str, names())))
        return value

    return AfterValidator(check)


def subset_of(names: Callable[[], Sequence[str]]) -> AfterValidator:
    """Every item of a non-empty list, or every key of a mapping, among ``names()``."""
    def check(value: Any) -> Any:
        bad = [v for v in value if v not in names()]
        if bad and isinstance(value, dict):
            raise _fail("unknown_entry", name=bad[0], allowed=", ".join(names()))
        if bad or not value:
            raise _fail("unknown_items", bad=bad or "[] (empty)", allowed=", ".join(names()))
        return value

    return AfterValidator(check)


def _ordered(value: list[float]) -> list[float]:
    if len(value) != 2 or value[0] > value[1]:
        raise _fail("pair", value=value)
    return value


def _number_or_range(value: Any) -> Any:
    """A number, or ``[min, max]`` of numbers, as floats (the range checked by ``within``)."""
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if isinstance(value, list | tuple) and all(number(v) for v in value):
        return _ordered([float(v) for v in value])
    if number(value):
        return float(value)
    raise _fail("number_or_range", value=value)


def _xy(value: list[float]) -> list[float]:
    if len(value) != 2:
        raise _rule(f"`$at` must be [x, y] (fractions of the image side), got {value}")
    return value


def _distinct_classes(value: list[str]) -> list[str]:
    if len(set(value)) < 2:
        raise _rule(f"`$at` needs at least two distinct classes, got {value}")
    return value


def _increasing(value: list[float]) -> list[float]:
    if len(value) < 2 or any(b <= a for a, b in zip(value[:-1], value[1:], strict=True)):
        raise _rule(f"`$at` must be at least two increasing ratios, got {value}; "
                    "e.g. [0, 0.1, 0.2, 0.3, 0.4, 0.5]")
    return value


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise _rule(f"`$at` = {value!r} is not a valid regular expression ({exc})") from None
    return value


Unit = Annotated[Float, within(ge=0.0, le=1.0)]                     # a fraction in [0, 1]
Pair = Annotated[list[Float], AfterValidator(_ordered)]              # [min, max]
XY = Annotated[list[Unit], AfterValidator(_xy)]                      # a point, fractions


def _model_names() -> list[str]:
    from occlufer.models import MODELS

    return sorted(MODELS)


def _detector_names() -> tuple[str, ...]:
    from occlufer.data.detectors import DETECTORS  # local import: keeps this module light

    return DETECTORS


def _occluder_types() -> tuple[str, ...]:
    from occlufer.occlusion.registry import TYPES  # local import: keeps this module light

    return TYPES


def _styles(value: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per occluder with drawn styles, a non-empty subset of them (``occlusion.styles``)."""
    from occlufer.occlusion.registry import DRAWN_STYLES as drawn

    for kind, styles in value.items():
        if kind not in drawn:
            raise _rule(f"`$at` names {kind!r}, which draws no styles; the occluders that do: "
                        f"{', '.join(drawn)}")
        bad = [s for s in styles if s not in drawn[kind]]
        if bad or not styles:
            raise _rule(f"`$at.{kind}` = {styles} must be a non-empty list of "
                        f"{', '.join(drawn[kind])}")
    return value


def _fill_names() -> tuple[str, ...]:
    from occlufer.occlusion.occluder import FILLS

    return FILLS


#: what ``train.monitor`` may select on: clean val, occluded val, or both together (the
#: patent's mixed validation set); ``training.loop.EpochStats`` has each as a field, "/" -> "_"
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
    """S100: where faces come from.

    One flat section for every source: keys a source does not use are null in its option file
    (``conf/acquire/<source>.yaml``); :data:`SOURCE_NEEDS` says which ones each requires.
    """

    source: Literal[SOURCES]  # type: ignore[valid-type]
    path: Str | None                       # dataset folder or CSV file (all but synthetic)
    labels_path: Str | None                # FER+ vote CSV joined by row (fer2013_csv only)
    image_size: Literal[48, 64, 96, 112]
    classes: Annotated[list[Str], subset_of(lambda: LABELS), AfterValidator(_distinct_classes)]
    unknown_labels: Literal["error", "drop"]
    group_regex: Annotated[Str | None, AfterValidator(_regex)]  # subject id from the file
    #                                                             name, e.g. ^(S\d+)_
    min_size: Annotated[Int, within(ge=1)]  # smallest accepted source side, pixels
    max_reject_fraction: Unit
    dedupe: Bool                           # exact duplicates (same pixels) kept once
    workers: Annotated[Int, within(ge=0)]  # decoding processes; 0 = all available cores
    faces: Literal["largest", "all", "skip"] | None  # photos: several faces in one photo
    face_margin: Unit | None               # photos: margin around the face box
    face_min_size: Annotated[Int, within(ge=8)] | None  # photos: smallest face, pixels
    detector: Annotated[Str | None, one_of(_detector_names)]  # photos: blazeface, ..., haar
    n_per_class: Annotated[Int, within(ge=1)] | None  # synthetic only from here on
    n_subjects: Annotated[Int, within(ge=1)] | None
    intensity: Annotated[Pair, within(ge=0.0, le=1.0)] | None
    noise: Annotated[Float, within(ge=0.0, le=0.5)] | None

    @model_validator(mode="after")
    def _source_keys(self) -> AcquireCfg:
        for key in SOURCE_NEEDS[self.source]:
            if getattr(self, key) is None:
                raise _rule(f"`$at.{key}` is required for source {self.source!r}; set it, "
                            f"e.g. `-S $at.{key}=...`")
        drawn = [c for c in self.classes if c not in CLASSES]
        if self.source == "synthetic" and drawn:
            raise _rule(f"`$at.classes` has {drawn}, which source 'synthetic' cannot draw; "
                        f"use classes from {', '.join(CLASSES)}")
        if self.labels_path is not None and self.source != "fer2013_csv":
            raise _rule(f"`$at.labels_path` is only read by source 'fer2013_csv'; set it to "
                        f"null for {self.source!r}")
        return self


@dataclass(frozen=True, config=_SECTION)
class LandmarksCfg:
    """Canonical landmark positions of an aligned face crop, as fractions of the side.

    Points are ``[x, y]`` (x to the right, y downwards); region occluders are placed by them.
    The defaults are ``occlufer.occlusion.shapes.Landmarks`` (tests/occlusion/test_registry.py).
    """

    left_eye: XY
    right_eye: XY
    nose: XY
    mouth: XY
    brows: Unit                                          # y of the eyebrows
    face_width: Annotated[Float, within(gt=0.0, le=1.0)]  # cheek to cheek
    jitter: Annotated[Float, within(ge=0.0, le=0.2)]      # per-image shift/scale of all points


@dataclass(frozen=True, config=_SECTION)
class OcclusionCfg:
    """S200: one randomly occluded copy of each face."""

    types: Annotated[dict[Str, Annotated[Float, within(ge=0.0)]], subset_of(_occluder_types)]
    ratio: Annotated[Float | list[Float], BeforeValidator(_number_or_range), within(ge=0.0, lt=1.0)]
    fills: Annotated[list[Str], subset_of(_fill_names)]
    aspect: Annotated[Pair, within(gt=0.0)]
    landmarks: LandmarksCfg
    keypoints: Bool  # region occluders at a face's detected keypoints (kp_* columns)
    styles: Annotated[dict[Str, list[Str]], AfterValidator(_styles)]  # styles each may draw
    workers: Annotated[Int, within(ge=0)]

    @model_validator(mode="after")
    def _some_weight(self) -> OcclusionCfg:
        if not sum(self.types.values()) > 0:
            raise _rule(f"`$at.types` needs a positive weight for at least one occluder, got "
                        f"{self.types}; e.g. `-S $at.types.block=1`")
        return self


@dataclass(frozen=True, config=_SECTION)
class SplitCfg:
    """S300: mix clean and occluded copies 1:1 and split into train / val (/ test)."""

    strategy: Literal["group_stratified", "keep_source"]
    val_fraction: Annotated[Float, within(gt=0.0, lt=1.0)]
    test_fraction: Annotated[Float, within(ge=0.0, lt=1.0)]
    source_val: Literal["val", "test"]  # keep_source: what the dataset's own val becomes
    #                                     (test: val carved from its train)

    @model_validator(mode="after")
    def _some_train(self) -> SplitCfg:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise _rule(f"`$at.val_fraction` + `$at.test_fraction` = "
                        f"{self.val_fraction + self.test_fraction} leaves no train data; make "
                        "their sum < 1")
        return self


@dataclass(frozen=True, config=_SECTION)
class ModelCfg:
    """S400: which architecture (see ``occlufer.models``)."""

    name: Annotated[Str, one_of(_model_names)]
    dropout: Annotated[Float, within(ge=0.0, lt=1.0)]
    width: Annotated[Int, within(ge=4)] | None   # channels of the first stage (resnet family)
    blocks: list[Annotated[Int, within(ge=1)]] | None  # residual blocks per stage (resnets)
    mask_loss: Annotated[Float, within(ge=0.0)]  # weight of the occlusion-mask attention loss


@dataclass(frozen=True, config=_SECTION)
class AugmentCfg:
    """Training-time augmentation, drawn afresh every epoch."""

    flip: Unit                                       # probability of a horizontal mirror
    rotate: Annotated[Float, within(ge=0.0, le=45.0)]  # max rotation, degrees
    scale: Annotated[Pair, within(gt=0.0)]           # zoom range
    translate: Annotated[Float, within(ge=0.0, le=0.3)]  # max shift, fraction of the side
    brightness: Unit                                 # max brightness change, fraction of range
    contrast: Unit                                   # max contrast change (factor 1 ± contrast)
    fresh_occlusion: Bool                            # re-occlude occluded rows from their clean
    #                                                  source every epoch (new occluder, mask)
    occlude_clean: Unit                              # also occlude this fraction of clean rows
    warmup_epochs: Annotated[Float, within(ge=0.0)]  # ramp rotate/scale/translate/brightness/
    #                                                  contrast from 0 to full over these epochs


@dataclass(frozen=True, config=_SECTION)
class TrainCfg:
    """S400: the training loop and where it is tracked."""

    epochs: Annotated[Int, within(ge=1)]
    batch_size: Annotated[Int, within(ge=1)]         # per process (DDP: per device)
    lr: Annotated[Float, within(gt=0.0)]             # peak learning rate
    weight_decay: Annotated[Float, within(ge=0.0)]
    optimizer: Literal["adam", "adamw", "sgd"]
    schedule: Literal["constant", "cosine", "onecycle"]
    warmup_epochs: Annotated[Float, within(ge=0.0)]  # linear warm-up (constant and cosine)
    label_smoothing: Annotated[Float, within(ge=0.0, lt=1.0)]
    monitor: Literal[MONITORS]  # type: ignore[valid-type]  # model selection, early stopping
    early_stopping: Annotated[Int, within(ge=0)]     # patience in epochs; 0 = off
    tta_flip: Bool                                   # average logits of face and mirror at eval
    tta_shift: Annotated[Int, within(ge=0, le=8)]    # also average views shifted by ± this many
    #                                                  pixels (validate/evaluate/predict; 0 = off)
    mix: Literal["none", "mixup", "cutmix"]          # batch mixing of images and labels
    mix_prob: Unit                                   # share of batches that are mixed
    mix_alpha: Annotated[Float, within(gt=0.0)]      # Beta(alpha, alpha) draw of the weight
    pair: Bool                                       # batches of clean faces beside their
    #                                                  occluded twins (same geometric draw)
    consistency: Annotated[Float, within(ge=0.0)]    # weight of KL(p_clean || p_occluded) on
    #                                                  pairs (clean side detached; needs pair)
    consistency_temperature: Annotated[Float, within(gt=0.0)]  # softening of both sides
    ema: Annotated[Float, within(ge=0.0, lt=1.0)]    # weight EMA decay per step (0 = off); the
    #                                                  EMA weights are evaluated, selected, saved
    init_from: Str | None                            # start from this model's trunk (and head,
    #                                                  same classes): zoo:NAME, a model.pt path
    #                                                  or an MLflow runs:/ or models:/ URI
    freeze_epochs: Annotated[Int, within(ge=0)]      # trunk frozen for this many first epochs
    teacher: Str | None                              # distil from this model's predictions on
    #                                                  the clean faces (same refs as init_from)
    distill: Annotated[Float, within(ge=0.0, le=1.0)]  # weight of the distillation term (the
    #                                                  label's cross-entropy gets 1 - distill)
    distill_temperature: Annotated[Float, within(gt=0.0)]  # softening of both distributions
    augment: AugmentCfg
    device: DEVICES
    amp: Bool                                        # CUDA: bf16 autocast + channels_last
    cpu_amp: Bool                                    # CPU: the same where it has native bf16
    devices: Annotated[Int, within(ge=1)]            # processes on this node (DDP via torchrun)
    nodes: Annotated[Int, within(ge=1)]              # nodes (each runs the stage; see README)
    rdzv_endpoint: Str | None                        # host:port of node 0 when nodes > 1
    workers: Annotated[Int, within(ge=0)]            # DataLoader worker processes
    num_threads: Annotated[Int, within(ge=0)]        # torch CPU threads, 0 = torch's default
    mlflow_experiment: Str
    log_model: Bool
    registered_model_name: Str | None                # register the logged model under this
    registered_model_alias: Str | None               # and point this alias at the new version

    @model_validator(mode="after")
    def _combinations(self) -> TrainCfg:
        if self.consistency > 0 and not self.pair:
            raise _rule(f"`$at.consistency` = {self.consistency} needs paired batches; set "
                        "`$at.pair=true` (or `$at.consistency=0`)")
        if self.mix != "none" and self.pair:
            raise _rule(f"`$at.mix` = {self.mix} mixes faces across the batch, which breaks "
                        "the clean/occluded twins of `$at.pair=true`; set `$at.mix=none` or "
                        "`$at.pair=false`")
        if self.freeze_epochs > 0 and self.init_from is None:
            raise _rule(f"`$at.freeze_epochs` = {self.freeze_epochs} freezes a pretrained "
                        "trunk, but `$at.init_from` is null; set it (e.g. "
                        "`-S $at.init_from=zoo:fer2013`) or `$at.freeze_epochs=0`")
        if self.distill > 0 and self.teacher is None:
            raise _rule(f"`$at.distill` = {self.distill} learns from a teacher, but "
                        "`$at.teacher` is null; set it (e.g. `-S $at.teacher=zoo:fer2013`) or "
                        "`$at.distill=0`")
        if self.teacher is not None and self.distill == 0:
            raise _rule(f"`$at.teacher` = {self.teacher} is not used while `$at.distill` = 0; "
                        "set `$at.distill` (e.g. 0.5) or `$at.teacher=null`")
        if self.pair and self.augment.occlude_clean > 0:
            raise _rule("`$at.pair=true` compares each occluded face with its clean twin, but "
                        f"`$at.augment.occlude_clean` = {self.augment.occlude_clean} would "
                        "occlude the twins too; set one of them off")
        return self


@dataclass(frozen=True, config=_SECTION)
class ValidateCfg:
    """S500 (and ``occlufer evaluate``): how the model is scored.

    Robustness curves re-occlude the clean val faces with each of ``robustness_types`` at each
    of ``robustness_ratios`` (the ``occlusion`` section's fills and landmarks, seeded per face).
    """

    batch_size: Annotated[Int, within(ge=1)]
    device: DEVICES
    robustness_types: Annotated[list[Str], subset_of(_occluder_types)]
    robustness_ratios: Annotated[list[Annotated[Float, within(ge=0.0, lt=1.0)]],
                                 AfterValidator(_increasing)]
    robustness_max_faces: Annotated[Int, within(ge=1)]  # stratified, seeded subset of faces
    bootstrap: Annotated[Int, within(ge=100)]        # resamples for the confidence intervals
    ci_level: Annotated[Float, within(gt=0.5, lt=1.0)]
    ece_bins: Annotated[Int, within(ge=2, le=100)]
    mistakes: Annotated[Int, within(ge=0, le=200)]   # most confident mistakes shown in the grid
    gap_ratio: Annotated[Float, within(gt=0.0, lt=1.0)]  # robustness/<type>/gap: clean acc -
    #                                                      acc at this ratio


@dataclass(frozen=True, config=_SECTION)
class Params:
    """The whole of ``params.yaml``."""

    seed: Annotated[Int, within(ge=0)]
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
            raise _rule(f"`portable` computes with {PORTABLE_THREADS} threads on any machine, "
                        f"but `train.num_threads` = {self.train.num_threads}; set "
                        "`train.num_threads=0` or `portable=false`")
        if self.portable and self.train.cpu_amp:
            raise _rule("`portable` computes in fp32 with oneDNN off, but `train.cpu_amp` asks "
                        "for bf16 (oneDNN, on some CPUs only); set `train.cpu_amp=false` or "
                        "`portable=false`")
        if self.portable and "cuda" in (self.train.device, self.validate.device):
            raise _rule("`portable` computes on the CPU, but a device is `cuda`; set "
                        "`train.device` and `validate.device` to auto or cpu, or "
                        "`portable=false`")
        return self


# -- one line per error ------------------------------------------------------------------------

_TYPES = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
          "string_type": "a string"}


def _fields(loc: Sequence[Any], root: type = Params) -> list[str]:
    """The keys allowed in the section at ``loc`` (a path of field names)."""
    cls = root
    for part in loc:
        cls = cls.__pydantic_fields__[part].annotation
    return list(cls.__pydantic_fields__)


def _raw(data: Any, loc: Sequence[Any]) -> Any:
    for part in loc:
        data = data[part] if isinstance(data, Mapping) else data
    return data


def _one_line(err: dict[str, Any], data: Any, root: type, prefix: str, where: str) -> str:
    """The first pydantic error as one line: what, where (the dotted key), how to fix it."""
    loc = [p for p in err["loc"] if isinstance(p, str)]  # list indices name no key
    at = ".".join([prefix, *loc] if prefix else loc)
    kind, ctx, value = err["type"], err.get("ctx") or {}, err["input"]
    if kind == "rule":
        text = Template(ctx["text"]).safe_substitute(at=at)
    elif kind == "unexpected_keyword_argument":
        text = (f"unknown key `{at}`; allowed keys here: "
                f"{', '.join(_fields(loc[:-1], root))}")
    elif kind == "missing":
        text = (f"missing key `{at}`; add it under conf/ and run `occlufer compose` to "
                "rewrite params.yaml")
    elif kind in ("dataclass_type", "dataclass_exact_type"):
        text = f"`{at or 'the file'}` must be a mapping of keys, got {type(value).__name__}"
    elif kind == "outside":
        shown = _raw(data, loc) if len(loc) < len(err["loc"]) else ctx["value"]
        text = f"`{at}` = {shown!r} is outside {ctx['interval']}"
    elif kind == "choice":
        text = f"`{at}` = {value!r} is not one of: {ctx['allowed']}"
    elif kind == "literal_error":
        allowed = ctx["expected"].replace(" or ", ", ").replace("'", "")
        text = f"`{at}` = {value!r} is not one of: {allowed}"
    elif kind == "unknown_entry":
        text = f"unknown key `{at}.{ctx['name']}`; allowed keys here: {ctx['allowed']}"
    elif kind == "unknown_items":
        text = f"`{at}` has unknown values {ctx['bad']}; allowed: {ctx['allowed']}"
    elif kind == "pair":
        text = f"`{at}` must be [min, max] with min <= max, got {ctx['value']}"
    elif kind == "number_or_range":
        text = f"`{at}` must be a number or [min, max], got {ctx['value']!r}"
    elif kind in _TYPES:
        text = f"`{at}` must be {_TYPES[kind]}, got {value!r}"
    elif kind == "list_type":
        text = f"`{at}` must be a list, got {value!r}; write it as [a, b, ...]"
    elif kind == "dict_type":
        text = (f"`{at}` must be a mapping of name: number, got {value!r}; write it as "
                "{a: 1, b: 2}")
    else:  # a pydantic check without its own wording here: its message, on one line
        text = f"`{at}`: {' '.join(str(err['msg']).split())}"
    return f"{where}: {text}"


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
        raise ConfigError(_one_line(first, data, cls, prefix, where)) from None


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
