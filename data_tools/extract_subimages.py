"""Crop large images into overlapping sub-images, as the DIV2K preparation does.

Positions along each axis are ``0, step, 2 * step, ...`` while a full crop
fits; if more than ``thresh_size`` pixels are then left uncovered at the end, a
last crop flush with the border is added, so no image content is lost and no
thin sliver becomes a crop of its own. Outputs are ``NAME_s001.png``, ... in
row-major order, lossless, at the input's bit depth.

Command: ``python -m data_tools.extract_subimages --input DIR --output DIR --crop-size 480 --step 240``
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.files import staged_output_dir
from unpaired_sr.common.image_io import list_images, read_image_native, write_image
from unpaired_sr.data_tools.parallel import map_with_progress


def crop_positions(length: int, crop_size: int, step: int, thresh_size: int = 0) -> list[int]:
    """Start offsets of the crops along one axis of ``length`` pixels."""
    if length < crop_size:
        raise ValueError(f"length {length} is smaller than the crop size {crop_size}")
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def _extract_one(path: Path, out_dir: Path, crop_size: int, step: int, thresh_size: int) -> int:
    image = read_image_native(path)
    height, width = image.shape[:2]
    if height < crop_size or width < crop_size:
        raise UserError(f"image {path} ({width}x{height}) is smaller than the crop size {crop_size}")
    index = 0
    for top in crop_positions(height, crop_size, step, thresh_size):
        for left in crop_positions(width, crop_size, step, thresh_size):
            index += 1
            crop = image[top : top + crop_size, left : left + crop_size]
            write_image(out_dir / f"{path.stem}_s{index:03d}.png", crop)
    return index


def extract_subimages(
    input_dir: str | Path,
    output_dir: str | Path,
    crop_size: int = 480,
    step: int = 240,
    thresh_size: int = 0,
    num_workers: int = 0,
    overwrite: bool = False,
) -> int:
    """Crop every image of ``input_dir`` into ``output_dir``; returns the number of crops written."""
    if crop_size < 1 or step < 1:
        raise UserError(f"crop size and step must be positive, got {crop_size} and {step}")
    paths = list_images(input_dir, "input folder")
    with staged_output_dir(output_dir, overwrite) as staging:
        job = partial(_extract_one, out_dir=staging, crop_size=crop_size, step=step, thresh_size=thresh_size)
        counts = map_with_progress(job, paths, num_workers, desc="extract sub-images")
    return sum(counts)


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m data_tools.extract_subimages", __doc__)
    parser.add_argument("--input", dest="input_dir", metavar="INPUT", required=True, help="folder of large images")
    parser.add_argument(
        "--output", dest="output_dir", metavar="OUTPUT", required=True, help="folder for the crops (created)"
    )
    parser.add_argument("--crop-size", type=int, default=480)
    parser.add_argument("--step", type=int, default=240)
    parser.add_argument("--thresh-size", type=int, default=0, help="leftover pixels ignored at the far border")
    parser.add_argument("--workers", dest="num_workers", type=int, default=0, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = parser.parse_args(argv)
    count = extract_subimages(**vars(args))
    print(f"wrote {count} sub-images to {args.output_dir}")


if __name__ == "__main__":
    main()
