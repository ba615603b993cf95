"""JPEG read off images' quantization lattice, and applied to samples as found."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.config import load_config
from unpaired_sr.degradation.checkpoint import build_flow
from unpaired_sr.degradation.compression import (
    ImageCompression,
    JpegEstimate,
    estimate_jpeg,
    estimate_quality,
    ijg_table,
    jpeg_round_trip,
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
