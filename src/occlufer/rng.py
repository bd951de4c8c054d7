"""Randomness per item, not per process.

Every random decision about one image comes from a generator derived from
``(seed, image id, purpose)``, so results do not depend on worker count, order or restarts.
"""

import hashlib

import numpy as np


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def item_rng(seed: int, item_id: str, purpose: str) -> np.random.Generator:
    """The generator for one item and one purpose (e.g. ``"occlude"``, ``"split"``)."""
    return np.random.default_rng([seed, _key(item_id), _key(purpose)])
