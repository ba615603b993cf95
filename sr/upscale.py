"""Super-resolve a whole LR image with an SR network: batched seamless tiles, strips, self-ensemble.

Each output pixel is taken from the tile in which it lies deepest, at least
the network's receptive field (plus bicubic's support) away from the tile's
edge, so tiled output equals whole-image output up to float rounding (on
CUDA, cuDNN's default TF32 rounding: about 1e-3, as each tile shape may get
its own convolution algorithm).
``sr.infer`` (files and folders) and evaluation use it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from unpaired_sr.common.errors import UserError
from unpaired_sr.common.image_io import image_to_tensor, tensor_to_image, to_float32
from unpaired_sr.common.matlab_resize import imresize
from unpaired_sr.common.tiling import balanced_tile, tile_starts
from unpaired_sr.sr.model import VDSR


def tile_spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Per tile along one axis: (tile start, tile end, output start, output end).

    Neighbouring tiles overlap by at least ``2 * margin``; each hands over to
    the next in the middle of the overlap, so every output pixel is at least
    ``margin`` from the edge of the tile it comes from (or on the image border).
    """
    if length <= tile:
        return [(0, length, 0, length)]
    if tile - 2 * margin < 1:
        raise UserError(f"tile size {tile} is too small for a receptive margin of {margin} px")
    tile = balanced_tile(length, tile, 2 * margin)
    starts = tile_starts(length, tile, tile - 2 * margin)
    spans = []
    for i, start in enumerate(starts):
        out_start = 0 if i == 0 else (start + starts[i - 1] + tile) // 2
        out_end = length if i == len(starts) - 1 else (starts[i + 1] + start + tile) // 2
        spans.append((start, start + tile, out_start, out_end))
    return spans


def _dihedral(x: torch.Tensor, transform: int, inverse: bool = False) -> torch.Tensor:
    """One of the 8 flips/rotations of (B, C, H, W) tensors, or its inverse."""
    ops = [lambda t: t.flip(3), lambda t: t.flip(2), lambda t: t.transpose(2, 3)]
    chosen = [op for bit, op in enumerate(ops) if transform & (1 << bit)]
    for op in reversed(chosen) if inverse else chosen:
        x = op(x)
    return x


def default_tile_size(model: VDSR) -> int:
    """LR tile size: large for the post-upsample form, whose tiles lose a wide receptive margin
    (22 LR pixels a side: 256-px tiles keep 69% of their pixels, 128-px ones 43%); smaller for the
    pre-upsample form, whose activations are HR-sized and whose margin is narrow (7 px)."""
    return 256 if model.form == "post_upsample" else 128


@torch.no_grad()
def upscale_image(
    model: VDSR, lr: torch.Tensor, tile_size: int | None = None, batch_size: int = 8, self_ensemble: bool = False
) -> torch.Tensor:
    """LR (3, h, w) in [0, 1] -> SR (3, h * scale, w * scale) in [0, 1], on the model's device."""
    tile_size = tile_size or default_tile_size(model)
    device = next(model.parameters()).device
    lr = lr.to(device)
    transforms = range(8) if self_ensemble else [0]
    total = None
    for transform in transforms:
        out = _dihedral(
            _upscale_tiled(model, _dihedral(lr[None], transform)[0], tile_size, batch_size)[None],
            transform,
            inverse=True,
        )[0]
        total = out if total is None else total + out
    result = total / len(transforms)
    if not torch.isfinite(result).all():
        raise UserError("the SR network produced non-finite values")
    return result.clamp(0, 1)


def _upscale_tiled(model: VDSR, lr: torch.Tensor, tile_size: int, batch_size: int) -> torch.Tensor:
    scale, margin = model.scale, model.receptive_radius
    _, height, width = lr.shape
    rows, cols = tile_spans(height, tile_size, margin), tile_spans(width, tile_size, margin)
    boxes = [(r, c) for r in rows for c in cols]
    output = torch.empty(3, height * scale, width * scale, device=lr.device)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        tiles = torch.stack([lr[:, r[0] : r[1], c[0] : c[1]] for r, c in chunk])
        for (r, c), sr_tile in zip(chunk, model(tiles).float()):
            top, left = (r[2] - r[0]) * scale, (c[2] - c[0]) * scale
            output[:, r[2] * scale : r[3] * scale, c[2] * scale : c[3] * scale] = sr_tile[
                :, top : top + (r[3] - r[2]) * scale, left : left + (c[3] - c[2]) * scale
            ]
    return output


STRIP_ROWS = 128  # LR rows super-resolved at a time


def upscale_strips(
    model: VDSR,
    lr: np.ndarray,
    tile_size: int | None = None,
    batch_size: int = 8,
    self_ensemble: bool = False,
    strip_rows: int = STRIP_ROWS,
) -> Iterator[np.ndarray]:
    """SR of an LR image (H, W, 3), any depth, as uint8 rows: ``strip_rows`` LR rows at a time, top to bottom.

    Each strip is computed with the network's receptive margin of LR context
    above and below it, so the rows equal those of ``upscale_image`` on the
    whole image up to float rounding; only one strip is ever in float.
    """
    height, scale, margin = lr.shape[0], model.scale, model.receptive_radius
    for top in range(0, height, strip_rows):
        bottom = min(height, top + strip_rows)
        start, end = max(0, top - margin), min(height, bottom + margin)
        band = upscale_image(model, image_to_tensor(lr[start:end]), tile_size, batch_size, self_ensemble)
        yield tensor_to_image(band[:, (top - start) * scale : (bottom - start) * scale])


def upscale_alpha_strips(alpha: np.ndarray, scale: int, strip_rows: int = STRIP_ROWS) -> Iterator[np.ndarray]:
    """An alpha channel (H, W) upscaled with MATLAB bicubic, as float rows (h * scale, W * scale), in strips."""
    height, margin = alpha.shape[0], 4  # bicubic reads 2 LR pixels either side when enlarging
    for top in range(0, height, strip_rows):
        bottom = min(height, top + strip_rows)
        start, end = max(0, top - margin), min(height, bottom + margin)
        band = imresize(to_float32(alpha[start:end]), scale)
        yield np.clip(band[(top - start) * scale : (bottom - start) * scale], 0, 1)
