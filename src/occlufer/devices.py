"""The torch device a ``device`` setting names (``train.device``, ``validate.device``,
``--device``): a leaf module, so that inference and evaluation need not import training."""

import torch

from occlufer import kernels
from occlufer.errors import OccluferError


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error. In a
    portable process (:func:`occlufer.kernels.pinned`) torch's switches are set first."""
    if kernels.pinned():
        kernels.pin_torch()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OccluferError("train.device = cuda but no CUDA device is visible; "
                            "use train.device=auto or cpu")
    return torch.device(name)
