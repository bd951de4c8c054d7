"""params.yaml matches conf/, and bad parameters fail with one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from occlufer.config import ConfigError, compose, dump_params, load_params, parse_params
from tests.conftest import CONF, ROOT


def test_committed_params_yaml_equals_composed_conf(tmp_path: Path) -> None:
    dump_params(compose([], CONF), tmp_path / "params.yaml")
    assert (ROOT / "params.yaml").read_text() == (tmp_path / "params.yaml").read_text(), (
        "params.yaml is stale: run `occlufer compose` (make params) and commit it")


def test_default_params_are_valid_and_patent_shaped() -> None:
    p = load_params(ROOT / "params.yaml")
    assert p.split.val_fraction == 0.5  # the patent's equal proportions
    assert p.model.name == "seed_cnn"
    assert 0 < p.occlusion.ratio < 1


def test_overrides_reach_the_right_section() -> None:
    smoke = yaml.safe_load((CONF / "experiment" / "smoke.yaml").read_text())
    p = parse_params(compose(["occlusion.ratio=0.4", "experiment=smoke"], CONF))
    assert p.occlusion.ratio == 0.4
    assert p.train.epochs == smoke["train"]["epochs"]
    assert p.train.epochs != load_params(ROOT / "params.yaml").train.epochs
    assert p.acquire.n_per_class == smoke["acquire"]["n_per_class"]


def _default() -> dict:
    return compose([], CONF)


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda d: d["model"].update(name="resnet9000"), ["model.name", "seed_cnn"]),
        (lambda d: d["occlusion"].update(ratio=1.0), ["occlusion.ratio", "[0.0, 1.0)"]),
        (lambda d: d["occlusion"].update(ratio=-0.1), ["occlusion.ratio", "outside"]),
        (lambda d: d["train"].pop("epochs"), ["`train.epochs`: Field required", "compose"]),
        (lambda d: d.pop("split"), ["`split`: Field required", "conf/"]),
        (lambda d: d["train"].update(epoch=3), ["`train.epoch`: Unexpected keyword argument",
                                                "allowed keys here", "epochs"]),
        (lambda d: d["train"].update(epochs="ten"), ["train.epochs", "integer"]),
        (lambda d: d["train"].update(optimizer="lbfgs"), ["train.optimizer", "adamw"]),
        (lambda d: d["acquire"].update(classes=["happy", "joy"]), ["acquire.classes", "joy"]),
        (lambda d: d["acquire"].update(image_size=50), ["acquire.image_size", "96"]),
        (lambda d: d["acquire"].update(intensity=[0.9, 0.1]), ["acquire.intensity", "min <= max"]),
        (lambda d: d["split"].update(val_fraction=0), ["split.val_fraction", "greater than 0"]),
        (lambda d: d["occlusion"].update(ratio=[0.4, 0.1]), ["occlusion.ratio", "min <= max"]),
        (lambda d: d["occlusion"].update(ratio=[0.1, 1.2]), ["occlusion.ratio", "outside"]),
        (lambda d: d["occlusion"].update(ratio=[0.1]), ["occlusion.ratio", "[min, max]"]),
        (lambda d: d["occlusion"].update(ratio="big"), ["occlusion.ratio", "number or [min"]),
        (lambda d: d["occlusion"]["types"].update(visor=1.0), ["occlusion.types", "visor",
                                                               "sunglasses"]),
        (lambda d: d["occlusion"]["types"].update(block=-1), ["occlusion.types.block",
                                                              "greater than or equal to 0"]),
        (lambda d: d["occlusion"].update(types={k: 0 for k in d["occlusion"]["types"]}),
         ["occlusion.types", "positive weight"]),
        (lambda d: d["occlusion"].update(types=["block"]), ["occlusion.types", "dictionary",
                                                            "{a: 1, b: 2}"]),
        (lambda d: d["occlusion"]["landmarks"].update(nose=[0.5]), ["landmarks.nose", "[x, y]"]),
        (lambda d: d["occlusion"].update(fills=["plaid"]), ["occlusion.fills", "texture"]),
        (lambda d: d["occlusion"]["styles"].update(mask=["visor"]),
         ["occlusion.styles.mask", "['visor']", "respirator"]),
        (lambda d: d["occlusion"]["styles"].update(mask=[]), ["occlusion.styles.mask", "[]"]),
        (lambda d: d["occlusion"]["styles"].update(block=["gray"]),
         ["occlusion.styles", "'block'", "draws no styles"]),
        (lambda d: d["split"].update(strategy="random"), ["split.strategy", "keep_source"]),
        (lambda d: d["validate"].update(robustness_ratios=[0.3, 0.1]),
         ["validate.robustness_ratios", "increasing"]),
        (lambda d: d["validate"].update(robustness_types=["visor"]),
         ["validate.robustness_types", "visor", "sunglasses"]),
        (lambda d: d["validate"].update(ci_level=95), ["validate.ci_level", "less than 1"]),
        (lambda d: d["split"].update(val_fraction=0.6, test_fraction=0.4),
         ["split.val_fraction", "test_fraction", "< 1"]),
    ],
)
def test_bad_values_give_one_line_naming_key_and_allowed(edit, needles) -> None:
    data = _default()
    edit(data)
    with pytest.raises(ConfigError) as err:
        parse_params(data)
    message = str(err.value)
    assert "\n" not in message and message.startswith("params.yaml: ")
    for needle in needles:
        assert needle in message, message


def test_unknown_hydra_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model"):
        compose(["model=nope"], CONF)


@pytest.mark.parametrize("content", ["seed: [unclosed\n", "- just\n- a list\n"])
def test_broken_params_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "params.yaml").write_text(content)
    with pytest.raises(ConfigError) as err:
        load_params(tmp_path / "params.yaml")
    assert "\n" not in str(err.value)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such parameter file"):
        load_params(tmp_path / "params.yaml")


def test_stage_with_bad_params_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    data = _default()
    data["model"]["name"] = "resnet9000"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "occlufer.stages.acquire"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "model.name" in lines[0] and "seed_cnn" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists(), "no work may start before the parameters are valid"


def test_cli_compose_check_detects_drift(tmp_path: Path) -> None:
    from occlufer.cli import main

    out = tmp_path / "params.yaml"
    assert main(["compose", "--conf", str(CONF), "--out", str(out)]) == 0
    assert main(["compose", "--conf", str(CONF), "--out", str(out), "--check"]) == 0
    assert main(["compose", "occlusion.ratio=0.3", "--conf", str(CONF), "--out", str(out),
                 "--check"]) == 2


@pytest.mark.parametrize("source", ["image_folder", "fer2013_csv", "photos"])
def test_every_acquire_option_validates_once_its_path_is_set(source: str) -> None:
    keys = set(yaml.safe_load((CONF / "acquire" / "synthetic.yaml").read_text()))
    assert set(yaml.safe_load((CONF / "acquire" / f"{source}.yaml").read_text())) == keys
    with pytest.raises(ConfigError, match="`acquire.path` is required"):
        parse_params(compose([f"acquire={source}"], CONF))
    p = parse_params(compose([f"acquire={source}", "acquire.path=/data/x", "experiment=smoke"],
                             CONF))
    assert p.acquire.source == source and p.acquire.path == "/data/x"


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["acquire.classes=[happy,contempt]"], ["synthetic", "contempt"]),
        (["acquire.labels_path=/x.csv"], ["labels_path", "fer2013_csv"]),
        (["acquire=image_folder", "acquire.path=/x", "acquire.group_regex='(S'"],
         ["group_regex", "regular expression"]),
        (["acquire=photos", "acquire.path=/x", "acquire.faces=first"], ["acquire.faces", "skip"]),
        (["acquire=synthetic", "acquire.n_per_class=null"], ["acquire.n_per_class", "required"]),
    ],
)
def test_bad_acquire_combinations(overrides, needles) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(compose(overrides, CONF))
    assert "\n" not in str(err.value)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_contempt_is_a_label_of_real_datasets_only() -> None:
    real = ["acquire=image_folder", "acquire.path=/ck", "acquire.classes=[angry,contempt]"]
    assert parse_params(compose(real, CONF)).acquire.classes == ["angry", "contempt"]
    with pytest.raises(ConfigError, match=r"`acquire.classes` has \['contempt'\], which source "
                                          "'synthetic' cannot draw"):
        parse_params(compose(["acquire.classes=[angry,contempt]"], CONF))


def test_number_or_range_and_weights_parse() -> None:
    data = _default()
    data["occlusion"]["ratio"] = [0.1, 0.3]
    assert parse_params(data).occlusion.ratio == [0.1, 0.3]
    data["occlusion"]["ratio"] = 0
    assert parse_params(data).occlusion.ratio == 0.0
    p = parse_params(compose(["occlusion=dropout", "split=keep_source"], CONF))
    assert {k for k, v in p.occlusion.types.items() if v > 0} == {
        "coarse_dropout", "grid_dropout", "erasing"}
    assert p.split.strategy == "keep_source"
    assert load_params(ROOT / "params.yaml").split.strategy == "group_stratified"


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_recipe_composes_and_validates(recipe: str) -> None:
    p = parse_params(compose([f"experiment={recipe}"], CONF))
    if recipe.startswith("fer2013"):
        assert p.acquire.source == "image_folder" and p.split.strategy == "keep_source"
        assert p.train.augment.fresh_occlusion and p.train.tta_flip


@pytest.mark.parametrize("model", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_every_model_option_builds_and_classifies(model: str) -> None:
    import torch

    from occlufer.models import build_model

    p = parse_params(compose([f"model={model}"], CONF))
    net = build_model(p.model.name, num_classes=7, image_size=48, dropout=p.model.dropout,
                      width=p.model.width, blocks=p.model.blocks).eval()
    with torch.no_grad():
        logits = net(torch.zeros(3, 1, 48, 48))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()


@pytest.mark.parametrize(("override", "message"), [
    ("occlusion.types.block=-1", "`occlusion.types.block`: Input should be greater than or equal "
     "to 0, got -1"),
    ("occlusion.types.hand=-0.5", "`occlusion.types.hand`: Input should be greater than or equal "
     "to 0, got -0.5"),
    ("occlusion.types.block=abc", "`occlusion.types.block`: Input should be a valid number, "
     "got 'abc'"),
    ("occlusion.ratio=[0.1,1.5]", "`occlusion.ratio` = [0.1, 1.5] is outside [0.0, 1.0)"),
    ("occlusion.styles.mask=[surgical,visor]", "`occlusion.styles.mask` = ['surgical', 'visor'] "
     "must be a non-empty list of surgical, scarf, respirator, cloth, bandana, gaiter"),
])
def test_messages_name_the_exact_key_not_its_mapping(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(compose(["experiment=smoke", override], CONF))
    text = str(err.value)
    assert message in text and "\n" not in text
    assert "sunglasses" not in text  # the whole occlusion.types mapping is not dumped


def test_an_unknown_mapping_key_is_named_in_full() -> None:
    data = _default()
    data["occlusion"]["types"]["visor"] = 1.0
    with pytest.raises(ConfigError, match=r"unknown key `occlusion\.types\.visor`; allowed keys "
                                          r"here: .*sunglasses"):
        parse_params(data)


def test_mask_styles_reach_the_occluders() -> None:
    """`occlusion.styles` is what the engine draws from; a spec refuses styles it lacks."""
    from occlufer.occlusion import OcclusionSpec, occlude_batch
    from occlufer.rng import item_rng

    p = parse_params(compose(["experiment=smoke", "occlusion.styles.mask=[gaiter,bandana]"],
                             CONF))
    spec = OcclusionSpec.from_cfg(p.occlusion).only("mask")
    images = np.full((40, 48, 48), 128, dtype=np.uint8)
    occ = occlude_batch(images, [item_rng(0, f"f{i}", "styles") for i in range(40)], spec)
    assert set(occ.styles) == {"gaiter", "bandana"}
    with pytest.raises(ValueError, match="bad styles"):
        OcclusionSpec(("mask",), (1.0,), styles=(("mask", ("visor",)),))
    with pytest.raises(ValueError, match="bad styles"):
        OcclusionSpec(("block",), (1.0,), styles=(("block", ("gray",)),))
