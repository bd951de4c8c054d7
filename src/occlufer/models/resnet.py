"""ResNets for small grayscale faces, trained from scratch (no pretrained weights here).

- :class:`FaceResNet` (``resnet``): torchvision's ``BasicBlock`` in four stages of width
  ``w, 2w, 4w, 8w``; the stem is a 3×3 convolution *without* ImageNet's stride-4 stem, so a 48×48
  face keeps 48×48 feature maps in the first stage and ends at 6×6.
- :class:`CompactResNet` (``compact``): the same blocks behind a stride-2 stem (24×24 first
  stage), one block per stage and a narrow width: about a tenth of ``resnet``'s arithmetic, for
  training and inference on a couple of CPU cores.
- :class:`OcclusionAttentionResNet` (``occ_resnet``): the ``resnet`` trunk with a region-attention
  head in the spirit of RAN (Wang et al., 2020): a small convolutional branch scores every cell of
  the last feature map, attention-weighted pooling down-weights the cells it scores low, and the
  head concatenates that with plain global pooling. When the occlusion masks are known (they are
  for the training rows), :meth:`aux_loss` supervises the scores with each cell's visible
  fraction, so the model learns *where* a face is hidden instead of guessing from labels alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.models.resnet import BasicBlock


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    layers = [BasicBlock(cin, cout, stride, down)]
    layers += [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class FaceResNet(nn.Module):
    """ResNet with a full-resolution stem; logits for N×1×S×S inputs (any S ≥ 16)."""

    default_width = 32
    default_blocks: tuple[int, ...] = (2, 2, 2, 2)
    stem_stride = 1
    #: the class-specific part (``state_dict`` key prefixes), re-initialised when fine-tuning to
    #: other classes; everything else is the trunk
    head_prefixes: tuple[str, ...] = ("head.",)

    def __init__(self, num_classes: int = 7, image_size: int = 48, dropout: float = 0.0,
                 width: int | None = None, blocks: Sequence[int] | None = None) -> None:
        super().__init__()
        width = int(width or self.default_width)
        blocks = tuple(blocks or self.default_blocks)
        if not blocks or min(blocks) < 1:
            raise ValueError(f"blocks must be positive counts per stage, got {list(blocks)}")
        widths = [width * 2 ** i for i in range(len(blocks))]
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, self.stem_stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True))
        stages, cin = [], width
        for i, (cout, n) in enumerate(zip(widths, blocks, strict=True)):
            stages.append(_stage(cin, cout, n, 1 if i == 0 else 2))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.features_dim = cin
        self.head = self._head(cin, num_classes, dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: each starts as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def _head(self, dim: int, num_classes: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                             nn.Linear(dim, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class CompactResNet(FaceResNet):
    """``resnet`` blocks behind a stride-2 stem: the fast CPU model."""

    default_width = 24
    default_blocks = (1, 1, 1, 1)
    stem_stride = 2


class OcclusionAttentionResNet(FaceResNet):
    """``resnet`` trunk + region attention that learns to down-weight occluded cells.

    In training, :meth:`forward` keeps the attention map of the batch so that the training loop
    can add :meth:`aux_loss` (weighted by ``model.mask_loss``) from the occlusion masks.
    """

    head_prefixes = ("head.", "attention.")

    def _head(self, dim: int, num_classes: int, dropout: float) -> nn.Module:
        self.attention = nn.Sequential(
            nn.Conv2d(dim, dim // 4, 1), nn.BatchNorm2d(dim // 4), nn.ReLU(inplace=True),
            nn.Conv2d(dim // 4, 1, 1))
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.forward_features(x)
        score = self.attention(f)                     # N×1×h×w logits: is this cell visible?
        weight = torch.sigmoid(score)
        attended = (f * weight).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-6)
        pooled = f.mean((2, 3))
        self._last_score = score if self.training else None
        return self.head(torch.cat([pooled, attended], dim=1))

    def aux_loss(self, masks: torch.Tensor) -> torch.Tensor:
        """BCE between the last batch's cell scores and each cell's visible fraction.

        ``masks``: N×H×W (bool or float, 1 = occluded) for the batch just forwarded.
        """
        score = self._last_score
        if score is None:
            raise RuntimeError("aux_loss needs a forward pass in training mode first")
        hidden = F.adaptive_avg_pool2d(masks.float().unsqueeze(1), score.shape[-2:])
        return F.binary_cross_entropy_with_logits(score.float(), 1.0 - hidden)
