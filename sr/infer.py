"""Super-resolve LR images (a file or a folder) with a trained SR checkpoint.

    python -m sr.infer --ckpt CKPT --input LR_DIR --output SR_DIR [--self-ensemble] [--device cuda]
    python -m sr.infer --ckpt CKPT --input photo.jpg --output SR_DIR --ext auto --suffix _x4 --outscale 3.5

Any image size goes through in batched tiles. Each output pixel is taken from
the tile in which it lies deepest, at least the network's receptive field
(plus bicubic's support) away from the tile's edge, so tiled output equals
whole-image output up to float rounding: no seams. Images are super-resolved
in strips of LR rows and PNG output is written strip by strip as they come,
so memory grows with the image's width, not its area (JPEG output and
``--outscale`` need the whole image). What the input had is kept: an alpha
channel (upscaled with bicubic, as Real-ESRGAN does), 16 bits (in PNG), gray.
``--self-ensemble`` averages the 8 flips/rotations (x8 the time). Outputs are
named like the inputs (plus ``--suffix``), PNG unless ``--ext`` says otherwise.
"""

from __future__ import annotations

import itertools
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
    decode_image,
    image_to_tensor,
    list_inputs,
    set_max_pixels,
    tensor_to_image,
    to_float32,
    to_uint8,
    to_uint16,
    write_image,
)
from data_tools.matlab_resize import imresize
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
        yield tensor_to_image(band[:, (top - start) * scale : (bottom - start) * scale])


def upscale_alpha_strips(alpha: np.ndarray, scale: int, strip_rows: int = STRIP_ROWS) -> Iterator[np.ndarray]:
    """An alpha channel (H, W) upscaled with MATLAB bicubic, as float rows (h * scale, W * scale), in strips."""
    height, margin = alpha.shape[0], 4  # bicubic reads 2 LR pixels either side when enlarging
    for top in range(0, height, strip_rows):
        bottom = min(height, top + strip_rows)
        start, end = max(0, top - margin), min(height, bottom + margin)
        band = imresize(to_float32(alpha[start:end]), scale)
        yield np.clip(band[(top - start) * scale : (bottom - start) * scale], 0, 1)


def output_name(path: Path, suffix: str, ext: str) -> str:
    """``--suffix``/``--ext`` applied: ``auto`` keeps a JPEG a JPEG and makes everything else PNG."""
    if ext == "auto":
        ext = "jpg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f"{path.stem}{suffix}.{ext}"


