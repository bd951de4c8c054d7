"""The baseline: the 3-conv Keras tutorial CNN, ported to PyTorch.

conv32 3×3 → maxpool → conv64 3×3 → maxpool → conv64 3×3 → dense64 → logits (no softmax: the
loss is cross-entropy on logits).
"""

from __future__ import annotations

import torch
from torch import nn


class SeedCNN(nn.Module):
    """Tutorial baseline for S×S grayscale faces (S = 48 in the tutorial)."""

    #: the class-specific part, re-initialised when fine-tuning to other classes: the final
    #: linear layer (the dense64 layer before it is trunk; its input size depends on S)
    head_prefixes: tuple[str, ...] = ("classifier.4.",)

    def __init__(self, num_classes: int = 7, image_size: int = 48, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(inplace=True),
        )
        side = ((image_size - 2) // 2 - 2) // 2 - 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 64), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
