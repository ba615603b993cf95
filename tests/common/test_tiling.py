from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from unpaired_sr.common.tiling import balanced_tile


def tiles_needed(length: int, tile: int, overlap: int) -> int:
    return 1 if length <= tile else math.ceil((length - overlap) / (tile - overlap))


@given(
    length=st.integers(1, 5000), tile=st.integers(8, 600), overlap=st.integers(0, 64), multiple=st.sampled_from([1, 4])
)
def test_balanced_tile_covers_with_as_few_tiles_and_less_waste(length, tile, overlap, multiple):
    tile = math.ceil(max(tile, overlap + multiple) / multiple) * multiple  # a valid tile: a multiple, > overlap
    size = balanced_tile(length, tile, overlap, multiple)
    assert size <= max(tile, length) and (size == length or size % multiple == 0)
    assert tiles_needed(length, size, overlap) == tiles_needed(length, tile, overlap)


def test_hand_computed_sizes():
    assert balanced_tile(512, 256, 44) == 200  # 3 tiles of 200 instead of 3 of 256
    assert balanced_tile(100, 128, 44) == 100  # one tile: the image itself
    assert balanced_tile(256, 128, 16, multiple=4) == 96
