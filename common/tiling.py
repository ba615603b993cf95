"""Tile sizes for processing large images in pieces."""

from __future__ import annotations

import math


def balanced_tile(length: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The smallest tile length (at most ``tile``, a multiple of ``multiple``) that covers ``length``
    with as few tiles as ``tile`` would, neighbours overlapping by at least ``overlap``.

    Without it an image slightly larger than one tile costs two full tiles and
    the time per pixel jumps; with it, the wasted overlap stays a small,
    near-constant share, so processing time grows linearly with pixels.
    """
    if length <= tile:
        return length
    step = tile - overlap
    if step < 1:
        raise ValueError(f"tile {tile} is not larger than the overlap {overlap}")
    count = math.ceil((length - overlap) / step)
    size = math.ceil((length - overlap) / count) + overlap
    return min(tile, math.ceil(size / multiple) * multiple)
