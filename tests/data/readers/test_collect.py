"""What both readers share: split names (folders, the FER2013 Usage column)."""

from __future__ import annotations

from occlufer.data.readers import normalise_split


def test_split_names_are_normalised() -> None:
    assert [normalise_split(s) for s in ("Training", "PublicTest", "PrivateTest", "valid",
                                         "test", "fold1")] == ["train", "val", "test", "val",
                                                               "test", None]
