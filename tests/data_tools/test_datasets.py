from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import real_photo
from unpaired_sr.common.errors import UserError
from unpaired_sr.common.image_io import write_image
from unpaired_sr.data_tools.datasets import (
    HRCrops,
    ImageFolderCache,
    PairedCrops,
    StepSampler,
    UnpairedCrops,
    content_descriptor,
    dihedral,
)


def test_unpaired_samples_are_a_function_of_seed_and_index(photo_folder):
    hr = ImageFolderCache(photo_folder("hr"), "HR folder")
    real = ImageFolderCache(photo_folder("real", names=("camera", "grass")), "real LR folder")
    data = UnpairedCrops(hr, real, lr_crop_size=8, scale=4, seed=5)
    sample = data[123]
    assert sample["hr"].shape == (3, 32, 32) and sample["real_lr"].shape == (3, 8, 8)
    assert sample["hr"].dtype == torch.float32
    torch.testing.assert_close(data[123]["hr"], sample["hr"], rtol=0, atol=0)
    assert not torch.equal(data[124]["hr"], sample["hr"])
    assert not torch.equal(UnpairedCrops(hr, real, 8, 4, seed=6)[123]["hr"], sample["hr"])


def test_loader_output_does_not_depend_on_workers_and_resumes_by_step(photo_folder):
    hr = ImageFolderCache(photo_folder("hr"), "HR folder")
    data = HRCrops(hr, lr_crop_size=6, scale=4, seed=0)

    def batches(workers: int, start_step: int, count: int):
        loader = DataLoader(data, batch_size=4, sampler=StepSampler(4, start_step), num_workers=workers)
        return [batch["hr"] for batch in itertools.islice(loader, count)]

    straight = batches(0, 0, 4)
    for a, b in zip(straight, batches(2, 0, 4)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(straight[2:], batches(0, 2, 2)):  # resuming at step 2 gives steps 2 and 3
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_step_sampler_ranks_split_one_big_batch():
    single = list(itertools.islice(iter(StepSampler(8)), 16))
    ranks = [list(itertools.islice(iter(StepSampler(4, rank=r, world_size=2)), 8)) for r in range(2)]
    for step in range(2):
        assert single[step * 8 : step * 8 + 8] == ranks[0][step * 4 : step * 4 + 4] + ranks[1][step * 4 : step * 4 + 4]


def box_downscale(image: torch.Tensor, scale: int) -> torch.Tensor:
    channels, height, width = image.shape
    return image.reshape(channels, height // scale, scale, width // scale, scale).mean(dim=(2, 4))


def test_paired_crops_are_aligned_under_every_flip(tmp_path):
    hr_image = (real_photo("chelsea")[:64, :80] * 255).round().astype(np.uint8)
    # A 4x4 box average commutes with flips and transposes, so it checks alignment after augmentation.
    lq_image = hr_image.reshape(16, 4, 20, 4, 3).mean(axis=(1, 3)) / 255.0
    for folder, image in (("hr", hr_image), ("lq", lq_image)):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / "cat.png", image)
    data = PairedCrops(ImageFolderCache(tmp_path / "lq", "LQ"), ImageFolderCache(tmp_path / "hr", "HR"), 6, 4, seed=1)
    for index in range(30):
        sample = data[index]
        assert sample["lq"].shape == (3, 6, 6) and sample["hr"].shape == (3, 24, 24)
        torch.testing.assert_close(sample["lq"], box_downscale(sample["hr"], 4), rtol=0, atol=0.5 / 255 + 1e-6)


def test_paired_size_mismatch_and_missing_partner(tmp_path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "lq").mkdir()
    write_image(tmp_path / "hr" / "a.png", real_photo("coffee", 64))
    write_image(tmp_path / "lq" / "a.png", real_photo("coffee", 15))
    lq, hr = ImageFolderCache(tmp_path / "lq", "LQ"), ImageFolderCache(tmp_path / "hr", "HR")
    with pytest.raises(UserError, match=r"size mismatch for a: LQ 15x15 x4 = 60x60, but HR is 64x64"):
        PairedCrops(lq, hr, 8, 4)
    write_image(tmp_path / "lq" / "b.png", real_photo("coffee", 16))
    with pytest.raises(UserError, match="have no HR partner.*e.g. b"):
        PairedCrops(ImageFolderCache(tmp_path / "lq", "LQ"), hr, 8, 4)


def test_cache_skips_a_few_bad_files_but_not_many(photo_folder):
    folder = photo_folder(names=[f"p{i}" for i in range(3)] and ("astronaut",) * 1)
    for i in range(12):
        write_image(folder / f"good{i}.png", real_photo("coffee", 16 + i))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(UserWarning, match="skipped 1 unreadable file.*broken.png"):
        cache = ImageFolderCache(folder, "HR folder")
    assert len(cache) == 13
    for i in range(3):
        (folder / f"bad{i}.jpg").write_bytes(b"\xff\xd8 nope")
    with pytest.raises(UserError, match="4 of 17 files in HR folder .* are unreadable"):
        ImageFolderCache(folder, "HR folder")


def test_cache_rejects_images_smaller_than_the_crop(photo_folder):
    folder = photo_folder(size=20)
    with pytest.raises(UserError, match=r"astronaut.png \(20x20\) is smaller than the crop size 32"):
        ImageFolderCache(folder, "HR folder", min_size=32)


def test_dihedral_gives_eight_distinct_transforms():
    image = np.arange(12).reshape(2, 2, 3)
    seen = {dihedral(image, t).tobytes() for t in range(8)}
    assert len(seen) == 8


def test_content_matching_draws_clean_crops_like_the_real_ones(tmp_path):
    # Clean photos: half sky-like gradients, half a busy photo; the real set is all busy (and noisy).
    clean, real = tmp_path / "clean", tmp_path / "real"
    clean.mkdir(), real.mkdir()
    ramp = np.linspace(0.2, 0.8, 128, dtype=np.float32)
    for i in range(3):
        write_image(clean / f"sky{i}.png", np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=2))
        write_image(clean / f"busy{i}.png", real_photo("astronaut", 128))
    noisy = real_photo("chelsea", 64) + np.random.default_rng(0).normal(0, 0.05, (64, 64, 3))
    write_image(real / "busy.png", np.clip(noisy, 0, 1).astype(np.float32))
    clean_cache = ImageFolderCache(clean, "clean", min_size=64)
    real_cache = ImageFolderCache(real, "real", min_size=16)

    def mean_texture(candidates: int) -> tuple[float, float]:
        crops = UnpairedCrops(clean_cache, real_cache, lr_crop_size=16, scale=4, content_candidates=candidates)
        samples = [crops[index] for index in range(200)]
        clean_texture = [content_descriptor(s["hr"].permute(1, 2, 0).numpy())[1] for s in samples]
        real_texture = [content_descriptor(s["real_lr"].permute(1, 2, 0).numpy())[1] for s in samples]
        return float(np.mean(clean_texture)), float(np.mean(real_texture))

    unmatched_clean, real_texture = mean_texture(1)
    matched_clean, _ = mean_texture(8)
    assert abs(matched_clean - real_texture) < 0.5 * abs(unmatched_clean - real_texture)
    # The descriptor sees content, not noise: a noisy copy of a crop describes like the crop.
    photo = real_photo("coffee", 64)
    noisy_photo = np.clip(photo + np.random.default_rng(1).normal(0, 0.06, photo.shape), 0, 1).astype(np.float32)
    assert np.abs(content_descriptor(noisy_photo) - content_descriptor(photo)).max() < 0.15
    with pytest.raises(ValueError, match="content_candidates"):
        UnpairedCrops(clean_cache, real_cache, lr_crop_size=16, scale=4, content_candidates=0)


