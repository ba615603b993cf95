"""JPEG read off images' quantization lattice, and applied to samples as found."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.config import load_config
from unpaired_sr.data_tools.degrade_classical import avif, webp
from unpaired_sr.degradation import compression
from unpaired_sr.degradation.checkpoint import build_flow
from unpaired_sr.degradation.compression import (
    FREQUENCIES,
    PROFILE_TILE,
    PROFILE_TILES,
    DetailProfile,
    ImageCompression,
    JpegEstimate,
    detail_profile,
    estimate_equivalent_jpeg,
    estimate_jpeg,
    estimate_quality,
    ijg_table,
    jpeg_round_trip,
    lattice_scores,
    profile_distance,
    profile_tiles,
)
from unpaired_sr.degradation.config import FlowConfig


def compressed(image: np.ndarray, quality: int) -> np.ndarray:
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return jpeg_round_trip(pixels, quality).astype(np.float32) / 255


def test_ijg_table_is_libjpegs():
    assert ijg_table(50)[0, 0] == 16 and ijg_table(50)[7, 7] == 99  # quality 50 is the base table
    assert ijg_table(75)[0, 0] == 8 and ijg_table(100).max() == 1
    assert ijg_table(10)[0, 0] == 80


@pytest.mark.parametrize("quality", [25, 50, 75, 85])
def test_the_quality_of_a_jpeg_is_read_back(quality):
    photo = real_photo("astronaut")[:128, :128]
    found = estimate_quality(compressed(photo, quality))
    # Neighbouring qualities share most of their low-frequency steps: within a few is a reading.
    assert isinstance(found, int) and abs(found - quality) <= 3, found


def test_the_block_grid_is_found_off_the_image_origin():
    image = compressed(real_photo("coffee")[:136, :136], 40)[3:, 5:]  # cropped after compression
    found = estimate_quality(image)
    assert isinstance(found, int) and abs(found - 40) <= 3, found


def test_no_jpeg_is_read_where_there_is_none():
    photo = real_photo("chelsea")[:128, :128]
    assert estimate_quality(photo) is None  # never compressed
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 3 / 255, photo.shape), 0, 1)
    assert estimate_quality(noisy) is None
    # Compressed at twice the size, then downscaled: the lattice does not survive the resize.
    large = compressed(real_photo("chelsea")[:256, :256], 30)
    assert estimate_quality(cv2.resize(large, (128, 128), interpolation=cv2.INTER_AREA)) is None
    assert estimate_quality(np.full((64, 64, 3), 0.5, np.float32)) == "unknown"  # flat: nothing to tell by


def test_a_set_is_summarised_as_the_qualities_found_and_the_uncompressed_share():
    photos = [real_photo(name)[:96, :96] for name in ("astronaut", "coffee", "chelsea", "rocket")]
    estimate = estimate_jpeg([compressed(photos[0], 30), compressed(photos[1], 60), photos[2], photos[3]])
    assert len(estimate.qualities) == 2 and estimate.uncompressed == 2 and estimate.images == 4
    assert "JPEG in 2 of 4 real images" in estimate.describe()
    assert estimate_jpeg(photos).qualities == [] and "none found" in estimate_jpeg(photos).describe()


def test_samples_are_compressed_as_estimated_and_straight_through():
    compression = ImageCompression()
    images = torch.from_numpy(real_photo("astronaut")[:64, :64].transpose(2, 0, 1).copy())[None].repeat(3, 1, 1, 1)
    assert compression(images, [0, 1, 2]) is images  # nothing estimated: the identity
    compression.load_estimate(JpegEstimate(qualities=[30], uncompressed=0, images=1))
    images.requires_grad_(True)
    out = compression(images, [0, 1, 2])
    expected = compressed(images[0].detach().permute(1, 2, 0).numpy(), 30)
    np.testing.assert_allclose(out[0].detach().permute(1, 2, 0).numpy(), expected, atol=1e-6)
    out.sum().backward()
    assert torch.equal(images.grad, torch.ones_like(images))  # JPEG passes the gradient straight through
    # Half of the real images uncompressed: about half of the samples are too, drawn per seed, repeatably.
    compression.load_estimate(JpegEstimate(qualities=[30], uncompressed=1, images=2))
    pixels = torch.round(images.detach()[:1] * 255) / 255
    kept = [torch.equal(compression(pixels, [seed]), pixels) for seed in range(40)]
    assert 10 < sum(kept) < 30
    assert kept == [torch.equal(compression(pixels, [seed]), pixels) for seed in range(40)]


def test_flows_saved_before_compression_load_and_sample_as_before():
    flow = build_flow(load_config(FlowConfig, "configs/deflow_light.yaml").model)
    state = {key: value for key, value in flow.state_dict().items() if "image_compression" not in key}
    flow.image_compression.quality_counts.fill_(1)
    flow.load_state_dict(state)
    assert not flow.image_compression.is_estimated


# ----------------------------------------------------------------------------- any codec, matched as JPEG


def small_photo(name: str, rng: np.random.Generator) -> np.ndarray:
    """A bundled photo shrunk 2x by pixel averaging (LR-like detail), its top-left 144 px, with faint noise."""
    photo = real_photo(name)
    height, width = photo.shape[0] // 2, photo.shape[1] // 2
    small = cv2.resize(photo[: height * 2, : width * 2], (width, height), interpolation=cv2.INTER_AREA)[:144, :144]
    return np.clip(small + rng.normal(0, 1.5 / 255, small.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def unpaired_photos() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Clean images and other colour photos to make a "real" set of: the two sets share no scene. (On so few
    photos the quality read moves with the scenes: the same JPEG 50 reads as 25 on other halves of them.)"""
    rng = np.random.default_rng(0)
    clean = [small_photo(name, rng) for name in ("astronaut", "coffee", "chelsea")]
    others = [small_photo(name, rng) for name in ("rocket", "hubble_deep_field", "immunohistochemistry", "retina")]
    return clean, others


