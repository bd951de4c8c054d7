"""Fine-tuning (``train.init_from``): copy a saved model's *trunk* (all but its class's
``head_prefixes``), and its head for the same classes (rows reordered), then freeze the trunk for
a while; a trunk that does not fit stops with one line naming the ``model`` settings that would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from occlufer.errors import OccluferError
from occlufer.model_files import resolve_model_file
from occlufer.models import MODELS, model_class

if TYPE_CHECKING:
    from occlufer.config import Params

KEY = "train.init_from"


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    prefixes = getattr(model, "head_prefixes", None)
    if not prefixes:
        raise OccluferError(f"{KEY}: model class {type(model).__name__} names no head "
                            "(head_prefixes), so its trunk cannot be told from its head")
    return tuple(prefixes)


def is_head(key: str, prefixes: Sequence[str]) -> bool:
    return any(key.startswith(p) for p in prefixes)


def _classifier(model: nn.Module, prefixes: Sequence[str]) -> str:
    """The head's final linear layer (one row per class)."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and is_head(n + ".", prefixes)]
    if not names:
        raise OccluferError(f"{KEY}: model class {type(model).__name__} has no linear layer in "
                            f"its head {list(prefixes)}")
    return names[-1]


def _effective_arch(name: str, arch: Mapping[str, Any]) -> dict[str, Any]:
    """``width``/``blocks`` as the class builds them (``None`` → the class default)."""
    cls, out = model_class(name), {}
    for key in ("width", "blocks"):
        default = getattr(cls, f"default_{key}", None)
        if default is None:
            continue
        value = arch.get(key) if arch.get(key) is not None else default
        out[key] = [int(b) for b in value] if key == "blocks" else int(value)
    return out


def _describe(name: str, arch: Mapping[str, Any], size: int) -> str:
    width = f" width-{arch['width']}" if "width" in arch else ""
    blocks = f" blocks {arch['blocks']}" if "blocks" in arch else ""
    return f"{name}{width}{blocks} model for {size}×{size} faces"


def _overrides(name: str, arch: Mapping[str, Any]) -> str:
    width = f" model.width={arch['width']}" if "width" in arch else ""
    blocks = f" model.blocks=[{','.join(map(str, arch['blocks']))}]" if "blocks" in arch else ""
    return f"model={name}{width}{blocks}"


def read_saved(ref: str, path: Path, key: str = KEY) -> dict[str, Any]:
    """The content of ``model.pt`` ``path`` (``ref`` given to ``key``); else one line."""
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of a foreign or broken file
        raise OccluferError(f"{key} {ref}: {path} is not a readable model.pt "
                            f"({exc.__class__.__name__}); give one written by `train`") from None
    need = ("name", "classes", "image_size", "state_dict")
    if not isinstance(meta, dict) or any(k not in meta for k in need):
        raise OccluferError(f"{key} {ref}: {path} is not a model.pt written by occlufer (it "
                            f"lacks {', '.join(need)}); give one written by `train`")
    return meta


def _check_fits(ref: str, meta: Mapping[str, Any], name: str, arch: Mapping[str, Any],
                image_size: int) -> None:
    """The saved architecture must be the configured one, else one line with the fix."""
    saved_name, saved_size = str(meta["name"]), int(meta["image_size"])
    if saved_name not in MODELS:
        raise OccluferError(f"{KEY} {ref} is a {saved_name!r} model, an architecture this "
                            f"version does not know ({', '.join(sorted(MODELS))}); drop "
                            f"{KEY} or give another model")
    saved_arch = _effective_arch(saved_name, meta.get("arch") or {})
    own_arch = _effective_arch(name, arch)
    fix = []
    if (saved_name, saved_arch) != (name, own_arch):
        fix.append(_overrides(saved_name, saved_arch))
    if saved_size != image_size:
        fix.append(f"acquire.image_size={saved_size}")
    if fix:
        raise OccluferError(f"{KEY} {ref} is a {_describe(saved_name, saved_arch, saved_size)}, "
                            f"not the configured {_describe(name, own_arch, image_size)}; set "
                            f"{' '.join(fix)} (e.g. `dvc exp run -S ...`) or drop {KEY}")