def test_memory_mapped_storage_gives_the_same_samples(tmp_path, monkeypatch, photo_folder):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = photo_folder(size=64)
    in_memory = ImageFolderCache(folder, "photos", storage="memory")
    mapped = ImageFolderCache(folder, "photos", storage="memmap")
    assert in_memory.storage == "memory" and mapped.storage == "memmap"
    assert all(isinstance(image, np.memmap) for image in mapped.images)
    for a, b in zip(in_memory.images, mapped.images):
        np.testing.assert_array_equal(a, b)
    first, second = (UnpairedCrops(cache, cache, lr_crop_size=8, scale=4) for cache in (in_memory, mapped))
    for index in range(5):
        for key, value in first[index].items():
            torch.testing.assert_close(value, second[index][key], rtol=0, atol=0)
    stored = sorted((tmp_path / "cache" / "unpaired-sr" / "decoded").glob("*.npy"))
    assert len(stored) == 4
    # auto: memory-mapped above the threshold; an edited image is decoded again.
    monkeypatch.setenv("UNPAIRED_SR_STORE_ABOVE", "1000")
    assert ImageFolderCache(folder, "photos").storage == "memmap"
    write_image(folder / "coffee.png", real_photo("chelsea", 64))
    os.utime(folder / "coffee.png", ns=(1, 1))
    again = ImageFolderCache(folder, "photos")
    decoded = ImageFolderCache(folder, "photos", storage="memory")
    index = again.names.index("coffee")
    np.testing.assert_array_equal(again.images[index], decoded.images[index])
    assert len(list((tmp_path / "cache" / "unpaired-sr" / "decoded").glob("*.npy"))) == 5
    with pytest.raises(UserError, match="data storage must be one of auto, memory, memmap"):
        ImageFolderCache(folder, "photos", storage="disk")
