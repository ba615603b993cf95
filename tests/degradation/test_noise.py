"""The image-space noise: estimated from unpaired sets' quietest patches, sampled with its level, colour and grain."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.checkpoint import load_checkpoint, save_checkpoint
from unpaired_sr.degradation.checkpoint import build_flow, load_flow
from unpaired_sr.degradation.compression import JpegEstimate
from unpaired_sr.degradation.config import FlowModelConfig
from unpaired_sr.degradation.noise import (
    MIN_ESTIMATE_SIDE,
    NUM_BINS,
    PATCH,
    ImageNoise,
    NoiseEstimate,
    add_image_noise,
    coarse_image_noise,
    coarse_white_shape,
    estimate_coarse_noise,
    estimate_noise,
    estimation_crops,
    estimation_side,
    noisy_copies,
)

LUMA = np.array([0.299, 0.587, 0.114])


def small(name: str) -> np.ndarray:
    """A bundled photo at a quarter of its size: LR-like, clean."""
    photo = real_photo(name)
    return cv2.resize(photo, (photo.shape[1] // 4, photo.shape[0] // 4), interpolation=cv2.INTER_AREA)


def camera_noise(image: np.ndarray, rng: np.random.Generator, grain_sigma: float = 0.0) -> np.ndarray:
    """Noise that is strongest in the dark (std 0.05 - 0.04 * luma), mostly luma, optionally grainy."""
    std = 0.05 - 0.04 * (image @ LUMA)
    luma = rng.standard_normal(image.shape[:2])
    if grain_sigma:
        luma = cv2.GaussianBlur(luma, (0, 0), grain_sigma)
        luma /= luma.std()
    noise = 0.9 * luma[..., None] + 0.45 * rng.standard_normal(image.shape)
    return np.round(np.clip(image + noise * std[..., None], 0, 1) * 255) / 255


def expected_std(brightness: float) -> float:
    return (0.05 - 0.04 * brightness) * np.sqrt(0.9**2 + 0.45**2)


def test_the_estimate_follows_brightness_and_finds_the_noise_mostly_luma():
    rng = np.random.default_rng(0)
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea")]
    estimate = estimate_noise(clean, [camera_noise(image, rng) for image in clean])
    measured = estimate.rgb_std().mean(axis=1)
    # Measured: 8.1/8.8/8.8/6.5/4.4 levels against 11.8/9.8/7.7/5.6/3.6 (the darkest bin loses to clipping at 0).
    for bin_index in range(1, NUM_BINS):
        truth = expected_std(estimate.brightness[bin_index])
        assert measured[bin_index] == pytest.approx(truth, rel=0.3), (bin_index, measured * 255, truth * 255)
    assert measured[1] > 1.5 * measured[4]  # signal-dependent: stronger in the dark
    luma_axis = estimate.axes[:, 0] * np.sign(estimate.axes[:, 0].sum())
    assert np.allclose(luma_axis, 1 / np.sqrt(3), atol=0.1)  # the strongest axis moves R, G and B together
    assert estimate.gains[2, 0] > 2 * estimate.gains[2, 1:].max()


def test_unclipped_reads_the_noise_in_the_dark_that_black_regions_hide():
    # The real photos hold black regions (a night sky, crushed shadows): their noise clipped at 0, the flattest
    # dark patches of all. Read as they are, they hide the noise beside them.
    rng = np.random.default_rng(0)
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea")]
    real = []
    for image in clean:
        image = image.copy()
        image[: image.shape[0] // 3] = 0.0  # a black band across the top third
        real.append(camera_noise(image, rng))
    unclipped = estimate_noise(clean, real, unclipped=True)
    truth = expected_std(unclipped.brightness[0])
    darkest = unclipped.rgb_std().mean(axis=1)[0]
    assert darkest == pytest.approx(truth, rel=0.3), (darkest * 255, truth * 255)  # measured: 10.2 against 12.3
    assert 0.03 < unclipped.brightness[0] < 0.2  # measured where the noise was not clipped
    as_shipped = estimate_noise(clean, real)
    assert as_shipped.rgb_std().mean(axis=1)[0] < 0.6 * truth  # measured: 6.8 levels, at 0.01
    # Away from black and white, the option reads what the default reads (0.4-0.8: 8.8 and 6.7 levels).
    paired = [camera_noise(image, rng) for image in clean]
    assert np.allclose(
        estimate_noise(clean, paired, unclipped=True).rgb_std()[2:4],
        estimate_noise(clean, paired).rgb_std()[2:4],
        rtol=0.1,
    )


def test_unclipped_raises_when_every_patch_is_clipped():
    clean = [small("astronaut")]
    with pytest.raises(ValueError, match="clipped at black or white left out"):
        estimate_noise(clean, [np.zeros_like(clean[0])], unclipped=True)


def test_sets_without_noise_give_little_noise_even_when_their_scenes_differ():
    # Unpaired: other photos, and a red cast as well; neither is noise.
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea")]
    real = [np.clip(small(name) + [0.08, 0, 0], 0, 1) for name in ("rocket", "camera", "immunohistochemistry")]
    noisy = camera_noise(small("rocket"), np.random.default_rng(0))
    without = estimate_noise(clean, real).rgb_std().mean()
    with_noise = estimate_noise(clean, [noisy, *real[1:]]).rgb_std().mean()
    assert without < 2.5 / 255, without * 255
    assert with_noise > 2 * without


def test_without_the_clean_set_the_real_set_alone_gives_the_noise_and_its_own_flattest_content():
    rng = np.random.default_rng(0)
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea")]
    other_clean = [small(name) for name in ("rocket", "camera")]
    real = [camera_noise(image, rng) for image in clean]
    alone = estimate_noise(clean, real, against_clean=False)
    torch.testing.assert_close(  # the clean set plays no part
        torch.from_numpy(alone.rgb_std()),
        torch.from_numpy(estimate_noise(other_clean, real, against_clean=False).rgb_std()),
    )
    against = estimate_noise(clean, real)
    # The same photos on both sides: the real set alone reads their flattest content on top of the noise.
    # Measured (levels, bins 1-4): 11.6 / 11.5 / 7.2 / 6.3 alone, 9.2 / 9.1 / 6.4 / 4.7 against the clean set,
    # the noise's own 9.3 / 7.6 / 5.4 / 4.3.
    assert (alone.rgb_std()[1:] >= against.rgb_std()[1:] - 1e-9).all()
    for bin_index in range(1, NUM_BINS):
        truth = expected_std(alone.brightness[bin_index])
        assert truth <= alone.rgb_std()[bin_index].mean() <= 1.7 * truth, bin_index


def test_a_smaller_share_of_quiet_patches_reads_less_of_the_real_sets_faint_texture():
    # Flat grey clean images; real ones of the same greys with a faint texture over all but a corner, and white
    # noise of 4 levels everywhere. The flat corners hold about 2% of the real patches: the quietest 5% reach into
    # the texture and read it as noise, the quietest 1% do not.
    rng = np.random.default_rng(0)
    sigma, amplitude = 4 / 255, 7 / 255
    columns = np.arange(160)
    texture = amplitude * np.sin(2 * np.pi * columns / 6)[None, :, None] * np.ones((160, 1, 3))
    clean, real = [], []
    for grey in (0.1, 0.3, 0.5, 0.7, 0.9):
        flat = np.full((160, 160, 3), grey)
        textured = flat + texture
        textured[:28, :28] = grey  # the flat corner
        clean.append(flat)
        real.append(textured + sigma * rng.standard_normal(flat.shape))
    fewer = estimate_noise(clean, real, quiet_fraction=0.01).rgb_std().mean(axis=1)[1:4]
    more = estimate_noise(clean, real, quiet_fraction=0.05).rgb_std().mean(axis=1)[1:4]
    assert np.allclose(fewer, sigma, rtol=0.2), fewer * 255
    assert (more > 1.35 * sigma).all(), more * 255  # measured: 6.1 / 6.1 / 5.9 levels (the fewer: 4.5 / 4.5 / 4.4)


def test_the_real_floor_keeps_the_noise_where_the_clean_sets_flattest_content_is_busier_than_the_real_noise():
    # Clean greys carrying a fine texture of 4 levels (photos whose flattest areas hold more than the real ones'),
    # real greys with white noise of 3 levels: subtracting the clean set's quiet patches leaves next to nothing.
    rng = np.random.default_rng(0)
    sigma = 3 / 255
    clean, real = [], []
    for grey in (0.1, 0.3, 0.5, 0.7, 0.9):
        clean.append(np.full((96, 96, 3), grey) + 4 / 255 * rng.standard_normal((96, 96, 3)))
        real.append(np.full((96, 96, 3), grey) + sigma * rng.standard_normal((96, 96, 3)))
    unfloored = estimate_noise(clean, real)
    floored = estimate_noise(clean, real, real_floor=0.7)
    assert (unfloored.rgb_std().mean(axis=1) < 0.3 * sigma).all(), unfloored.rgb_std() * 255
    assert np.allclose(floored.rgb_std().mean(axis=1), 0.7 * sigma, rtol=0.2), floored.rgb_std() * 255
    assert floored.floored.all() and not unfloored.floored.any()
    assert "at the real floor: 0.0-0.2, 0.2-0.4, 0.4-0.6, 0.6-0.8, 0.8-1.0" in floored.describe()


def test_the_real_floor_leaves_an_estimate_above_it_as_it_is():
    # Flat clean greys, noisy real ones: the clean set takes off little and the floor never binds.
    rng = np.random.default_rng(1)
    clean = [np.full((96, 96, 3), grey) for grey in (0.1, 0.3, 0.5, 0.7, 0.9)]
    real = [image + 3 / 255 * rng.standard_normal(image.shape) for image in clean]
    floored = estimate_noise(clean, real, real_floor=0.7)
    assert np.array_equal(floored.gains, estimate_noise(clean, real).gains)
    assert not floored.floored.any() and "real floor" not in floored.describe()


def test_too_few_patches_is_a_clear_error():
    with pytest.raises(ValueError, match="too few 8x8 patches"):
        estimate_noise([np.zeros((6, 6, 3))], [np.zeros((6, 6, 3))])


def hand_made(gains_by_bin: list[float], kernel: np.ndarray | None = None) -> NoiseEstimate:
    """Noise along one colour axis (grey) only, with a given std per brightness bin."""
    axes = np.linalg.qr(np.array([[1.0, 1, 1], [1, -1, 0], [1, 1, -2]]).T)[0]  # columns: grey first
    axes[:, 0] *= np.sign(axes[:, 0].sum())
    gains = np.zeros((NUM_BINS, 3))
    gains[:, 0] = gains_by_bin
    if kernel is None:
        kernel = np.zeros((PATCH, PATCH))
        kernel[PATCH // 2, PATCH // 2] = 1
    brightness = (np.arange(NUM_BINS) + 0.5) / NUM_BINS
    return NoiseEstimate(axes, gains, np.stack([kernel] * 3), brightness, np.ones((2, NUM_BINS), int))


def test_sampled_noise_has_the_level_of_the_local_brightness():
    noise = ImageNoise.from_estimate(hand_made([0.05, 0.04, 0.03, 0.02, 0.01]))
    dark_then_bright = torch.cat([torch.full((1, 3, 64, 64), 0.1), torch.full((1, 3, 64, 64), 0.9)])
    white = torch.randn(2, 3, 64 + PATCH - 1, 64 + PATCH - 1, generator=torch.Generator().manual_seed(0))
    sample = noise(dark_then_bright, white)
    assert sample.shape == dark_then_bright.shape
    # Along the grey axis (1, 1, 1) / sqrt(3): each channel gets the gain over sqrt(3).
    assert float(sample[0].std()) == pytest.approx(0.05 / np.sqrt(3), rel=0.05)
    assert float(sample[1].std()) == pytest.approx(0.01 / np.sqrt(3), rel=0.05)
    channels = sample[0].reshape(3, -1)
    assert torch.corrcoef(channels).min() > 0.95  # one grey axis: R, G and B move together
    with pytest.raises(ValueError, match="does not fit"):
        noise(dark_then_bright, white[:, :, :64, :64])


def test_grainy_noise_is_estimated_and_sampled_with_its_correlation():
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea")]

    def lag1(residual: np.ndarray) -> float:
        return float(np.corrcoef(residual[:, :-1].ravel(), residual[:, 1:].ravel())[0, 1])

    grey = torch.full((1, 3, 96, 96), 0.5)
    white = torch.randn(1, 3, 96 + PATCH - 1, 96 + PATCH - 1, generator=torch.Generator().manual_seed(0))
    sampled = {}
    for grain_sigma in (0.0, 1.0):
        rng = np.random.default_rng(1)
        noisy = [camera_noise(image, rng, grain_sigma) for image in clean]
        noise = ImageNoise.from_estimate(estimate_noise(clean, noisy))
        sampled[grain_sigma] = lag1(noise(grey, white)[0].permute(1, 2, 0).numpy() @ LUMA)
    # Measured: -0.01 for white noise; 0.51 for grain whose true lag-1 correlation is 0.69 (keeping
    # the quietest patches keeps those where the grain's strong low frequencies happened to be weak).
    assert abs(sampled[0.0]) < 0.1, sampled
    assert 0.4 < sampled[1.0] < 0.8, sampled


def test_a_flow_with_image_noise_adds_it_at_the_temperature_and_keeps_the_latents_still():
    flow = build_flow(FlowModelConfig(num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1)).eval()
    clean_lr = torch.from_numpy(small("astronaut")[:32, :32]).permute(2, 0, 1)[None].float()
    noise = flow.sample_noise(1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latent_only = flow.degrade(clean_lr, 1.0, noise=noise) - flow.degrade(clean_lr, 0.0, noise=noise)
        flow.image_noise.load_estimate(hand_made([0.02] * NUM_BINS))
        at_zero = flow.degrade(clean_lr, 0.0, noise=noise)
        at_one = flow.degrade(clean_lr, 1.0, noise=noise)
        at_half = flow.degrade(clean_lr, 0.5, noise=noise)
    assert latent_only.abs().max() > 1e-4  # without an estimate, the temperature scales the latent noise
    added = at_one - at_zero
    assert float(added.std()) == pytest.approx(0.02 / np.sqrt(3), rel=0.15)
    torch.testing.assert_close(at_half - at_zero, added / 2, atol=1e-5, rtol=1e-4)


def test_without_the_latent_shift_a_sample_is_the_clean_image_plus_the_image_noise():
    config = FlowModelConfig(num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1, keep_low_pass_sigma=8.0)
    flow = build_flow(config).eval()
    with torch.no_grad():
        for level in flow.shift.levels:  # a shift that visibly moves the content
            level.mean.fill_(0.5)
    clean_lr = torch.from_numpy(small("astronaut")[:32, :32]).permute(2, 0, 1)[None].float()
    noise = flow.sample_noise(1, 32, 32, generator=torch.Generator().manual_seed(0))
    flow.image_noise.load_estimate(hand_made([0.02] * NUM_BINS))
    with torch.no_grad():
        shifted = flow.degrade(clean_lr, 1.0, noise=noise)
        flow.sample_latent_shift = False
        plain = flow.degrade(clean_lr, 1.0, noise=noise)
        image_noise = flow.image_noise(clean_lr, noise[flow.num_levels])
    torch.testing.assert_close(plain, clean_lr + image_noise)
    assert (shifted - image_noise - clean_lr).abs().max() > 1e-3  # the shift did move the content
    assert build_flow(FlowModelConfig(sample_latent_shift=False)).sample_latent_shift is False
    flow.image_noise = ImageNoise()  # no estimate: nothing would be sampled
    with pytest.raises(RuntimeError, match="no image-noise estimate"):
        flow.degrade(clean_lr, 1.0, noise=noise)


def test_the_image_noise_goes_on_after_the_compression_and_is_not_thinned_by_it():
    config = FlowModelConfig(num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1, sample_latent_shift=False)
    flow = build_flow(config).eval()
    clean_lr = torch.from_numpy(small("astronaut")[:64, :64]).permute(2, 0, 1)[None].float()
    noise = flow.sample_noise(1, 64, 64, generator=torch.Generator().manual_seed(0))
    flow.image_noise.load_estimate(hand_made([0.03] * NUM_BINS))
    with torch.no_grad():
        content, image_noise = flow.degrade_parts(clean_lr, noise, 1.0, [7])
        uncompressed = flow.synthesize(content, image_noise, [7])
        flow.image_compression.load_estimate(JpegEstimate(qualities=[30], uncompressed=0, images=1))
        sample = flow.synthesize(content, image_noise, [7])
        compressed_content = flow.image_compression(content, [7])
    # Without an estimate: the old order's sample, the sum clamped and rounded to 8 bits.
    torch.testing.assert_close(uncompressed, torch.round((content + image_noise).clamp(0, 1) * 255) / 255)
    # The content takes the JPEG (quality 30 takes detail away) and the noise goes on top, whole: only the
    # clamp at black and white and the 8-bit rounding part the sample from the compressed content plus the noise.
    assert (compressed_content - content).abs().mean() > 2e-3
    inside = ((compressed_content + image_noise) > 0) & ((compressed_content + image_noise) < 1)
    residual = (sample - compressed_content - image_noise)[inside]
    assert residual.abs().max() <= 0.5 / 255 + 1e-6
    assert float((sample - compressed_content).std()) == pytest.approx(float(image_noise.std()), rel=0.05)


def test_checkpoints_from_before_the_image_noise_load_and_sample_as_they_did(tmp_path):
    flow = build_flow(FlowModelConfig(num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1))
    flow.image_noise.load_estimate(hand_made([0.02] * NUM_BINS))
    path = tmp_path / "flow.pt"
    save_checkpoint(
        path,
        {
            "kind": "degradation_flow",
            "config": {"model": {"num_steps": 2, "hidden_channels": 16, "cond_channels": 8, "cond_blocks": 1}},
            "model": flow.state_dict(),
        },
    )
    assert load_flow(path)[0].image_noise.is_estimated
    state = load_checkpoint(path, "degradation_flow")
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("image_noise.")}
    save_checkpoint(path, state)
    old, _ = load_flow(path)
    assert not old.image_noise.is_estimated


def blotchy_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fine grey grain plus colour blotches of about 3 px: what an 8x8 patch, its mean removed, mostly misses."""
    fine = 0.01 * rng.standard_normal(image.shape[:2])[..., None]
    blotches = cv2.GaussianBlur(rng.standard_normal(image.shape), (0, 0), 3.0)
    blotches *= 0.03 / blotches.std()
    blotches -= blotches.mean(axis=2, keepdims=True)  # colour only: R, G and B against each other
    return np.round(np.clip(image + fine + blotches, 0, 1) * 255) / 255


