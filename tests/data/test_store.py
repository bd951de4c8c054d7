"""The streamed store writer produces an ordinary store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from occlufer.data.store import StoreWriter, read_store


def test_store_writer_streams_chunks_into_one_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, (k, 8, 8), dtype=np.uint8) for k in (3, 0, 5, 1)]
    writer = StoreWriter(tmp_path, (8, 8))
    for c in chunks:
        writer.append(c)
    with pytest.raises(ValueError):
        writer.append(np.zeros((1, 9, 8), np.uint8))
    writer.close(pd.DataFrame({"id": [str(i) for i in range(9)]}))
    store = read_store(tmp_path)
    assert np.array_equal(np.load(tmp_path / "images.npy"), np.concatenate(chunks))
    assert store.images.shape == (9, 8, 8) and len(store.manifest) == 9
