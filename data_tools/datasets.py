"""Training data: random crops from folders decoded once, into memory or into a memory-mapped store.

Every sample is a pure function of ``(seed, index)``: which image, where the
crop is, which of the 8 flips/rotations. A training loop reads indices
``step * batch_size ...`` in order (``StepSampler``), so resuming at step ``s``
means starting the sampler at ``s``: no epoch or shuffle state to save, and
the result does not depend on the number of DataLoader workers. Images are
drawn with replacement, which on the long runs of SR training is the same as
shuffling.

Folders whose decoded images would take more than 2 GB (``STORE_ABOVE_BYTES``)
are decoded once into uncompressed ``.npy`` files under
``~/.cache/unpaired-sr/decoded`` and memory-mapped: a crop reads only its own
pages, the operating system keeps what is used often in its page cache, and
DataLoader workers and DDP ranks share it instead of each holding a copy.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from unpaired_sr.common.distributed import Distributed
from unpaired_sr.common.errors import ImageReadError, UserError
from unpaired_sr.common.files import atomic_file
from unpaired_sr.common.image_io import (
    LUMA_WEIGHTS,
    image_size,
    image_to_tensor,
    list_images,
    read_image_native,
    to_float32,
)
from unpaired_sr.common.registry import cache_dir
from unpaired_sr.common.training import ignore_stop_signals

STORE_ABOVE_BYTES = 2 * 1024**3  # decoded size above which a folder is memory-mapped ($UNPAIRED_SR_STORE_ABOVE)
STORAGE_MODES = ("auto", "memory", "memmap")


def store_dir() -> Path:
    """Where decoded images are kept for memory mapping (delete it to reclaim the space)."""
    return cache_dir() / "decoded"


def decoded_bytes(paths: list[Path]) -> int:
    """What decoding ``paths`` into RGB uint8 would take, from their headers (16-bit files count 8 bits)."""
    total = 0
    for path in paths:
        size = image_size(path)
        total += 3 * size[0] * size[1] if size else 0
    return total


def stored_image(path: Path) -> np.ndarray:
    """``read_image_native(path)`` as a read-only memory map of a ``.npy`` copy, decoded on first use.

    The copy is named after the file's path, size and modification time, so an
    edited image is decoded again.
    """
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    folder = store_dir()
    store = folder / f"{key}.npy"
    if not store.exists():
        image = read_image_native(path)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(store) as handle:
            np.save(handle, image)
    try:
        return np.load(store, mmap_mode="r")
    except (ValueError, OSError):  # a damaged copy (a full disk, say): decode again
        store.unlink(missing_ok=True)
        return read_image_native(path)


class ImageFolderCache:
    """The decoded images (native depth, RGB) of one folder, in memory or memory-mapped.

    ``storage``: ``memory`` decodes every image into RAM; ``memmap`` reads them
    through ``stored_image``; ``auto`` (the default) memory-maps a folder whose
    decoded size is above ``STORE_ABOVE_BYTES``. Unreadable files are skipped
    with one warning that counts them; if more than ``max_bad_fraction`` of the
    files are unreadable, loading stops with an error naming the first bad
    file (a wrong folder is likelier than bad luck).
    """

    def __init__(
        self,
        folder: str | Path,
        what: str,
        min_size: int = 1,
        max_bad_fraction: float = 0.1,
        storage: str = "auto",
    ):
        if storage not in STORAGE_MODES:
            raise UserError(f"data storage must be one of {', '.join(STORAGE_MODES)}, got {storage!r}")
        self.folder = Path(folder)
        paths = list_images(folder, what)
        if storage == "auto":
            above = int(float(os.environ.get("UNPAIRED_SR_STORE_ABOVE", STORE_ABOVE_BYTES)))
            storage = "memmap" if decoded_bytes(paths) > above else "memory"
        self.storage = storage
        read = stored_image if storage == "memmap" else read_image_native
        self.names: list[str] = []
        self.images: list[np.ndarray] = []
        bad: list[str] = []
        for path in tqdm(paths, desc=f"load {what}", unit="img", leave=False, disable=len(paths) < 50):
            try:
                image = read(path)
            except ImageReadError as error:
                bad.append(str(error))
                continue
            if min(image.shape[:2]) < min_size:
                raise UserError(
                    f"image {path} ({image.shape[1]}x{image.shape[0]}) is smaller than the crop size {min_size}; "
                    "remove it or lower data.crop_size"
                )
            self.names.append(path.stem)
            self.images.append(image)
        if bad:
            if not self.images or len(bad) > max_bad_fraction * len(paths):
                raise UserError(f"{len(bad)} of {len(paths)} files in {what} {folder} are unreadable, e.g. {bad[0]}")
            warnings.warn(f"skipped {len(bad)} unreadable file(s) in {folder}, e.g. {bad[0]}", stacklevel=2)

    def __len__(self) -> int:
        return len(self.images)


def random_crop_offset(image: np.ndarray, crop_size: int, rng: np.random.Generator) -> tuple[int, int]:
    height, width = image.shape[:2]
    return int(rng.integers(height - crop_size + 1)), int(rng.integers(width - crop_size + 1))


def random_crop(cache: ImageFolderCache, size: int, rng: np.random.Generator, augment: bool) -> np.ndarray:
    """A random ``size`` x ``size`` crop of a random image of ``cache``, randomly flipped/rotated."""
    image = cache.images[rng.integers(len(cache))]
    top, left = random_crop_offset(image, size, rng)
    crop = image[top : top + size, left : left + size]
    return dihedral(crop, int(rng.integers(8))) if augment else crop


def dihedral(image: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 flips/rotations (``transform`` in 0..7) of an (H, W, C) array."""
    if transform & 1:
        image = image[:, ::-1]
    if transform & 2:
        image = image[::-1]
    if transform & 4:
        image = image.transpose(1, 0, 2)
    return image


