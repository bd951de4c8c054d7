"""``resolve_device``: the torch device a ``device`` setting names."""

from __future__ import annotations

import pytest
import torch

from occlufer.devices import resolve_device
from occlufer.errors import OccluferError


def test_auto_and_named_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_without_a_gpu_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(OccluferError, match="no CUDA device is visible"):
        resolve_device("cuda")
