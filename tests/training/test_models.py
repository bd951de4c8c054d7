"""Every registered architecture: shapes, save/load round trip, the attention model's mask loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from occlufer.models import MODELS, build_model, load_model, save_model


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [48, 64])
def test_logits_shape_for_every_model(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, image_size=size, dropout=0.1).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, size, size))
    assert out.shape == (3, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip_keeps_outputs(name: str, tmp_path: Path) -> None:
    arch = {"width": 8, "blocks": [1, 1, 1, 1]} if name != "seed_cnn" else {}
    torch.manual_seed(1)
    model = build_model(name, num_classes=7, image_size=48, **arch).eval()
    save_model(tmp_path / "m.pt", model, name=name, classes=list("abcdefg"), image_size=48,
               dropout=0.0, arch=arch, tta_flip=True, epoch=3)
    loaded, meta = load_model(tmp_path / "m.pt")
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["arch"] == arch and meta["tta_flip"] is True and meta["epoch"] == 3


def test_width_and_blocks_shape_the_resnets() -> None:
    small = build_model("resnet", num_classes=7, image_size=48, width=8, blocks=[1, 1])
    big = build_model("resnet", num_classes=7, image_size=48, width=16, blocks=[2, 2, 2])
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(small) < count(big)
    assert len(big.stages) == 3 and all(len(s) == 2 for s in big.stages)
    # the resnet stem keeps full resolution; compact halves it
    x = torch.zeros(1, 1, 48, 48)
    assert build_model("resnet", num_classes=7, image_size=48).stem(x).shape[-1] == 48
    assert build_model("compact", num_classes=7, image_size=48).stem(x).shape[-1] == 24


def test_attention_model_learns_from_masks() -> None:
    """The mask loss is low when the scores say 'hidden' where the mask is, and has gradients."""
    torch.manual_seed(0)
    model = build_model("occ_resnet", num_classes=7, image_size=48, width=8).train()
    x = torch.randn(4, 1, 48, 48)
    masks = torch.zeros(4, 48, 48)
    masks[:, 24:, :] = 1  # lower half hidden
    model(x)
    loss = model.aux_loss(masks)
    loss.backward()
    assert loss.item() > 0
    assert model.attention[0].weight.grad is not None
    assert model.attention[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        model(x)
    with pytest.raises(RuntimeError, match="training mode"):
        model.aux_loss(masks)
