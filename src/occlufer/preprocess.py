"""Model input: the one place that turns uint8 faces into the tensors models see."""

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


def tta_views(x: torch.Tensor, flip: bool = False, shift: int = 0) -> list[torch.Tensor]:
    """The test-time views of a N×1×H×W batch: itself, then (``shift > 0``) itself shifted by
    ``shift`` pixels up, down, left and right with the edges replicated, then (``flip``) the
    mirror image of each — 1, 2, 5 or 10 views."""
    views = [x]
    if shift > 0:
        s = shift
        h, w = x.shape[-2:]
        padded = torch.nn.functional.pad(x, (s, s, s, s), mode="replicate")
        views += [padded[..., s + dy:s + dy + h, s + dx:s + dx + w]
                  for dy, dx in ((-s, 0), (s, 0), (0, -s), (0, s))]
    if flip:
        views += [torch.flip(v, dims=[3]) for v in views]
    return views


class WithViews(torch.nn.Module):
    """``model`` whose logits are averaged over :func:`tta_views` (the test-time averaging a
    model was saved with: its ``tta_flip`` / ``tta_shift``), for predictors and exports."""

    def __init__(self, model: torch.nn.Module, flip: bool = False, shift: int = 0) -> None:
        super().__init__()
        self.model, self.flip, self.shift = model, flip, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = tta_views(x, self.flip, self.shift)
        if len(views) == 1:
            return self.model(x)
        return torch.stack([self.model(v).float() for v in views]).mean(0)
