"""Super-resolve a folder of LR images with a trained SR checkpoint.

    python -m sr.infer --ckpt CKPT --input LR_DIR --output SR_DIR [--self-ensemble] [--device cuda]

Any image size goes through in batched tiles. Each output pixel is taken from
the tile in which it lies deepest, at least the network's receptive field
(plus bicubic's support) away from the tile's edge, so tiled output equals
whole-image output up to float rounding: no seams. Images are super-resolved
in strips of LR rows, and outputs above 16 megapixels are written to the PNG
strip by strip, so memory grows with the image's width, not its area. ``--self-ensemble``
averages the 8 flips/rotations (x8 the time). Outputs are PNGs named like the inputs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.cli import ArgumentParser, at_least, run_cli
from common.errors import UserError
from common.files import staged_output_dir
from common.tiling import balanced_tile
from common.training import select_device
from data_tools.image_io import (
    PngStripWriter,
    image_to_tensor,
    list_inputs,
    read_image_native,
    set_max_pixels,
    tensor_to_image,
    to_uint8,
    write_image,
)
from sr.checkpoint import load_sr
from sr.model import VDSR


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
    step = tile - 2 * margin
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
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
def upscale_image(model: VDSR, lr: torch.Tensor, tile_size: int | None = None, batch_size: int = 8,
                  self_ensemble: bool = False) -> torch.Tensor:  # fmt: skip
    """LR (3, h, w) in [0, 1] -> SR (3, h * scale, w * scale) in [0, 1], on the model's device."""
    tile_size = tile_size or default_tile_size(model)
    device = next(model.parameters()).device
    lr = lr.to(device)
    transforms = range(8) if self_ensemble else [0]
    total = None
    for transform in transforms:
        out = _dihedral(_upscale_tiled(model, _dihedral(lr[None], transform)[0], tile_size, batch_size)[None],
                        transform, inverse=True)[0]  # fmt: skip
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
STREAM_PIXELS = 16_000_000  # outputs larger are written to the PNG strip by strip ($UNPAIRED_SR_STREAM_PIXELS)


def upscale_strips(model: VDSR, lr: np.ndarray, tile_size: int | None = None, batch_size: int = 8,
                   self_ensemble: bool = False, strip_rows: int = STRIP_ROWS) -> Iterator[np.ndarray]:  # fmt: skip
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
        yield to_uint8(tensor_to_image(band[:, (top - start) * scale : (bottom - start) * scale]))


def infer_folder(ckpt: str | Path, input_dir: str | Path, output_dir: str | Path, device: str = "auto",
                 tile_size: int | None = None, batch_size: int = 8, self_ensemble: bool = False,
                 overwrite: bool = False) -> dict[str, float]:  # fmt: skip
    """Super-resolve every image of ``input_dir``; returns ``{"images", "seconds_per_image", "megapixels_per_s"}``."""
    model, _ = load_sr(ckpt, select_device(device))
    paths = list_inputs(input_dir, "LR")
    stream_pixels = int(os.environ.get("UNPAIRED_SR_STREAM_PIXELS", STREAM_PIXELS))
    seconds, megapixels = 0.0, 0.0
    with staged_output_dir(output_dir, overwrite) as staging:
        for path in tqdm(paths, desc="super-resolve", unit="img", leave=False):
            lr = read_image_native(path)  # kept at its own depth: float copies are made strip by strip
            height, width = lr.shape[0] * model.scale, lr.shape[1] * model.scale
            start = time.perf_counter()
            strips = upscale_strips(model, lr, tile_size, batch_size, self_ensemble)
            if height * width > stream_pixels:
                with PngStripWriter(staging / f"{path.stem}.png", width, height) as png:
                    for rows in strips:
                        png.write_rows(rows)
                seconds += time.perf_counter() - start  # includes the PNG encoding
            else:
                image = np.concatenate(list(strips))  # a host copy: the timing includes finishing the GPU work
                seconds += time.perf_counter() - start
                write_image(staging / f"{path.stem}.png", image)
            megapixels += height * width / 1e6
    return {"images": len(paths), "seconds_per_image": seconds / len(paths), "megapixels_per_s": megapixels / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m sr.infer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="SR (or joint) checkpoint")
    parser.add_argument("--input", required=True, help="an LR image or a folder of them")
    parser.add_argument("--output", required=True, help="folder for the SR PNGs (created)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--tile-size", type=at_least(8), help="LR tile (default 256 post-upsample, 128 pre-upsample)")
    parser.add_argument("--batch-size", type=at_least(1), default=8, help="tiles per forward pass")
    parser.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--max-pixels", type=at_least(1), help="refuse larger images, in pixels (default 200000000)")
    args = parser.parse_args(argv)
    if args.max_pixels:
        set_max_pixels(args.max_pixels)
    stats = infer_folder(args.ckpt, args.input, args.output, args.device, args.tile_size, args.batch_size,
                         args.self_ensemble, args.overwrite)  # fmt: skip
    print(f"wrote {stats['images']} images to {args.output} ({stats['seconds_per_image']:.3f} s/image, "
          f"{stats['megapixels_per_s']:.2f} output MP/s)")  # fmt: skip


if __name__ == "__main__":
    run_cli(main)
