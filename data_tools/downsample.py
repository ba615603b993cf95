"""Make clean LR images: MATLAB-style antialiased bicubic downscaling.

HR images are first cropped at the bottom/right to a multiple of the scale
(the SR convention), so LR x scale == HR exactly. Output PNGs keep the input's
names; 16-bit inputs give 16-bit outputs.

Command: ``python -m data_tools.downsample --input HR_DIR --output LR_DIR --scale 4``
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.files import staged_output_dir
from unpaired_sr.common.image_io import list_images, read_image_native, to_float32, write_image
from unpaired_sr.common.matlab_resize import downscale, mod_crop
from unpaired_sr.data_tools.parallel import map_with_progress


def downsample_image(image: np.ndarray, scale: int) -> np.ndarray:
    """HR image (any depth) -> float32 LR in [0, 1], after ``mod_crop``."""
    if scale not in (2, 3, 4):
        raise UserError(f"scale must be 2, 3 or 4, got {scale}")
    return np.clip(downscale(to_float32(mod_crop(image, scale)), scale), 0.0, 1.0)


def _downsample_one(path: Path, out_dir: Path, scale: int) -> None:
    image = read_image_native(path)
    if min(image.shape[:2]) < scale:
        raise UserError(f"image {path} ({image.shape[1]}x{image.shape[0]}) is smaller than the scale {scale}")
    lr = downsample_image(image, scale)
    if image.dtype == np.uint16:
        lr = (lr * 65535.0).round().astype(np.uint16)
    write_image(out_dir / f"{path.stem}.png", lr)


def downsample_folder(
    input_dir: str | Path, output_dir: str | Path, scale: int, num_workers: int = 0, overwrite: bool = False
) -> int:
    paths = list_images(input_dir, "input folder")
    with staged_output_dir(output_dir, overwrite) as staging:
        map_with_progress(partial(_downsample_one, out_dir=staging, scale=scale), paths, num_workers, desc="downsample")
    return len(paths)


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m data_tools.downsample", __doc__)
    parser.add_argument("--input", required=True, help="folder of HR images")
    parser.add_argument("--output", required=True, help="folder for the LR PNGs (created)")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = parser.parse_args(argv)
    count = downsample_folder(args.input, args.output, args.scale, args.workers, args.overwrite)
    print(f"wrote {count} images to {args.output}")


if __name__ == "__main__":
    main()
