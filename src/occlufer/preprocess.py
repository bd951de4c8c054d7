"""Model input: the one place that turns uint8 faces into the tensors models see."""

from __future__ import annotations

import numpy as np
import torch

#: images are scaled to [0, 1], then normalised with this mean and std
MEAN = 0.5
STD = 0.5


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """N×H×W uint8 (array, memory map or tensor) → N×1×H×W float32, normalised.

    A tensor stays on its device (the training loop normalises on the GPU).
    """
    if isinstance(images, torch.Tensor):
        x = images.float()
    else:
        x = torch.from_numpy(np.array(images, dtype=np.float32))  # a copy: may be read-only
    return ((x / 255.0 - MEAN) / STD).unsqueeze(1)
