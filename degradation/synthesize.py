"""Degrade clean images the way the real source would, with a trained flow.

    python -m degradation.synthesize --ckpt CKPT --input HR_DIR --output LQ_DIR \\
        --scale 4 --temperature 1.0 --n-samples 1 --seed 0

HR -> clean LR (MATLAB bicubic, 8-bit; point-sampled along the axes where the
flow found the real images alias) -> encode -> domain shift with fresh
noise scaled by the temperature -> decode -> LQ PNGs with the input's names
(``name_s1.png``, ... when ``--n-samples`` > 1). ``--input-is-lr`` skips the
downscaling (and with it the aliasing, which needs the HR image: a note says so).

Large images go through in batched, overlapping tiles blended with linear
ramps. The latent noise is drawn once for the whole image and each tile uses
its own slice of it, so overlapping tiles carry the *same* noise: blending
them cannot thin the noise along the seams (blending independent samples
would). Output is a pure function of (checkpoint, image, name, seed, temperature).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from unpaired_sr.common.cli import ArgumentParser, at_least, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.files import staged_output_dir
from unpaired_sr.common.image_io import image_to_tensor, list_inputs, read_image, tensor_to_image, write_image
from unpaired_sr.common.matlab_resize import mod_crop
from unpaired_sr.common.training import select_device
from unpaired_sr.degradation.checkpoint import load_flow
from unpaired_sr.degradation.sampling import degrade_image, sample_seed


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
    if input_is_lr and flow.image_downscale.is_decimating:
        print(
            "note: this flow found that the real images alias, which samples reproduce by point-sampling the HR "
            "image; LR inputs (--input-is-lr) are used as they are",
            file=sys.stderr,
        )
    paths = list_inputs(input_dir, "input")
    written = 0
    with staged_output_dir(output_dir, overwrite) as staging:
        for path in tqdm(paths, desc="synthesize", unit="img", leave=False):
            image = read_image(path)
            if not input_is_lr:
                hr = mod_crop(image, scale)
                if min(hr.shape[:2]) < scale:
                    raise UserError(f"image {path} is smaller than the scale {scale}")
            for index in range(n_samples):
                image_seed = sample_seed(seed, path.stem, index)
                # each sample its own start: where the real images alias, its own grid phase may be drawn
                clean_lr = (
                    image_to_tensor(image)
                    if input_is_lr
                    else flow.downscale(image_to_tensor(hr)[None], scale, [image_seed])[0]
                )
                try:
                    lq = degrade_image(flow, clean_lr, temperature, image_seed, tile_size, overlap, batch_size)
                except UserError as error:
                    raise UserError(f"{path}: {error}") from error
                name = f"{path.stem}_s{index + 1}.png" if n_samples > 1 else f"{path.stem}.png"
                write_image(staging / name, tensor_to_image(lq))
                written += 1
    return written


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m degradation.synthesize", __doc__)
    parser.add_argument("--ckpt", required=True, help="degradation-flow (or joint) checkpoint")
    parser.add_argument(
        "--input",
        dest="input_dir",
        metavar="INPUT",
        required=True,
        help="an HR image or a folder of them (LR with --input-is-lr)",
    )
    parser.add_argument(
        "--output", dest="output_dir", metavar="OUTPUT", required=True, help="folder for the LQ PNGs (created)"
    )
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), help="HR -> LR factor (default: the flow's)")
    parser.add_argument(
        "--temperature", type=at_least(0.0, float), default=1.0, help="scales the noise (0: none; 1: as estimated)"
    )
    parser.add_argument("--n-samples", type=at_least(1), default=1, help="LQ versions per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-is-lr", action="store_true", help="the inputs are already clean LR")
    parser.add_argument("--tile-size", type=at_least(8), default=128, help="LR tile size")
    parser.add_argument("--overlap", type=at_least(0), default=16, help="LR overlap between tiles")
    parser.add_argument("--batch-size", type=at_least(1), default=8, help="tiles per forward pass")
    parser.add_folder_options("output folder")
    args = parser.parse_folder_args(argv)
    count = synthesize_folder(**vars(args))
    print(f"wrote {count} images to {args.output_dir}")


if __name__ == "__main__":
    main()