def super_resolve_file(model: VDSR, path: Path, out_path: Path, tile_size: int | None = None, batch_size: int = 8,
                       self_ensemble: bool = False, outscale: float | None = None) -> int:  # fmt: skip
    """Super-resolve one file into ``out_path`` (PNG or JPEG, from its extension); returns the output pixels.

    PNG is written strip by strip as the strips are computed (``PngStripWriter``),
    unless ``outscale`` asks for a resize of the whole output; JPEG needs the
    whole image and holds no alpha.
    """
    decoded = decode_image(path)
    lr, scale = decoded.rgb, model.scale
    png = out_path.suffix == ".png"
    sixteen_bit = png and decoded.rgb.dtype == np.uint16
    keep_alpha = png and decoded.alpha is not None
    channels = (1 if decoded.gray else 3) + keep_alpha

    def rows_out(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
        """Float rows -> the output's channels (gray: the mean of three nearly equal ones) and depth."""
        planes = [rgb.mean(axis=2, keepdims=True) if decoded.gray else rgb]
        if keep_alpha:
            planes.append(alpha[:, :, None])
        rows = np.concatenate(planes, axis=2) if len(planes) > 1 else planes[0]
        return to_uint16(rows) if sixteen_bit else to_uint8(rows)

    strips = upscale_strips(model, lr, tile_size, batch_size, self_ensemble)
    alphas = upscale_alpha_strips(decoded.alpha, scale) if keep_alpha else itertools.repeat(None)
    if png and (outscale is None or outscale == scale):
        height, width = lr.shape[0] * scale, lr.shape[1] * scale
        with PngStripWriter(out_path, width, height, channels, 16 if sixteen_bit else 8) as writer:
            for rgb, alpha in zip(strips, alphas):
                writer.write_rows(rows_out(rgb, alpha))
        return height * width
    rgb_rows, alpha_rows = zip(*zip(strips, alphas))
    rgb, alpha = np.concatenate(rgb_rows), np.concatenate(alpha_rows) if keep_alpha else None
    if outscale is not None and outscale != scale:  # an antialiased resize of the network's output
        size = (round(lr.shape[0] * outscale), round(lr.shape[1] * outscale))
        rgb = np.clip(imresize(rgb, outscale / scale, out_hw=size), 0, 1)
        alpha = np.clip(imresize(alpha, outscale / scale, out_hw=size), 0, 1) if keep_alpha else None
    image = rows_out(rgb, alpha)
    if png:
        with PngStripWriter(out_path, image.shape[1], image.shape[0], channels, 16 if sixteen_bit else 8) as writer:
            writer.write_rows(image)
    else:
        write_image(out_path, image[:, :, 0] if channels == 1 else image)
    return image.shape[0] * image.shape[1]


def infer_folder(ckpt: str | Path, input_dir: str | Path, output_dir: str | Path, device: str = "auto",
                 tile_size: int | None = None, batch_size: int = 8, self_ensemble: bool = False,
                 overwrite: bool = False, outscale: float | None = None, suffix: str = "",
                 ext: str = "png") -> dict[str, float]:  # fmt: skip
    """Super-resolve ``input_dir`` (a folder or one image).

    Returns ``{"images", "seconds_per_image", "megapixels_per_s"}``.
    """
    if ext not in ("auto", "png", "jpg"):
        raise UserError(f"--ext must be auto, png or jpg, got {ext!r}")
    if outscale is not None and not 0 < outscale <= 16:
        raise UserError(f"--outscale must be in (0, 16], got {outscale}")
    model, _ = load_sr(ckpt, select_device(device))
    paths = list_inputs(input_dir, "LR")
    seconds, megapixels = 0.0, 0.0
    with staged_output_dir(output_dir, overwrite) as staging:
        names = [output_name(path, suffix, ext) for path in paths]
        clash = next((name for name in names if names.count(name) > 1), None)
        if clash:
            raise UserError(f"two inputs would both be written as {clash}")
        for path, name in tqdm(list(zip(paths, names)), desc="super-resolve", unit="img", leave=False):
            start = time.perf_counter()  # the time includes decoding and encoding
            pixels = super_resolve_file(model, path, staging / name, tile_size, batch_size, self_ensemble, outscale)
            seconds += time.perf_counter() - start
            megapixels += pixels / 1e6
    return {"images": len(paths), "seconds_per_image": seconds / len(paths), "megapixels_per_s": megapixels / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m sr.infer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="SR (or joint) checkpoint")
    parser.add_argument("--input", required=True, help="an LR image or a folder of them")
    parser.add_argument("--output", required=True, help="folder for the SR images (created)")
    parser.add_argument("--outscale", type=float, help="final scale, if not the network's (antialiased bicubic resize)")
    parser.add_argument("--suffix", default="", help="appended to each output name, e.g. _x4")
    parser.add_argument("--ext", choices=("auto", "png", "jpg"), default="png", help="auto: JPEG stays JPEG")
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
                         args.self_ensemble, args.overwrite, args.outscale, args.suffix, args.ext)  # fmt: skip
    print(f"wrote {stats['images']} images to {args.output} ({stats['seconds_per_image']:.3f} s/image, "
          f"{stats['megapixels_per_s']:.2f} output MP/s)")  # fmt: skip


if __name__ == "__main__":
    run_cli(main)
