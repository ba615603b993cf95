"""Build the demo benchmark offline from real photos that installed packages ship.

Eleven photos come from scikit-image, scikit-learn and matplotlib (no network):
natural scenes, a portrait, and texture close-ups. They are tiled into HR
tiles and split by photo into the layout of ``data_tools.make_benchmark``,
with the ``camera`` degradation as the hidden "real" source. The test photos
are fixed (a cat, a coffee cup, a rocket launch) so numbers stay comparable.

Command: ``python -m data_tools.prepare_demo --output /tmp/demo``
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.image_io import write_image
from unpaired_sr.data_tools.make_benchmark import make_benchmark

DEMO_TEST_PHOTOS = ["chelsea", "coffee", "rocket"]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[0] if isinstance(image, tuple) else image

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook
    import matplotlib.image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        return np.asarray(matplotlib.image.imread(handle, format="jpg"))


BUNDLED_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"),  # the left view; the right one is a near-duplicate
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "camera": _skimage("camera"),
    "china": _sklearn("china"),
    "flower": _sklearn("flower"),
    "grace_hopper": _grace_hopper,
}


def bundled_photo_rgb(name: str) -> np.ndarray:
    """One bundled photo as (H, W, 3) uint8 RGB (a grayscale one as gray RGB)."""
    photo = BUNDLED_PHOTOS[name]()
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    return photo[:, :, :3]


def export_bundled_photos(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Write the bundled photos as PNGs (grayscale ones as gray RGB) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or list(BUNDLED_PHOTOS):
        path = out_dir / f"{name}.png"
        write_image(path, bundled_photo_rgb(name))
        paths.append(path)
    return paths


def prepare_demo(
    out_dir: str | Path,
    scale: int = 4,
    tile_size: int = 192,
    degradation: str = "camera",
    seed: int = 0,
    num_workers: int = 0,
    overwrite: bool = False,
) -> dict:
    """Build the demo benchmark in ``out_dir``; returns its metadata."""
    with tempfile.TemporaryDirectory(prefix="demo-photos-") as photo_dir:
        export_bundled_photos(photo_dir)
        return make_benchmark(
            photo_dir,
            out_dir,
            degradation,
            scale=scale,
            seed=seed,
            tile_size=tile_size,
            test_names=DEMO_TEST_PHOTOS,
            num_workers=num_workers,
            overwrite=overwrite,
        )


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m data_tools.prepare_demo", __doc__)
    parser.add_output_option("benchmark folder (created)", dest="out_dir")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--tile-size", type=int, default=192, help="HR tile size")
    parser.add_argument("--degradation", default="camera", help="the hidden real-domain degradation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", dest="num_workers", type=int, default=0, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = parser.parse_args(argv)
    metadata = prepare_demo(**vars(args))
    print(f"demo benchmark in {args.out_dir}: {json.dumps(metadata['num_images'])}")
    for split in ("test", "train_clean", "train_real"):
        print(f"  {split}: {', '.join(metadata['photos'][split])}")


if __name__ == "__main__":
    main()
