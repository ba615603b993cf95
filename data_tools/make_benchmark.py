"""Build an unpaired real-world SR benchmark from HR photos and a named degradation.

Photos are split **by photo**, so no content is shared between splits:

* ``train_hr/``: clean HR tiles (the clean domain);
* ``train_real_lr/``: degraded LR tiles of *other* photos (the unpaired real domain);
* ``train_oracle_lr/``: the same degradation applied to ``train_hr`` (paired
  with it by name): the oracle upper bound, possible only on synthetic benchmarks;
* ``test_lr/`` + ``test_hr/``: the paired test set, matching names;
* ``benchmark.json``: degradation, scale, seed and which photo went where.

Command: ``python -m data_tools.make_benchmark --input PHOTOS --output BENCH --degradation camera --scale 4``
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from unpaired_sr.common.cli import ArgumentParser, command
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.files import atomic_write_bytes, staged_output_dir
from unpaired_sr.common.image_io import list_images, read_image, write_image
from unpaired_sr.common.matlab_resize import mod_crop
from unpaired_sr.data_tools.degrade_classical import PRESETS, degrade, image_rng
from unpaired_sr.data_tools.extract_subimages import crop_positions
from unpaired_sr.data_tools.parallel import map_with_progress

SPLITS = ("train_hr", "train_real_lr", "train_oracle_lr", "test_lr", "test_hr")


def split_photos(
    names: list[str], seed: int, test_fraction: float = 0.2, test_names: list[str] | None = None
) -> dict[str, list[str]]:
    """Assign photo names to ``test``, ``train_clean`` and ``train_real`` (halves of the rest)."""
    if len(names) < 3:
        raise UserError(f"a benchmark needs at least 3 photos (test, clean, real), got {len(names)}")
    rng = np.random.default_rng(seed)
    if test_names:
        missing = sorted(set(test_names) - set(names))
        if missing:
            raise UserError(f"test photos not found among the inputs: {', '.join(missing)}")
        test = sorted(test_names)
    else:
        num_test = max(1, round(test_fraction * len(names)))
        test = sorted(rng.choice(names, size=num_test, replace=False).tolist())
    rest = [name for name in names if name not in test]
    if len(rest) < 2:
        raise UserError("after the test photos, at least 2 photos must remain for training")
    rest = [rest[i] for i in rng.permutation(len(rest))]
    half = (len(rest) + 1) // 2
    return {"test": test, "train_clean": sorted(rest[:half]), "train_real": sorted(rest[half:])}


def tiles(image: np.ndarray, tile_size: int | None) -> list[np.ndarray]:
    """Non-overlapping tiles, plus a flush last tile when more than half a tile is left over."""
    if tile_size is None:
        return [image]
    height, width = image.shape[:2]
    if min(height, width) < tile_size:
        return [image]
    return [
        image[top : top + tile_size, left : left + tile_size]
        for top in crop_positions(height, tile_size, tile_size, tile_size // 2)
        for left in crop_positions(width, tile_size, tile_size, tile_size // 2)
    ]


def _build_photo(job: tuple[Path, str], out_dir: Path, degradation: str, scale: int, seed: int, tile_size: int | None):
    path, role = job
    photo = read_image(path)
    if min(photo.shape[:2]) < 4 * scale:
        raise UserError(f"photo {path} ({photo.shape[1]}x{photo.shape[0]}) is too small for x{scale}")
    names = []
    for index, tile in enumerate(tiles(photo, tile_size), start=1):
        hr = mod_crop(tile, scale)
        name = f"{path.stem}_t{index:03d}" if tile_size else path.stem
        lr = degrade(hr, scale, degradation, image_rng(seed, name))
        if role == "train_clean":
            write_image(out_dir / "train_hr" / f"{name}.png", hr)
            write_image(out_dir / "train_oracle_lr" / f"{name}.png", lr)
        elif role == "train_real":
            write_image(out_dir / "train_real_lr" / f"{name}.png", lr)
        else:
            write_image(out_dir / "test_hr" / f"{name}.png", hr)
            write_image(out_dir / "test_lr" / f"{name}.png", lr)
        names.append(name)
    return role, names


def make_benchmark(
    input_dir: str | Path,
    output_dir: str | Path,
    degradation: str,
    scale: int = 4,
    seed: int = 0,
    tile_size: int | None = None,
    test_fraction: float = 0.2,
    test_names: list[str] | None = None,
    num_workers: int = 0,
    overwrite: bool = False,
) -> dict:
    """Build the benchmark layout in ``output_dir``; returns the metadata written to ``benchmark.json``."""
    if degradation not in PRESETS:
        raise UserError(f"unknown degradation {degradation!r}; choose one of {', '.join(PRESETS)}")
    if tile_size is not None and (tile_size < 8 * scale or tile_size % scale):
        raise UserError(f"tile size must be a multiple of the scale and at least {8 * scale}, got {tile_size}")
    paths = {path.stem: path for path in list_images(input_dir, "photo folder")}
    split = split_photos(sorted(paths), seed, test_fraction, test_names)
    jobs = [(paths[name], role) for role, names in split.items() for name in names]
    with staged_output_dir(output_dir, overwrite) as staging:
        for name in SPLITS:
            (staging / name).mkdir()
        build = partial(
            _build_photo, out_dir=staging, degradation=degradation, scale=scale, seed=seed, tile_size=tile_size
        )
        results = map_with_progress(build, jobs, num_workers, desc="build benchmark")
        counts = {role: sum(len(names) for r, names in results if r == role) for role in split}
        metadata = {
            "degradation": degradation,
            "scale": scale,
            "seed": seed,
            "tile_size": tile_size,
            "photos": split,
            "num_images": {
                "train_hr": counts["train_clean"],
                "train_real_lr": counts["train_real"],
                "test": counts["test"],
            },
        }
        atomic_write_bytes(staging / "benchmark.json", json.dumps(metadata, indent=2).encode())
    return metadata


@command
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser("python -m data_tools.make_benchmark", __doc__)
    parser.add_argument("--input", dest="input_dir", metavar="INPUT", required=True, help="folder of HR photos")
    parser.add_argument(
        "--output", dest="output_dir", metavar="OUTPUT", required=True, help="benchmark folder (created)"
    )
    parser.add_argument("--degradation", default="camera", choices=list(PRESETS))
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-size", type=int, default=None, help="cut photos into HR tiles of this size")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument(
        "--test-photos", dest="test_names", nargs="*", default=None, help="photo names (stems) for the test split"
    )
    parser.add_argument("--workers", dest="num_workers", type=int, default=0, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = parser.parse_args(argv)
    metadata = make_benchmark(**vars(args))
    print(f"benchmark in {args.output_dir}: {json.dumps(metadata['num_images'])}")


if __name__ == "__main__":
    main()
