"""Seeds derived from a run's seed and names, so results do not depend on processing order."""

from __future__ import annotations

import zlib

import numpy as np


def seed_keys(*keys: int | str) -> list[int]:
    """Integers for ``numpy.random.SeedSequence``: names by their CRC-32, numbers as they are."""
    return [zlib.crc32(key.encode()) if isinstance(key, str) else int(key) for key in keys]


def derived_seed(*keys: int | str) -> int:
    """A 63-bit seed (fits ``torch.Generator.manual_seed``) from a run seed, names and indices."""
    return int(np.random.SeedSequence(seed_keys(*keys)).generate_state(1, np.uint64)[0] >> 1)
