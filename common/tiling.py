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


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Tile offsets along one axis: every ``step`` pixels, the last tile flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts
