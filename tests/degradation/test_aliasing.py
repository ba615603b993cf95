"""Aliasing: found where the real images were read out by skipping pixels, and samples then start from HR."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.image_io import image_to_tensor
from unpaired_sr.common.matlab_resize import clean_lr_from_hr, resize_matrix
from unpaired_sr.degradation.aliasing import (
    ImageDownscale,
    decimate,
    estimate_aliasing,
    high_band_ratio,
    hr_batches,
    sampling_matrix,
    sampling_phases,
    shifted_sampling_matrix,
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
    assert torch.equal(decimate(hr, scale, (0.0, 0.0)), lr)
    flat = torch.full((2, 3, 4 * scale, 6 * scale), 0.4)
    assert torch.allclose(decimate(flat, scale, (0.2, 0.1)), torch.round(flat[:, :, ::scale, ::scale] * 255) / 255)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_shifted_grid_samples_where_it_is_moved(scale):
    lr = torch.round(torch.rand(1, 3, 5, 7) * 255) / 255
    hr = lr.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    hr[:, :, ::scale, ::scale] = 1.0  # the first HR pixel of every block marked
    first = torch.tensor([[-(scale - 1) / 2, -(scale - 1) / 2]])  # OpenCV's nearest-neighbour: the first pixel
    assert torch.equal(decimate(hr, scale, (0.0, 0.0), first), torch.ones_like(lr))
    assert torch.equal(decimate(hr, scale, (0.0, 0.0), -first), lr)  # the last pixel of each block
    # Unshifted, the shifted matrix samples bicubic's grid, as the unshifted decimation does; shifted, each
    # sample's weights centre on its moved position.
    assert np.allclose(shifted_sampling_matrix(8 * scale, scale, 0.0, 0.0), sampling_matrix(8 * scale, scale, 0.0))
    matrix = shifted_sampling_matrix(10 * scale, scale, 1.0 / scale, 0.7)  # a Gaussian of 1 HR px
    centres = (np.arange(10) + 0.5) * scale - 0.5 + 0.7
    assert np.allclose(matrix.sum(axis=1), 1.0) and np.allclose((matrix @ np.arange(10 * scale))[2:-2], centres[2:-2])


def test_sampling_phases_are_each_samples_own_and_span_half_an_lr_pixel():
    phases = sampling_phases(list(range(400)), 4)
    assert phases.shape == (400, 2) and torch.equal(sampling_phases([7, 3], 4), phases[[7, 3]])
    assert phases.abs().max() <= 2.0 and (phases < -1.5).any() and (phases > 1.5).any()
    assert phases.mean().abs() < 0.2 and (phases[:, 0] - phases[:, 1]).abs().mean() > 0.5  # the axes apart


def test_each_axis_is_sampled_or_downscaled_by_bicubic_on_its_own():
    hr = hr_batch("astronaut", 4)[:, :, :96, :128]
    assert torch.equal(decimate(hr, 4, (None, None)), clean_lr_from_hr(hr, 4))
    lines_only = decimate(hr, 4, (0.0, None))  # one field: every 4th line (pairs around the centre), bicubic along
    along = torch.from_numpy(np.array(resize_matrix(128, 32, 0.25))).float()
    expected = torch.round((0.5 * (hr[:, :, 1::4] + hr[:, :, 2::4]) @ along.T).clamp(0, 1) * 255) / 255
    assert (lines_only - expected).abs().max() <= 1 / 255 + 1e-6  # the same up to one level of rounding


def test_finer_detail_raises_the_high_band_ratio_along_its_axis_and_tiny_images_have_none():
    photo = real_photo("astronaut")
    assert (
        high_band_ratio([photo + np.random.default_rng(0).normal(0, 0.05, photo.shape)]) > high_band_ratio([photo])
    ).all()
    # Every other line doubled: the vertical spectrum folds, not the horizontal.
    lines = np.repeat(photo[::2], 2, axis=0)
    assert high_band_ratio([lines])[0] > high_band_ratio([photo])[0] + 0.3
    assert abs(high_band_ratio([lines])[1] - high_band_ratio([photo])[1]) < 0.1
    assert np.isnan(high_band_ratio([photo[:16, :16]])).all()


def halves(names: tuple[str, ...], scale: int) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Clean HR from the left half of each photo, real HR from the right half: other content, alike statistics."""
    photos = [real_photo(name) for name in names]
    width = [photo.shape[1] // 2 // scale * scale for photo in photos]
    right = [image_to_tensor(np.ascontiguousarray(photo[:, w : 2 * w]))[None] for photo, w in zip(photos, width)]
    return [photo[:, :w] for photo, w in zip(photos, width)], [hr[:, :, : hr.shape[2] // scale * scale] for hr in right]


@pytest.mark.parametrize("sigma", [0.1, 0.2])
def test_a_real_set_read_out_by_skipping_pixels_is_found(sigma):
    clean_hr, real_hr = halves(CLEAN + OTHER, 4)
    real = [as_image(decimate(hr, 4, (sigma, sigma))) for hr in real_hr]
    estimate = estimate_aliasing(hr_batches(clean_hr, 4), real, scale=4, add_noise=list)
    assert estimate.clear, estimate.describe()
    assert all(abs(found - sigma) < 0.06 for found in estimate.sigmas), estimate.describe()


def test_a_real_set_that_skips_lines_only_is_found_along_that_axis():
    clean_hr, real_hr = halves(CLEAN + OTHER, 4)
    real = [as_image(decimate(hr, 4, (0.1, None))) for hr in real_hr]
    estimate = estimate_aliasing(hr_batches(clean_hr, 4), real, scale=4, add_noise=list)
    vertical, horizontal = estimate.sigmas
    assert estimate.clear and abs(vertical - 0.1) < 0.06, estimate.describe()
    assert horizontal is None or horizontal > 0.3, estimate.describe()  # bicubic, or a decimation as soft


def test_downscaled_sharpened_or_blurred_real_sets_are_not_taken_for_aliasing():
    clean_hr = [real_photo(name) for name in CLEAN]  # other scenes than the real set's, as a user's sets are
    bicubic = [as_image(clean_lr_from_hr(hr_batch(name, 4), 4)) for name in OTHER]
    sharpened = [np.round(np.clip(unsharp_mask(image, 0.6), 0, 1) * 255) / 255 for image in bicubic]
    blurred = [as_image(decimate(hr_batch(name, 4), 4, (0.5, 0.5))) for name in OTHER]  # as wide as an anti-alias
    aliased = [as_image(decimate(hr_batch(name, 4), 4, (0.1, 0.1))) for name in OTHER]
    excess = {
        name: estimate_aliasing(hr_batches(clean_hr, 4), real, scale=4, add_noise=list)
        for name, real in [("bicubic", bicubic), ("sharpened", sharpened), ("blurred", blurred), ("aliased", aliased)]
    }
    assert not excess["bicubic"].clear and not excess["blurred"].clear, excess
    # Sharpening steepens edges and draws halos but adds little near the LR grid's limit; aliasing adds much more.
    assert (excess["sharpened"].excess - excess["bicubic"].excess < 0.1).all(), excess
    assert (excess["aliased"].excess - excess["bicubic"].excess > 0.25).all() and excess["aliased"].clear, excess


def test_image_downscale_is_bicubic_until_estimated_and_old_flows_load():
    hr = hr_batch("astronaut", 4)[:, :, :64, :64]
    downscale = ImageDownscale()
    assert not downscale.is_decimating and torch.equal(downscale(hr, 4), clean_lr_from_hr(hr, 4))
    downscale.load_estimate((0.15, None))
    assert torch.equal(downscale(hr, 4), decimate(hr, 4, (0.15, None)))
    again = ImageDownscale()
    again.load_state_dict(downscale.state_dict())
    assert again.sigmas[0] == pytest.approx(0.15) and again.sigmas[1] is None and again.is_decimating
    flow = tiny_flow()
    old = {name: value for name, value in flow.state_dict().items() if name != "image_downscale.sigma_lr_px"}
    flow.image_downscale.load_estimate((0.2, 0.2))
    flow.load_state_dict(old)  # a flow saved before the aliasing estimate: bicubic, as it was trained
    assert torch.equal(flow.downscale(hr, 4), clean_lr_from_hr(hr, 4))


def test_a_random_phase_moves_each_seeded_sample_and_old_flows_keep_bicubics_grid():
    hr = hr_batch("astronaut", 4)[:, :, :64, :64].repeat(2, 1, 1, 1)
    downscale = ImageDownscale()
    downscale.load_estimate((0.1, 0.1), random_phase=True)
    assert torch.equal(downscale(hr, 4), decimate(hr, 4, (0.1, 0.1)))  # no seeds (the calibrations): bicubic's
    moved = downscale(hr, 4, [1, 2])
    assert torch.equal(moved, downscale(hr, 4, [1, 2])) and not torch.equal(moved[0], moved[1])
    assert torch.equal(downscale(hr[:1], 4, [2]), moved[1:])  # each sample's grid from its own seed
    rows_alike = hr[:, :, :1].expand_as(hr)  # the same in every row: a vertical shift changes nothing
    lines = ImageDownscale()
    lines.load_estimate((0.1, None), random_phase=True)  # the horizontal axis stays bicubic
    assert torch.equal(lines(rows_alike, 4, [1, 2]), decimate(rows_alike, 4, (0.1, None)))
    again = ImageDownscale()
    again.load_state_dict(downscale.state_dict())
    assert torch.equal(again(hr, 4, [1, 2]), moved)
    flow = tiny_flow()
    old = {name: value for name, value in flow.state_dict().items() if name != "image_downscale.random_phase"}
    flow.image_downscale.load_estimate((0.1, 0.1), random_phase=True)
    flow.load_state_dict(old | {"image_downscale.sigma_lr_px": torch.tensor([0.1, 0.1])})  # saved before the phase
    assert torch.equal(flow.downscale(hr, 4, [1, 2]), decimate(hr, 4, (0.1, 0.1)))


@pytest.mark.parametrize(("setting", "phase"), [("auto", "bicubic"), ("auto", "random"), (False, "random")])
def test_auto_starts_samples_from_the_decimated_hr_where_the_real_images_alias(setting, phase):
    real = [as_image(decimate(hr_batch(name, 4), 4, (0.1, 0.1))) for name in OTHER]
    clean_hr = [real_photo(name) for name in CLEAN]
    dataset = SimpleNamespace(clean_hr=SimpleNamespace(images=clean_hr), real_lr=SimpleNamespace(images=real))
    flow = tiny_flow()
    config = FlowModelConfig(image_aliasing=setting, image_aliasing_phase=phase)
    lines = "\n".join(estimate_image_degradations(flow, config, dataset, scale=4))
    assert "image aliasing: high-band power" in lines
    hr = hr_batch("astronaut", 4)[:, :, :64, :64]
    if setting == "auto":
        own_phase = ", each on a grid of its own phase (model.image_aliasing_phase random)" if phase == "random" else ""
        assert f"applied to samples{own_phase} (model.image_aliasing auto: " in lines
        sigmas = flow.image_downscale.sigmas
        assert all(0.03 < sigma < 0.2 for sigma in sigmas) and torch.equal(
            flow.downscale(hr, 4), decimate(hr, 4, sigmas)
        )
        on_bicubics_grid = torch.equal(flow.downscale(hr, 4, [5]), decimate(hr, 4, sigmas))
        assert on_bicubics_grid == (phase == "bicubic")
    else:
        assert "not applied (model.image_aliasing false)" in lines and "its own phase" not in lines
        assert torch.equal(flow.downscale(hr, 4, [5]), clean_lr_from_hr(hr, 4))