def low_pass_chroma_std(noise: np.ndarray) -> float:
    """The std of a noise field's colour (each channel minus their mean) after a Gaussian of 2 px."""
    chroma = noise - noise.mean(axis=2, keepdims=True)
    return float(cv2.GaussianBlur(chroma.astype(np.float32), (0, 0), 2.0).std())


def test_the_coarse_estimate_finds_the_blotches_the_fine_one_misses():
    rng = np.random.default_rng(0)
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    noisy = [blotchy_noise(image, rng) for image in clean]
    truth = np.mean([low_pass_chroma_std(n - c) for n, c in zip(noisy, clean)])
    fine = ImageNoise.from_estimate(estimate_noise(clean, noisy))
    coarse = ImageNoise.from_estimate(estimate_coarse_noise(clean, noisy, fine))
    grey = torch.full((1, 3, 128, 128), 0.5)
    generator = torch.Generator().manual_seed(0)
    white = torch.randn(1, 3, 128 + PATCH - 1, 128 + PATCH - 1, generator=generator)
    coarse_white = torch.randn(coarse_white_shape(1, 128, 128), generator=generator)
    with torch.no_grad():
        fine_only = fine(grey, white)[0].permute(1, 2, 0).numpy()
        both = fine_only + coarse_image_noise(coarse, grey, coarse_white)[0].permute(1, 2, 0).numpy()
    # Measured: the blotches' low-pass colour std 0.0204; the fine noise alone 0.0067, with the coarse 0.0150
    # (the quietest patches keep some of the blotches out, as they do the fine grain's low frequencies).
    assert low_pass_chroma_std(fine_only) < 0.5 * truth
    assert 0.6 * truth < low_pass_chroma_std(both) < 1.3 * truth


