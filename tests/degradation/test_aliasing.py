"""Aliasing: found where the real images were read out by skipping pixels, and samples then start from HR."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.image_io import image_to_tensor
from unpaired_sr.common.matlab_resize import clean_lr_from_hr
from unpaired_sr.degradation.aliasing import (
    ImageDownscale,
    decimate,
    estimate_aliasing,
    high_band_ratio,
)
from unpaired_sr.degradation.blur import unsharp_mask
from unpaired_sr.degradation.checkpoint import build_flow
from unpaired_sr.degradation.config import FlowModelConfig
from unpaired_sr.degradation.train import estimate_image_degradations

CLEAN = ("astronaut", "chelsea", "coffee", "rocket")
OTHER = ("camera", "coins", "brick", "gravel")  # the real set: other scenes


def hr_batch(name: str, scale: int) -> torch.Tensor:
    hr = image_to_tensor(real_photo(name))[None]
    return hr[:, :, : hr.shape[2] // scale * scale, : hr.shape[3] // scale * scale]


def as_image(lr: torch.Tensor) -> np.ndarray:
    return lr[0].permute(1, 2, 0).numpy()


def tiny_flow():
    return build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_decimate_samples_at_the_lr_pixel_centres_bicubic_uses(scale):
    lr = torch.round(torch.rand(1, 3, 5, 7) * 255) / 255
    hr = lr.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)  # each LR pixel a block of HR pixels
    assert torch.equal(decimate(hr, scale, 0.0), lr)
    assert torch.allclose(clean_lr_from_hr(hr, scale)[:, :, 2:-2, 2:-2], lr[:, :, 2:-2, 2:-2], atol=0.5)  # same grid
    flat = torch.full((2, 3, 4 * scale, 6 * scale), 0.4)
    assert torch.allclose(decimate(flat, scale, 0.2), torch.round(flat[:, :, ::scale, ::scale] * 255) / 255)


def test_finer_detail_raises_the_high_band_ratio_and_tiny_images_have_none():
    photo = real_photo("astronaut")
    assert high_band_ratio([photo + np.random.default_rng(0).normal(0, 0.05, photo.shape)]) > high_band_ratio([photo])
    assert np.isnan(high_band_ratio([photo[:16, :16]]))


@pytest.mark.parametrize("sigma", [0.1, 0.2])
def test_a_real_set_read_out_by_skipping_pixels_is_found(sigma):
    real = [as_image(decimate(hr_batch(name, 4), 4, sigma)) for name in OTHER]
    estimate = estimate_aliasing([real_photo(name) for name in CLEAN], real, scale=4, add_noise=list)
    assert estimate.clear, estimate.describe()
    assert abs(estimate.sigma_lr_px - sigma) < 0.08, estimate.describe()


@pytest.mark.parametrize("kind", ["bicubic", "sharpened", "blurred"])
def test_downscaled_sharpened_or_blurred_real_sets_are_not_taken_for_aliasing(kind):
    real = [as_image(clean_lr_from_hr(hr_batch(name, 4), 4)) for name in OTHER]
    if kind == "sharpened":  # steeper edges and halos, but no detail beyond what the downscale kept
        real = [np.round(np.clip(unsharp_mask(image, 0.6), 0, 1) * 255) / 255 for image in real]
    if kind == "blurred":  # point sampled, but after a Gaussian as wide as an anti-alias filter
        real = [as_image(decimate(hr_batch(name, 4), 4, 0.5)) for name in OTHER]
    estimate = estimate_aliasing([real_photo(name) for name in CLEAN], real, scale=4, add_noise=list)
    assert not estimate.clear, estimate.describe()


def test_image_downscale_is_bicubic_until_estimated_and_old_flows_load():
    hr = hr_batch("astronaut", 4)[:, :, :64, :64]
    downscale = ImageDownscale()
    assert not downscale.is_decimating and torch.equal(downscale(hr, 4), clean_lr_from_hr(hr, 4))
    downscale.load_estimate(0.15)
    assert torch.equal(downscale(hr, 4), decimate(hr, 4, 0.15))
    again = ImageDownscale()
    again.load_state_dict(downscale.state_dict())
    assert again.sigma == pytest.approx(0.15)
    flow = tiny_flow()
    old = {name: value for name, value in flow.state_dict().items() if name != "image_downscale.sigma_lr_px"}
    flow.image_downscale.load_estimate(0.2)
    flow.load_state_dict(old)  # a flow saved before the aliasing estimate: bicubic, as it was trained
    assert torch.equal(flow.downscale(hr, 4), clean_lr_from_hr(hr, 4))


@pytest.mark.parametrize("setting", ["auto", False])
def test_auto_starts_samples_from_the_decimated_hr_where_the_real_images_alias(setting):
    real = [as_image(decimate(hr_batch(name, 4), 4, 0.1)) for name in OTHER]
    clean_hr = [real_photo(name) for name in CLEAN]
    dataset = SimpleNamespace(clean_hr=SimpleNamespace(images=clean_hr), real_lr=SimpleNamespace(images=real))
    flow = tiny_flow()
    lines = "\n".join(estimate_image_degradations(flow, FlowModelConfig(image_aliasing=setting), dataset, scale=4))
    assert "image aliasing: high-band power" in lines
    hr = hr_batch("astronaut", 4)[:, :, :64, :64]
    if setting == "auto":
        assert "applied to samples (model.image_aliasing auto: the real images hold clearly more" in lines
        assert 0.03 < flow.image_downscale.sigma < 0.2 and torch.equal(
            flow.downscale(hr, 4), decimate(hr, 4, flow.image_downscale.sigma)
        )
    else:
        assert "not applied (model.image_aliasing false)" in lines
        assert torch.equal(flow.downscale(hr, 4), clean_lr_from_hr(hr, 4))
