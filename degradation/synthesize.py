"""Degrade clean images the way the real source would, with a trained flow.

    python -m degradation.synthesize --ckpt CKPT --input HR_DIR --output LQ_DIR \\
        --scale 4 --temperature 1.0 --n-samples 1 --seed 0

HR -> clean LR (MATLAB bicubic, 8-bit) -> encode -> domain shift with fresh
noise scaled by the temperature -> decode -> LQ PNGs with the input's names
(``name_s1.png``, ... when ``--n-samples`` > 1). ``--input-is-lr`` skips the
downscaling.

Large images go through in batched, overlapping tiles blended with linear
ramps. The latent noise is drawn once for the whole image and each tile uses
its own slice of it, so overlapping tiles carry the *same* noise: blending
them cannot thin the noise along the seams (blending independent samples
would). Output is a pure function of (checkpoint, image, name, seed, temperature).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.cli import ArgumentParser, at_least, run_cli
from common.errors import UserError
from common.files import staged_output_dir
from common.tiling import balanced_tile
from common.training import select_device
from data_tools.image_io import image_to_tensor, list_inputs, read_image, set_max_pixels, tensor_to_image, write_image
from data_tools.matlab_resize import clean_lr_from_hr, mod_crop
from degradation.checkpoint import load_flow
from degradation.flow import DegradationFlow


def sample_seed(seed: int, name: str, sample_index: int = 0) -> int:
    """A 63-bit seed for one (image, sample), independent of processing order."""
    return int(
        np.random.SeedSequence([seed, zlib.crc32(name.encode()), sample_index]).generate_state(1, np.uint64)[0] >> 1
    )


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Tile offsets along one axis: every ``tile - overlap`` pixels, the last one flush with the end."""
    if length <= tile:
        return [0]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


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
        for top in tile_starts(padded_h, tile_h, overlap, multiple)
        for left in tile_starts(padded_w, tile_w, overlap, multiple)
    ]
    weight = (ramp(tile_h, overlap)[:, None] * ramp(tile_w, overlap)[None, :]).to(device)
    total = torch.zeros(3, padded_h, padded_w, device=device)
    weight_sum = torch.zeros(1, padded_h, padded_w, device=device)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        tiles = torch.cat([image[:, :, top : top + tile_h, left : left + tile_w] for top, left in chunk])
        crops = [flow.crop_noise(noise, top, left, tile_h, tile_w) for top, left in chunk]
        tile_noise = [torch.cat(parts) for parts in zip(*crops)]
        degraded = flow.degrade(tiles, temperature, noise=tile_noise)
        for (top, left), tile in zip(chunk, degraded):
            total[:, top : top + tile_h, left : left + tile_w] += tile * weight
            weight_sum[:, top : top + tile_h, left : left + tile_w] += weight
    result = (total / weight_sum)[:, :height, :width]
    if not torch.isfinite(result).all():
        raise UserError(
            f"the flow produced non-finite values at temperature {temperature}; "
            "try a lower --temperature or an earlier checkpoint"
        )
    return result.clamp(0, 1)


def synthesize_folder(
    ckpt: str | Path,
    input_dir: str | Path,
    output_dir: str | Path,
    scale: int | None = None,
    temperature: float = 1.0,
    n_samples: int = 1,
    seed: int = 0,
    input_is_lr: bool = False,
    device: str = "auto",
    tile_size: int = 128,
    overlap: int = 16,
    batch_size: int = 8,
    overwrite: bool = False,
) -> int:
    """Synthesize LQ images for every image of ``input_dir``; returns the number written."""
    if n_samples < 1:
        raise UserError(f"--n-samples must be at least 1, got {n_samples}")
    if temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {temperature}")
    flow, config = load_flow(ckpt, select_device(device))
    if scale is not None and scale != config.data.scale and not input_is_lr:
        raise UserError(
            f"--scale {scale} does not match the flow's x{config.data.scale}: it learned the real images at "
            f"that scale (train one at x{scale}, or leave --scale out)"
        )
    scale = scale or config.data.scale
    paths = list_inputs(input_dir, "input")
    written = 0
    with staged_output_dir(output_dir, overwrite) as staging:
        for path in tqdm(paths, desc="synthesize", unit="img", leave=False):
            image = read_image(path)
            if input_is_lr:
                clean_lr = image_to_tensor(image)
            else:
                hr = mod_crop(image, scale)
                if min(hr.shape[:2]) < scale:
                    raise UserError(f"image {path} is smaller than the scale {scale}")
                clean_lr = clean_lr_from_hr(image_to_tensor(hr)[None], scale)[0]
            for index in range(n_samples):
                try:
                    lq = degrade_image(
                        flow, clean_lr, temperature, sample_seed(seed, path.stem, index), tile_size, overlap, batch_size
                    )
                except UserError as error:
                    raise UserError(f"{path}: {error}") from error
                name = f"{path.stem}_s{index + 1}.png" if n_samples > 1 else f"{path.stem}.png"
                write_image(staging / name, tensor_to_image(lq))
                written += 1
    return written


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m degradation.synthesize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="degradation-flow (or joint) checkpoint")
    parser.add_argument("--input", required=True, help="an HR image or a folder of them (LR with --input-is-lr)")
    parser.add_argument("--output", required=True, help="folder for the LQ PNGs (created)")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), help="HR -> LR factor (default: the flow's)")
    parser.add_argument(
        "--temperature", type=at_least(0.0, float), default=1.0, help="scales the noise (0: none; 1: as estimated)"
    )
    parser.add_argument("--n-samples", type=at_least(1), default=1, help="LQ versions per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-is-lr", action="store_true", help="the inputs are already clean LR")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--tile-size", type=at_least(8), default=128, help="LR tile size")
    parser.add_argument("--overlap", type=at_least(0), default=16, help="LR overlap between tiles")
    parser.add_argument("--batch-size", type=at_least(1), default=8, help="tiles per forward pass")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--max-pixels", type=at_least(1), help="refuse larger images, in pixels (default 200000000)")
    args = parser.parse_args(argv)
    if args.max_pixels:
        set_max_pixels(args.max_pixels)
    count = synthesize_folder(
        args.ckpt,
        args.input,
        args.output,
        args.scale,
        args.temperature,
        args.n_samples,
        args.seed,
        args.input_is_lr,
        args.device,
        args.tile_size,
        args.overlap,
        args.batch_size,
        args.overwrite,
    )
    print(f"wrote {count} images to {args.output}")


if __name__ == "__main__":
    run_cli(main)