def test_the_detail_profile_distance_is_a_symmetric_distance_over_shared_bins(unpaired_photos):
    clean, others = unpaired_photos
    a, b = detail_profile(clean), detail_profile(others)
    assert profile_distance(a, a) == 0 and profile_distance(a, b) == profile_distance(b, a) > 0
    # Compression empties the finest band of the flattest windows (in busier ones its blocks add some back).
    compressed_profile = detail_profile([compressed(image, 30) for image in clean])
    assert (compressed_profile.log_energy[:, :2, -1] < a.log_energy[:, :2, -1] - 0.4).all()
    empty = DetailProfile(a.log_energy, np.zeros_like(a.windows))
    assert profile_distance(a, empty) == float("inf")


def test_the_estimate_reads_a_bounded_number_of_tiles_spread_over_every_image():
    # Full-size images would make twenty profiles a minutes-long wait at every training start.
    large = [np.full((480, 480, 3), value, np.float32) for value in (0.2, 0.5, 0.8)]  # 100 tiles each
    tiles = profile_tiles(large)
    assert len(tiles) == PROFILE_TILES and {tile.shape for tile in tiles} == {(PROFILE_TILE, PROFILE_TILE, 3)}
    assert {round(float(tile[0, 0, 0]), 2) for tile in tiles} == {0.2, 0.5, 0.8}
    small = np.zeros((20, 30, 3), np.float32)
    assert [tile.shape for tile in profile_tiles([small, small])] == [(20, 30, 3)] * 2


@pytest.mark.parametrize("codec", ["webp", "jpeg", "avif"])
def test_a_codec_without_a_lattice_is_matched_as_jpeg_by_its_loss_of_detail(unpaired_photos, codec):
    from PIL import features

    if codec == "avif" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    clean, others = unpaired_photos
    encode = {"webp": lambda x: webp(x, 35), "jpeg": lambda x: compressed(x, 50), "avif": lambda x: avif(x, 45)}[codec]
    estimate = estimate_equivalent_jpeg(clean, [encode(image) for image in others])
    assert estimate.qualities, estimate.describe()
    best = estimate.distances[estimate.best]
    assert best <= 0.25 * estimate.distances[0]  # far closer than no compression, on other scenes
    assert estimate.qualities == list(range(min(estimate.qualities), max(estimate.qualities) + 1, 5))
    if codec == "jpeg":  # where the truth is a JPEG, the range reaches to within two steps of its quality
        assert min(estimate.qualities) - 10 <= 50 <= max(estimate.qualities) + 10, estimate.qualities
    assert "loss of detail as JPEG at quality" in estimate.describe()
    as_jpeg = estimate.as_jpeg_estimate()
    assert as_jpeg.qualities == estimate.qualities and as_jpeg.uncompressed == 0


def noisy_residuals(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(0, 2 / 255, image.shape).astype(np.float32) for image in images]


def test_noise_blur_and_no_degradation_are_not_read_as_compression(unpaired_photos):
    clean, others = unpaired_photos
    rng = np.random.default_rng(1)
    untouched = estimate_equivalent_jpeg(clean, others)
    assert untouched.qualities == [] and "none clear" in untouched.describe()
    noisy = [np.clip(image + rng.normal(0, 3 / 255, image.shape), 0, 1) for image in others]
    assert estimate_equivalent_jpeg(clean, noisy).qualities == []
    # Optics blur before the sensor's noise. (Blur alone empties the fine bands as a codec does: the samples
    # the estimate is made on are blurred first where the real images are, as training does.)
    blurred = [cv2.GaussianBlur(image, (0, 0), 0.7) for image in others]
    assert (
        estimate_equivalent_jpeg(
            clean, [np.clip(image + noise, 0, 1) for image, noise in zip(blurred, noisy_residuals(others, rng))]
        ).qualities
        == []
    )
    clean_blurred = [cv2.GaussianBlur(image, (0, 0), 0.7) for image in clean]
    assert estimate_equivalent_jpeg(clean_blurred, blurred).qualities == []
    tiny = estimate_equivalent_jpeg([image[:8, :8] for image in clean], others)
    assert tiny.qualities == [] and "not measured" in tiny.describe()


def test_lattice_scores_match_a_double_precision_reading():
    coefficients = np.random.default_rng(0).laplace(0, 20, (300, 8, 8))
    scores, counts = lattice_scores(coefficients)
    rows, cols = zip(*FREQUENCIES)
    values = coefficients[:, rows, cols][None]  # (1, N, 9) against steps (99, 1, 9)
    steps = np.stack([ijg_table(quality)[rows, cols] for quality in range(1, 100)])[:, None, :]
    counted = np.abs(values) > steps / 2
    expected = np.where(counted, np.cos(2 * np.pi * values / steps), 0.0).sum(axis=(1, 2))
    np.testing.assert_array_equal(counts, counted.sum(axis=(1, 2)))
    np.testing.assert_allclose(scores, expected / np.maximum(counts, 1), atol=1e-5)


def test_a_large_set_is_read_on_an_even_spread_of_its_images(monkeypatch):
    monkeypatch.setattr(compression, "MAX_JPEG_IMAGES", 4)
    photo = real_photo("astronaut")[:96, :96]
    estimate = estimate_jpeg([compressed(photo, 40)] * 6 + [photo] * 6)  # the first half compressed
    assert estimate.images == 4 and len(estimate.qualities) == 2 and estimate.uncompressed == 2