CONTENT_GRID = 8  # the content descriptor averages a crop to 8 x 8 cells: noise barely moves them


def content_descriptor(crop: np.ndarray) -> np.ndarray:
    """``(mean luma, log coarse texture)`` of an (H, W, 3) crop of any depth, whatever its size.

    Coarse texture is the mean absolute difference between neighbouring cells
    of the crop's luma averaged to an 8 x 8 grid: at that scale an LR crop and
    its HR original look alike, and noise or blur hardly change it.
    """
    luma = to_float32(crop) @ LUMA_WEIGHTS
    cell_h, cell_w = luma.shape[0] // CONTENT_GRID, luma.shape[1] // CONTENT_GRID
    if cell_h == 0 or cell_w == 0:
        raise ValueError(f"a crop of {luma.shape[1]}x{luma.shape[0]} is too small for the content descriptor")
    cells = luma[: cell_h * CONTENT_GRID, : cell_w * CONTENT_GRID]
    cells = cells.reshape(CONTENT_GRID, cell_h, CONTENT_GRID, cell_w).mean(axis=(1, 3))
    texture = np.abs(np.diff(cells, axis=0)).mean() + np.abs(np.diff(cells, axis=1)).mean()
    return np.array([cells.mean(), np.log(texture + 0.005)], np.float32)


# How far apart two descriptors are: 0.1 in mean luma counts as much as a factor e in texture.
CONTENT_DISTANCE_SCALE = np.array([0.1, 1.0], np.float32)


class UnpairedCrops(Dataset):
    """Unpaired samples ``{"hr": (3, S*scale, S*scale), "real_lr": (3, S, S), "dequant_noise": (2, 3, S, S)}``.

    The HR crop becomes the clean LR on the training device (MATLAB bicubic,
    ``common.matlab_resize.downscale_torch``); the real LR crop comes from
    another image altogether. Each is augmented independently.

    ``content_candidates`` > 1 compares like with like: of that many random
    clean crops the one closest to the real crop in brightness and coarse
    texture (``content_descriptor``) is used. Two unpaired photo sets differ in
    their scenes (one has more brick and gravel, the other more sky), and a
    model that compares the two domains would otherwise learn that difference
    as part of the degradation.
    """

    def __init__(
        self,
        clean_hr: ImageFolderCache,
        real_lr: ImageFolderCache,
        lr_crop_size: int,
        scale: int,
        seed: int = 0,
        augment: bool = True,
        content_candidates: int = 1,
    ):
        if content_candidates < 1:
            raise ValueError(f"content_candidates must be at least 1, got {content_candidates}")
        self.clean_hr, self.real_lr = clean_hr, real_lr
        self.lr_crop_size, self.scale, self.seed, self.augment = lr_crop_size, scale, seed, augment
        self.content_candidates = content_candidates

    def __len__(self) -> int:
        return 2**62  # an endless stream; the sampler decides where it starts

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        size = self.lr_crop_size
        hr = random_crop(self.clean_hr, size * self.scale, rng, self.augment)
        real_lr = random_crop(self.real_lr, size, rng, self.augment)
        if self.content_candidates > 1:
            candidates = [hr] + [
                random_crop(self.clean_hr, size * self.scale, rng, self.augment)
                for _ in range(self.content_candidates - 1)
            ]
            target = content_descriptor(real_lr)
            distances = [np.abs((content_descriptor(c) - target) / CONTENT_DISTANCE_SCALE).sum() for c in candidates]
            hr = candidates[int(np.argmin(distances))]
        return {
            "hr": image_to_tensor(hr),
            "real_lr": image_to_tensor(real_lr),
            # U(-0.5, 0.5) dequantization noise for the clean and the real LR crop, drawn
            # here so that a sample is the same however batches are split across processes.
            "dequant_noise": torch.from_numpy(rng.random((2, 3, size, size), dtype=np.float32) - 0.5),
        }


