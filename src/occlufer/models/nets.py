"""The architectures: ``seed_cnn``, the tutorial baseline, and ResNets for small grayscale faces
on torchvision's ``BasicBlock``: ``resnet`` (widths ``w..8w``, stride-1 stem), ``compact``
(stride-2 stem, one block per stage, for CPUs), ``occ_resnet`` (RAN-style region attention,
Wang et al. 2020, supervised by the masks).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.models.resnet import BasicBlock


class SeedCNN(nn.Module):
    """The Keras tutorial CNN (conv32 → pool → conv64 → pool → conv64 → dense64) for S×S faces."""

    head_prefixes: tuple[str, ...] = ("classifier.4.",)  #: the final linear layer

    def __init__(self, num_classes: int = 7, image_size: int = 48, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(inplace=True))
        side = ((image_size - 2) // 2 - 2) // 2 - 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 64), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else None)
    return nn.Sequential(BasicBlock(cin, cout, stride, down),
                         *(BasicBlock(cout, cout) for _ in range(blocks - 1)))


class FaceResNet(nn.Module):
    """ResNet with a full-resolution stem; logits for N×1×S×S inputs (any S ≥ 16)."""

    default_width = 32
    default_blocks: tuple[int, ...] = (2, 2, 2, 2)
    stem_stride = 1
    head_prefixes: tuple[str, ...] = ("head.",)  #: the class-specific part (``state_dict``)

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
        stages = zip([width, *widths[:-1]], widths, blocks, strict=True)
        self.stages = nn.Sequential(*(_stage(cin, cout, n, 1 if i == 0 else 2)
                                      for i, (cin, cout, n) in enumerate(stages)))
        self.features_dim = widths[-1]
        self.head = self._head(widths[-1], num_classes, dropout)
        for m in self.modules():  # zero-init each block's last BN: each starts as identity
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BasicBlock):
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
    """``resnet`` trunk + region attention that learns to down-weight occluded cells."""

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
        """BCE of the last training batch's cell scores vs each cell's unoccluded share."""
        score = self._last_score
        if score is None:
            raise RuntimeError("aux_loss needs a forward pass in training mode first")
        hidden = F.adaptive_avg_pool2d(masks.float().unsqueeze(1), score.shape[-2:])
        return F.binary_cross_entropy_with_logits(score.float(), 1.0 - hidden)
