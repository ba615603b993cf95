"""Degrade a whole clean image with a flow: overlapping tiles, one noise field, seeds per image.

The latent noise is drawn once for the whole image and each tile uses its own
slice of it, so overlapping tiles carry the *same* noise: blending them cannot
thin the noise along the seams (blending independent samples would).
``degradation.synthesize`` (folders), the fidelity check and the benchmarks use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unpaired_sr.common.errors import UserError
from unpaired_sr.common.seeds import derived_seed
from unpaired_sr.common.tiling import balanced_tile, tile_starts
from unpaired_sr.degradation.flow import DegradationFlow


def sample_seed(seed: int, name: str, sample_index: int = 0) -> int:
    """A 63-bit seed for one (image, sample), independent of processing order."""
    return derived_seed(seed, name, sample_index)


def tile_step(tile: int, overlap: int, multiple: int) -> int:
    """Offset between tiles overlapping by at least ``overlap``, kept on the flow's ``multiple`` grid."""
    return max(multiple, (tile - overlap) // multiple * multiple)


def ramp(tile: int, overlap: int) -> torch.Tensor:
    """Blending weights along one axis: rising over ``overlap`` pixels at both ends, never zero."""
    position = torch.arange(tile, dtype=torch.float32) + 0.5
    return torch.clamp(torch.minimum(position, tile - position) / max(overlap, 1), max=1.0)


@torch.no_grad()
def degrade_image(
    flow: DegradationFlow,
    clean_lr: torch.Tensor,
    temperature: float,
    seed: int,
    tile_size: int = 128,
    overlap: int = 16,
    batch_size: int = 8,
) -> torch.Tensor:
    """One clean LR image (3, H, W) in [0, 1] -> synthesized LQ (3, H, W) in [0, 1], on the flow's device.

    Raises ``UserError`` when the flow produces non-finite values.
    """
    device = next(flow.parameters()).device
    multiple = flow.size_multiple
    if tile_size % multiple or overlap % multiple:
        raise UserError(f"tile size and overlap must be multiples of {multiple} for this flow")
    if overlap >= tile_size:
        raise UserError(f"--overlap {overlap} must be smaller than --tile-size {tile_size}")
    _, height, width = clean_lr.shape
    pad_h, pad_w = -height % multiple, -width % multiple
    image = F.pad(clean_lr[None].to(device), (0, pad_w, 0, pad_h), mode="replicate")
    padded_h, padded_w = image.shape[2:]
    generator = torch.Generator().manual_seed(seed)
    noise = flow.sample_noise(1, padded_h, padded_w, generator=generator, device=device)

    tile_h = balanced_tile(padded_h, tile_size, overlap, multiple)
    tile_w = balanced_tile(padded_w, tile_size, overlap, multiple)
    boxes = [
        (top, left)
        for top in tile_starts(padded_h, tile_h, tile_step(tile_h, overlap, multiple))
        for left in tile_starts(padded_w, tile_w, tile_step(tile_w, overlap, multiple))
    ]
    weight = (ramp(tile_h, overlap)[:, None] * ramp(tile_w, overlap)[None, :]).to(device)
    # The content and the noise are blended apart, as the compression goes between them (flow.synthesize).
    content_total = torch.zeros(3, padded_h, padded_w, device=device)
    noise_total = torch.zeros(3, padded_h, padded_w, device=device)
    weight_sum = torch.zeros(1, padded_h, padded_w, device=device)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        tiles = torch.cat([image[:, :, top : top + tile_h, left : left + tile_w] for top, left in chunk])
        crops = [flow.crop_noise(noise, top, left, tile_h, tile_w) for top, left in chunk]
        tile_noise = [torch.cat(parts) for parts in zip(*crops)]
        contents, noises = flow.degrade_parts(tiles, tile_noise, temperature, [seed] * len(chunk))
        for (top, left), content, tile_noise_part in zip(chunk, contents, noises):
            content_total[:, top : top + tile_h, left : left + tile_w] += content * weight
            noise_total[:, top : top + tile_h, left : left + tile_w] += tile_noise_part * weight
            weight_sum[:, top : top + tile_h, left : left + tile_w] += weight
    content = (content_total / weight_sum)[:, :height, :width]
    image_noise = (noise_total / weight_sum)[:, :height, :width]
    if not (torch.isfinite(content).all() and torch.isfinite(image_noise).all()):
        raise UserError(
            f"the flow produced non-finite values at temperature {temperature}; "
            "try a lower --temperature or an earlier checkpoint"
        )
    return flow.synthesize(content[None], image_noise[None], [seed])[0]