def dequant_noise_batch(dequant_noise: torch.Tensor) -> torch.Tensor:
    """A batch's ``dequant_noise`` (B, 2, C, H, W) -> (2B, C, H, W): the clean crops', then the real crops'.

    The layout ``domain_bits_per_dim`` expects for ``cat([clean_lr, real_lr])``.
    """
    return dequant_noise.transpose(0, 1).flatten(0, 1)


class HRCrops(Dataset):
    """HR crops ``{"hr": (3, S*scale, S*scale)}`` for degradations made on the fly."""

    def __init__(self, hr: ImageFolderCache, lr_crop_size: int, scale: int, seed: int = 0, augment: bool = True):
        self.hr, self.hr_crop_size, self.seed, self.augment = hr, lr_crop_size * scale, seed, augment

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        return {"hr": image_to_tensor(random_crop(self.hr, self.hr_crop_size, rng, self.augment))}


SAMPLE_NAME = re.compile(r"(.+)_s\d+")


def check_pairs(lq: ImageFolderCache, hr: ImageFolderCache, scale: int) -> list[tuple[int, int]]:
    """Match LQ and HR images by name and check ``HR size == LQ size * scale``.

    HR may exceed it by less than ``scale`` pixels (it is then cropped at the
    bottom/right, the SR convention). ``NAME_sK`` (the K-th sample that
    ``degradation.synthesize --n-samples`` writes) pairs with ``NAME``.
    Returns index pairs ``(lq_i, hr_i)``.
    """
    hr_index = {name: i for i, name in enumerate(hr.names)}

    def partner(name: str) -> str | None:
        if name in hr_index:
            return name
        sample = SAMPLE_NAME.fullmatch(name)
        return sample.group(1) if sample and sample.group(1) in hr_index else None

    missing = [name for name in lq.names if partner(name) is None]
    if missing:
        raise UserError(
            f"{len(missing)} LQ image(s) in {lq.folder} have no HR partner in {hr.folder}, e.g. {missing[0]}"
        )
    pairs = []
    for i, name in enumerate(lq.names):
        j = hr_index[partner(name)]
        (lh, lw), (hh, hw) = lq.images[i].shape[:2], hr.images[j].shape[:2]
        if not (0 <= hh - lh * scale < scale and 0 <= hw - lw * scale < scale):
            raise UserError(
                f"size mismatch for {name}: LQ {lw}x{lh} x{scale} = {lw * scale}x{lh * scale}, but HR is {hw}x{hh}"
            )
        pairs.append((i, j))
    return pairs


class PairedCrops(Dataset):
    """Aligned samples ``{"lq": (3, S, S), "hr": (3, S*scale, S*scale)}`` from LQ/HR folders matched by name."""

    def __init__(
        self,
        lq: ImageFolderCache,
        hr: ImageFolderCache,
        lr_crop_size: int,
        scale: int,
        seed: int = 0,
        augment: bool = True,
    ):
        self.lq, self.hr, self.pairs = lq, hr, check_pairs(lq, hr, scale)
        self.lr_crop_size, self.scale, self.seed, self.augment = lr_crop_size, scale, seed, augment

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        i, j = self.pairs[rng.integers(len(self.pairs))]
        lq_image, hr_image = self.lq.images[i], self.hr.images[j]
        size, scale = self.lr_crop_size, self.scale
        top, left = random_crop_offset(lq_image, size, rng)
        lq = lq_image[top : top + size, left : left + size]
        hr = hr_image[top * scale : (top + size) * scale, left * scale : (left + size) * scale]
        if self.augment:
            transform = int(rng.integers(8))
            lq, hr = dihedral(lq, transform), dihedral(hr, transform)
        return {"lq": image_to_tensor(lq), "hr": image_to_tensor(hr)}


class StepSampler(Sampler[int]):
    """Sample indices for training steps ``start_step, start_step + 1, ...`` (endless).

    Step ``s`` of rank ``r`` out of ``world_size`` reads the ``batch_size``
    indices starting at ``(s * world_size + r) * batch_size``: the ranks of one
    step together read what one process with ``world_size * batch_size`` would.
    """

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        self.batch_size, self.start_step, self.rank, self.world_size = batch_size, start_step, rank, world_size

    def first_sample(self, step: int) -> int:
        """The global index of this rank's first sample at ``step`` (per-sample seeds derive from it)."""
        return (step * self.world_size + self.rank) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for step in itertools.count(self.start_step):
            first = self.first_sample(step)
            yield from range(first, first + self.batch_size)


def step_loader(
    dataset: Dataset,
    batch_size: int,
    start_step: int,
    world: Distributed,
    device: torch.device,
    num_workers: int,
    seed: int,
) -> DataLoader:
    """The training loader: step ``s`` of this rank reads its slice of the global batch, from ``start_step`` on.

    Its workers leave SIGINT/SIGTERM to the main process (``ignore_stop_signals``),
    and it has its own generator: creating an iterator would otherwise draw from
    the global RNG after a resume restored it.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=StepSampler(batch_size, start_step, world.rank, world.world_size),
        num_workers=num_workers,
        worker_init_fn=ignore_stop_signals,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