def test_fine_noise_alone_gives_little_coarse_noise():
    rng = np.random.default_rng(0)
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    noisy = [camera_noise(image, rng) for image in clean]  # white: all of it within an 8x8 patch
    fine_estimate = estimate_noise(clean, noisy)
    coarse_estimate = estimate_coarse_noise(clean, noisy, ImageNoise.from_estimate(fine_estimate))
    # Measured: 0.07 of the fine noise's std, mean over bins and channels.
    assert coarse_estimate.rgb_std().mean() < 0.15 * fine_estimate.rgb_std().mean()


def test_coarse_noise_of_a_tile_is_that_region_of_the_whole_image():
    flow = build_flow(FlowModelConfig(num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1)).eval()
    flow.image_noise.load_estimate(hand_made([0.02] * NUM_BINS))
    flow.image_coarse_noise.load_estimate(hand_made([0.03] * NUM_BINS, np.full((PATCH, PATCH), 1 / PATCH)))
    flow.sample_latent_shift = False
    clean_lr = torch.from_numpy(small("astronaut")[:64, :64]).permute(2, 0, 1)[None].float()
    noise = flow.sample_noise(1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert len(noise) == flow.num_levels + 2
    with torch.no_grad():
        whole = flow.degrade(clean_lr, 1.0, noise=noise)
        top, left = 16, 24
        tile = flow.degrade(
            clean_lr[:, :, top : top + 32, left : left + 32], 1.0, flow.crop_noise(noise, top, left, 32, 32)
        )
        coarse_only = whole - flow.image_noise(clean_lr, noise[flow.num_levels]) - clean_lr
    # The brightness the gains follow is read off the tile, so its outermost pixels may differ a little.
    torch.testing.assert_close(tile[:, :, 2:-2, 2:-2], whole[:, :, top + 2 : top + 30, left + 2 : left + 30])
    assert float(coarse_only.std()) > 0.005  # the coarse noise is there, and smooth: neighbours agree
    assert (
        float(
            torch.corrcoef(torch.stack([coarse_only[0, 0, :, :-1].flatten(), coarse_only[0, 0, :, 1:].flatten()]))[0, 1]
        )
        > 0.8
    )


def test_calibrations_get_several_draws_of_the_noise():
    noise = ImageNoise.from_estimate(hand_made([0.02] * NUM_BINS))
    images = [np.full((16, 16, 3), 0.5), np.full((12, 20, 3), 0.3)]
    copies = noisy_copies(noise, images, draws=3)
    assert [copy.shape for copy in copies] == [image.shape for image in images] * 3
    for first, again in zip(copies[:2], add_image_noise(noise, images, seed=0)):
        np.testing.assert_array_equal(first, again)  # the first draw is the single draw of before
    assert np.abs(copies[0] - copies[2]).mean() > 0.005  # the next draw is another one


def test_estimates_read_a_bounded_square_of_each_image_spread_over_the_frame():
    # A million pixels a set: few images keep large squares, many keep 128 px, a benchmark's tiles stay whole.
    assert estimation_side(5) == 457 and estimation_side(39) == 163 and estimation_side(1000) == MIN_ESTIMATE_SIDE
    rows, cols = np.mgrid[:480, :640]
    image = np.stack([rows, cols, rows], axis=2)  # each pixel holds its own position
    images = [image] * 40
    crops = estimation_crops(images, 128, multiple=8)
    assert all(crop.shape == (128, 128, 3) and np.shares_memory(crop, image) for crop in crops)
    tops, lefts = np.array([crop[0, 0, 0] for crop in crops]), np.array([crop[0, 0, 1] for crop in crops])
    assert (tops % 8 == 0).all() and (lefts % 8 == 0).all()  # a JPEG's block grid stays where it was
    # The squares cover the frame: every quarter of the room holds some of their corners, on both axes.
    for positions, room in ((tops, 480 - 128), (lefts, 640 - 128)):
        assert set(np.minimum(positions * 4 // room, 3)) == {0, 1, 2, 3}
    small_image = np.zeros((48, 60, 3))
    assert estimation_crops([small_image], 128)[0].shape == small_image.shape  # smaller than the square: whole


def sparse_specks(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey specks of +-0.08 on a tenth of the pixels over faint white noise: noise no spectrum describes."""
    hit = rng.random(image.shape[:2]) < 0.1
    sign = rng.choice([-1.0, 1.0], image.shape[:2])
    noisy = image + (0.08 * hit * sign)[..., None] + 0.004 * rng.standard_normal(image.shape)
    return np.round(np.clip(noisy, 0, 1) * 255) / 255


def luma_kurtosis(sample: torch.Tensor) -> float:
    luma = (sample[0].permute(1, 2, 0).double().numpy() @ LUMA).ravel()
    luma = luma - luma.mean()
    return float((luma**4).mean() / (luma**2).mean() ** 2)


def test_the_texture_option_draws_the_real_quiet_patches_at_the_estimated_level():
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea")]
    rng = np.random.default_rng(0)
    estimate = estimate_noise(clean, [sparse_specks(image, rng) for image in clean])
    assert estimate.texture.shape[1:] == (3, PATCH, PATCH) and len(estimate.texture) >= 3 * 8
    gaussian = ImageNoise.from_estimate(estimate)
    patches = ImageNoise.from_estimate(estimate)
    patches.load_texture(estimate)
    grey = torch.full((1, 3, 96, 96), 0.5)
    white = torch.randn(1, 3, 96 + PATCH - 1, 96 + PATCH - 1, generator=torch.Generator().manual_seed(0))
    from_spectrum, from_patches = gaussian(grey, white), patches(grey, white)
    # The estimate sets the level either way; the patches keep what the specks are: rare and strong.
    # Measured: 7.5 and 7.4 levels; kurtosis 3.1 and 6.9 (the specks themselves: 10.6).
    assert float(from_patches.std()) == pytest.approx(float(from_spectrum.std()), rel=0.1)
    assert luma_kurtosis(from_spectrum) < 3.5 < 5.0 < luma_kurtosis(from_patches)


def test_overlapped_patches_keep_their_variance_everywhere_and_show_no_seams():
    white_patches = np.random.default_rng(0).standard_normal((4000, 3, PATCH, PATCH))
    estimate = dataclasses.replace(hand_made([0.02] * NUM_BINS), texture=white_patches)
    noise = ImageNoise.from_estimate(estimate)
    noise.load_texture(estimate)
    white = torch.randn(32, 3, 64 + PATCH - 1, 64 + PATCH - 1, generator=torch.Generator().manual_seed(0))
    field = noise.texture_field(white, 64, 64)
    assert field.shape == (32, 3, 64, 64)
    # Every position within the grid's stride gets the same variance: the windows' squares sum to one.
    by_phase = torch.stack([field[:, :, i::4, j::4].var() for i in range(4) for j in range(4)])
    assert float(by_phase.min()) > 0.9 and float(by_phase.max()) < 1.1, by_phase


def test_a_tile_gets_the_texture_of_that_region_of_the_whole_image(tmp_path):
    clean = [small(name) for name in ("astronaut", "coffee", "chelsea")]
    rng = np.random.default_rng(0)
    estimate = estimate_noise(clean, [sparse_specks(image, rng) for image in clean])
    flow = build_flow(FlowModelConfig(num_steps=2, hidden_channels=16, cond_channels=8, cond_blocks=1)).eval()
    flow.sample_latent_shift = False
    flow.image_noise.load_estimate(estimate)
    flow.image_noise.load_texture(estimate)
    clean_lr = torch.from_numpy(clean[0][:64, :64]).permute(2, 0, 1)[None].float()
    noise = flow.sample_noise(1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = flow.degrade(clean_lr, 1.0, noise=noise)
        top, left = 16, 24
        tile = flow.degrade(
            clean_lr[:, :, top : top + 32, left : left + 32], 1.0, flow.crop_noise(noise, top, left, 32, 32)
        )
    # The brightness the gains follow is read off the tile, so its outermost pixels may differ a little.
    torch.testing.assert_close(
        tile[:, :, 2:-2, 2:-2], whole[:, :, top + 2 : top + 30, left + 2 : left + 30], atol=1e-4, rtol=0
    )  # the overlapping patches are summed in another order
    # The texture is stored with the flow and comes back with it, however many patches it holds.
    path = tmp_path / "flow.pt"
    config = {"model": {"num_steps": 2, "hidden_channels": 16, "cond_channels": 8, "cond_blocks": 1}}
    save_checkpoint(path, {"kind": "degradation_flow", "config": config, "model": flow.state_dict()})
    loaded, _ = load_flow(path)
    loaded.sample_latent_shift = False
    assert loaded.image_noise.texture.shape == flow.image_noise.texture.shape
    with torch.no_grad():
        torch.testing.assert_close(loaded.degrade(clean_lr, 1.0, noise=noise), whole)