def _check_keys(ref: str, saved: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                keys: set[str], name: str) -> None:
    missing = sorted(k for k in keys if k not in saved)
    unexpected = sorted(k for k in saved if k not in own)
    shapes = sorted(k for k in keys if k in saved and saved[k].shape != own[k].shape)
    problems = [f"{what} {', '.join(ks[:3])}" + (" ..." if len(ks) > 3 else "")
                for what, ks in (("missing", missing), ("unexpected", unexpected)) if ks]
    if shapes:
        k = shapes[0]
        problems.append(f"{k} is {tuple(saved[k].shape)}, the model has {tuple(own[k].shape)}")
    if problems:
        raise OccluferError(f"{KEY} {ref}: its weights do not fit the configured {name} model "
                            f"({'; '.join(problems)}); it comes from another version of the "
                            f"architecture: retrain it with this one or drop {KEY}")


def load_init(model: nn.Module, ref: str, *, name: str, classes: Sequence[str],
              image_size: int, arch: Mapping[str, Any], path: Path | None = None) -> str:
    """Copy the trunk (and for the same classes the head) of ``ref`` (at ``path``) into ``model``;
    returns what was loaded, for the log."""
    path = resolve_model_file(ref) if path is None else path
    meta = read_saved(ref, path)
    _check_fits(ref, meta, name, arch, image_size)
    saved, own = dict(meta["state_dict"]), model.state_dict()
    prefixes = head_prefixes(model)
    trunk = {k for k in own if not is_head(k, prefixes)}
    saved_classes, classes = [str(c) for c in meta["classes"]], list(classes)
    if saved_classes == classes:
        _check_keys(ref, saved, own, set(own), name)
        model.load_state_dict(saved)
        return f"trunk and head of a {meta['name']} model ({len(classes)} classes)"
    _check_keys(ref, {k: v for k, v in saved.items() if not is_head(k, prefixes)}, own, trunk,
                name)
    if sorted(saved_classes) == sorted(classes):
        _check_keys(ref, saved, own, set(own), name)
        order = torch.tensor([saved_classes.index(c) for c in classes])
        linear = _classifier(model, prefixes)
        for k in (f"{linear}.weight", f"{linear}.bias"):
            if k in saved:
                saved[k] = saved[k].index_select(0, order)
        model.load_state_dict(saved)
        return (f"trunk and head of a {meta['name']} model, head rows reordered from "
                f"{saved_classes} to {classes}")
    model.load_state_dict({**own, **{k: saved[k] for k in trunk}})
    new = sorted(set(classes) - set(saved_classes))
    gone = sorted(set(saved_classes) - set(classes))
    return (f"trunk of a {meta['name']} model; head re-initialised for the classes "
            f"{classes} (new: {new or 'none'}, dropped: {gone or 'none'})")


def trunk_freezer(model: nn.Module, epochs: int) -> Callable[[int], None] | None:
    """The ``fit(before_epoch=...)`` hook freezing the trunk's weights and BatchNorm statistics
    in epochs ``1..epochs``; ``None`` for 0."""
    if epochs <= 0:
        return None
    prefixes = head_prefixes(model)

    def before_epoch(epoch: int) -> None:
        frozen = epoch <= epochs
        for key, p in model.named_parameters():
            if not is_head(key, prefixes):
                p.requires_grad_(not frozen)
        if frozen:
            for key, m in model.named_modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not is_head(
                        key + ".", prefixes):
                    m.eval()

    return before_epoch


def init_model(model: nn.Module, params: Params, classes: Sequence[str], image_size: int,
               path: Path | None, *, print_: bool = True) -> Callable[[int], None] | None:
    """Load ``train.init_from`` (at ``path``) into ``model``; returns the freezing hook."""
    cfg = params.train
    if cfg.init_from is None:
        return None
    what = load_init(model, cfg.init_from, name=params.model.name, classes=classes,
                     image_size=image_size, path=path,
                     arch={"width": params.model.width, "blocks": params.model.blocks})
    if print_:
        print(f"train: from {cfg.init_from}: {what}"
              + (f"; trunk frozen for the first {cfg.freeze_epochs} epoch(s)"
                 if cfg.freeze_epochs else ""), flush=True)
    return trunk_freezer(model, cfg.freeze_epochs)
