"""How long the flow's training reads its training sets before its first step, on sets of a user's size.

    python benchmarks/estimate_time.py                      # builds 60 clean + 150 real photos in a temp folder
    python benchmarks/estimate_time.py --clean HR --real LR

Loads the two folders as ``degradation.train`` does and runs its estimates
(blur, JPEG, noise, aliasing, sharpening, compression, chroma blur) with the
config's settings, printing each log line with the seconds it took, then
the total. The built set: the bundled photos (``data_tools.prepare_demo``)
resized to 1536x1024 and shifted at random for the clean side, and for the
real side resized to 960x704 and degraded by the ``camera`` preset at x2
(480x352, JPEG 60-80). Timings are only comparable on an otherwise idle
machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unpaired_sr.common.cli import command  # noqa: E402
from unpaired_sr.common.config import load_config  # noqa: E402
from unpaired_sr.common.image_io import write_image  # noqa: E402
from unpaired_sr.data_tools.datasets import ImageFolderCache, UnpairedCrops  # noqa: E402
from unpaired_sr.data_tools.degrade_classical import degrade  # noqa: E402
from unpaired_sr.data_tools.prepare_demo import BUNDLED_PHOTOS, bundled_photo_rgb  # noqa: E402
from unpaired_sr.degradation.checkpoint import build_flow  # noqa: E402
from unpaired_sr.degradation.config import FlowConfig  # noqa: E402
from unpaired_sr.degradation.train import estimate_image_degradations  # noqa: E402


def build_sets(out_dir: Path, num_clean: int, num_real: int, seed: int = 0) -> tuple[Path, Path]:
    """Clean HR photos of 1536x1024 and real LR images of 480x352 (``camera`` at x2) from the bundled photos."""
    rng = np.random.default_rng(seed)
    photos = [bundled_photo_rgb(name) for name in BUNDLED_PHOTOS]
    clean_dir, real_dir = out_dir / "clean_hr", out_dir / "real_lr"
    clean_dir.mkdir(parents=True), real_dir.mkdir(parents=True)
    for index in range(num_clean):
        photo = cv2.resize(photos[index % len(photos)], (1536, 1024), interpolation=cv2.INTER_CUBIC)
        shift = (int(rng.integers(0, 1024)), int(rng.integers(0, 1536)))  # not the same picture twice
        write_image(clean_dir / f"{index:04d}.png", np.roll(photo, shift, axis=(0, 1)))
    for index in range(num_real):
        photo = photos[(index + len(photos) // 2) % len(photos)]
        hr = cv2.resize(photo, (960, 704), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        write_image(real_dir / f"{index:04d}.png", degrade(hr, 2, "camera", rng))
    return clean_dir, real_dir


@command
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", help="clean HR folder (default: build one)")
    parser.add_argument("--real", help="real LR folder (default: build one)")
    parser.add_argument("--num-clean", type=int, default=60, help="clean photos to build")
    parser.add_argument("--num-real", type=int, default=150, help="real images to build")
    parser.add_argument("--config", default=str(ROOT / "configs" / "deflow_light.yaml"))
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args(argv)
    config = load_config(FlowConfig, args.config)
    with tempfile.TemporaryDirectory(prefix="estimate-time-") as scratch:
        if args.clean and args.real:
            clean_dir, real_dir = Path(args.clean), Path(args.real)
        elif args.clean or args.real:
            parser.error("give both --clean and --real, or neither")
        else:
            start = time.perf_counter()
            clean_dir, real_dir = build_sets(Path(scratch), args.num_clean, args.num_real)
            print(
                f"built {args.num_clean} clean and {args.num_real} real images in {time.perf_counter() - start:.0f} s"
            )
        crop = config.data.crop_size
        dataset = UnpairedCrops(
            ImageFolderCache(clean_dir, "clean HR folder", min_size=crop * args.scale),
            ImageFolderCache(real_dir, "real LR folder", min_size=crop),
            lr_crop_size=crop,
            scale=args.scale,
        )
        flow = build_flow(config.model, seed=0)
        start = last = time.perf_counter()
        for line in estimate_image_degradations(flow, config.model, dataset, args.scale):
            now = time.perf_counter()
            print(f"{now - last:6.1f} s  {line}", flush=True)
            last = now
        print(f"{time.perf_counter() - start:6.1f} s  in all")


if __name__ == "__main__":
    main()
