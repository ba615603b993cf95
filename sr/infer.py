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
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unpaired_sr.common.cli import ArgumentParser, at_least, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.files import staged_output_dir
from unpaired_sr.common.image_io import (
    PngStripWriter,
    decode_image,
    list_inputs,
    to_uint8,
    to_uint16,
    write_image,
)
from unpaired_sr.common.matlab_resize import imresize
from unpaired_sr.common.training import select_device
from unpaired_sr.sr.checkpoint import load_sr
from unpaired_sr.sr.model import VDSR
from unpaired_sr.sr.upscale import upscale_alpha_strips, upscale_strips


def output_name(path: Path, suffix: str, ext: str) -> str:
    """``--suffix``/``--ext`` applied: ``auto`` keeps a JPEG a JPEG and makes everything else PNG."""
    if ext == "auto":
        ext = "jpg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f"{path.stem}{suffix}.{ext}"


def super_resolve_file(
    model: VDSR,
    path: Path,
    out_path: Path,
    tile_size: int | None = None,
    batch_size: int = 8,
    self_ensemble: bool = False,
    outscale: float | None = None,
) -> int:
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


def infer_folder(
    ckpt: str | Path,
    input_dir: str | Path,
    output_dir: str | Path,
    device: str = "auto",
    tile_size: int | None = None,
    batch_size: int = 8,
    self_ensemble: bool = False,
    overwrite: bool = False,
    outscale: float | None = None,
    suffix: str = "",
    ext: str = "png",
    half: bool = False,
) -> dict[str, float]:
    """Super-resolve ``input_dir`` (a folder or one image).

    ``half``: the network in bfloat16 on CUDA (autocast; about half the memory
    and time on recent GPUs); on the CPU it is ignored with a note, as bfloat16
    convolutions there are slower than float32.
    Returns ``{"images", "seconds_per_image", "megapixels_per_s"}``.
    """
    if ext not in ("auto", "png", "jpg"):
        raise UserError(f"--ext must be auto, png or jpg, got {ext!r}")
    if outscale is not None and not 0 < outscale <= 16:
        raise UserError(f"--outscale must be in (0, 16], got {outscale}")
    model, _ = load_sr(ckpt, select_device(device))
    paths = list_inputs(input_dir, "LR")
    on_cuda = next(model.parameters()).device.type == "cuda"
    if half and not on_cuda:
        print("note: --half applies on CUDA only; running in float32", file=sys.stderr)
    seconds, megapixels = 0.0, 0.0
    with staged_output_dir(output_dir, overwrite) as staging:
        names = [output_name(path, suffix, ext) for path in paths]
        clash = next((name for name in names if names.count(name) > 1), None)
        if clash:
            raise UserError(f"two inputs would both be written as {clash}")
        for path, name in tqdm(list(zip(paths, names)), desc="super-resolve", unit="img", leave=False):
            start = time.perf_counter()  # the time includes decoding and encoding
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=half and on_cuda):
                pixels = super_resolve_file(model, path, staging / name, tile_size, batch_size, self_ensemble, outscale)
            seconds += time.perf_counter() - start
            megapixels += pixels / 1e6
    return {"images": len(paths), "seconds_per_image": seconds / len(paths), "megapixels_per_s": megapixels / seconds}


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m sr.infer", __doc__)
    parser.add_argument("--ckpt", required=True, help="SR (or joint) checkpoint")
    parser.add_argument(
        "--input", dest="input_dir", metavar="INPUT", required=True, help="an LR image or a folder of them"
    )
    parser.add_argument(
        "--output", dest="output_dir", metavar="OUTPUT", required=True, help="folder for the SR images (created)"
    )
    parser.add_argument("--outscale", type=float, help="final scale, if not the network's (antialiased bicubic resize)")
    parser.add_argument("--suffix", default="", help="appended to each output name, e.g. _x4")
    parser.add_argument("--ext", choices=("auto", "png", "jpg"), default="png", help="auto: JPEG stays JPEG")
    parser.add_argument("--tile-size", type=at_least(8), help="LR tile (default 256 post-upsample, 128 pre-upsample)")
    parser.add_argument("--batch-size", type=at_least(1), default=8, help="tiles per forward pass")
    parser.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations")
    parser.add_argument("--half", action="store_true", help="bfloat16 on CUDA (ignored on CPU)")
    parser.add_folder_options("output folder")
    args = parser.parse_folder_args(argv)
    stats = infer_folder(**vars(args))
    print(
        f"wrote {stats['images']} images to {args.output_dir} ({stats['seconds_per_image']:.3f} s/image, "
        f"{stats['megapixels_per_s']:.2f} output MP/s)"
    )


if __name__ == "__main__":
    main()
