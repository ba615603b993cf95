"""The image-space blur: estimated at the edges of unpaired sets, applied to clean images before the flow."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import real_photo
from unpaired_sr.common.config import load_config
from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import RGB_TO_YCBCR, image_to_tensor
from unpaired_sr.data_tools.degrade_classical import jpeg
from unpaired_sr.data_tools.prepare_demo import BUNDLED_PHOTOS
from unpaired_sr.degradation.blur import (
    CLEAR_BOOST,
    LOCAL_CONTRAST_SIGMA,
    SHARPEN_SIGMA,
    ImageBlur,
    chroma_blurred,
    clearly_blurred,
    estimate_blur,
    estimate_chroma_blur,
    estimate_local_contrast,
    estimate_sharpening,
    local_contrast,
    unsharp_mask,
)
from unpaired_sr.degradation.checkpoint import build_flow
from unpaired_sr.degradation.compression import JpegEstimate
from unpaired_sr.degradation.config import FlowConfig, FlowModelConfig
from unpaired_sr.degradation.flow import DegradationFlow
from unpaired_sr.degradation.train import estimate_image_degradations

CLEAN = ("astronaut", "chelsea", "coffee", "rocket")
COLOUR_OTHER = ("motorcycle", "china", "flower", "grace_hopper")  # colour photos of other scenes


def halved(photo: np.ndarray) -> np.ndarray:
    return cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2), interpolation=cv2.INTER_AREA)


def half(name: str) -> np.ndarray:
    """A bundled photo at half its size: enough strong edges for the statistic (hundreds per orientation)."""
    return halved(real_photo(name))


def other_half(name: str) -> np.ndarray:
    """A bundled colour photo of another scene (``prepare_demo``'s set) at half its size, float RGB."""
    return halved(BUNDLED_PHOTOS[name]()[:, :, :3].astype(np.float32) / 255.0)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    out = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101) if sigma else image
    return np.round(np.clip(out, 0, 1) * 255) / 255


@pytest.mark.parametrize("sigma", [0.6, 0.9, 1.3])
def test_the_blur_of_other_scenes_is_found(sigma):
    clean = [half(name) for name in CLEAN]
    real = [blurred(half(name), sigma) for name in ("camera", "coins", "brick", "gravel")]
    estimate, per_orientation = estimate_blur(clean, real)
    # These real scenes are sharper than the clean ones to begin with, so part of their blur goes
    # unseen (measured: 0.46, 0.67, 0.97): the estimate errs on the side of too little.
    assert 0.7 * sigma <= estimate <= 1.1 * sigma and per_orientation.shape == (4,)
    assert clearly_blurred(per_orientation)  # what turns the image blur and compression on under "auto"


def test_as_sharp_a_real_set_reads_as_next_to_no_blur():
    clean = [half(name) for name in CLEAN]
    estimate, per_orientation = estimate_blur(clean, [half(name) for name in ("camera", "coins", "brick", "gravel")])
    assert estimate < 0.35  # below what the edge statistic resolves (degradation/blur.py)
    assert not clearly_blurred(per_orientation)


def test_clearly_blurred_asks_every_measured_orientation():
    assert clearly_blurred(np.array([0.54, 0.58, 0.64, 0.62]))  # webcam's defocus
    assert not clearly_blurred(np.array([0.0, 0.31, 0.0, 0.35]))  # camera: two unpaired sets of other scenes
    assert clearly_blurred(np.array([np.nan, 0.4, 0.5, np.nan]))  # too few edges in two orientations: left out
    assert not clearly_blurred(np.full(4, np.nan))


def test_image_blur_is_the_identity_until_estimated_and_old_flows_load():
    images = torch.rand(1, 3, 16, 16)
    blur = ImageBlur()
    assert blur(images) is images
    blur.load_estimate(0.8)
    assert blur.sigma == 0.8 and (blur(images) - images).abs().max() > 0.05
    again = ImageBlur()
    again.load_state_dict(blur.state_dict())
    assert again.sigma == pytest.approx(0.8)
    flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    old = {name: value for name, value in flow.state_dict().items() if not name.startswith("image_blur.")}
    flow.image_blur.load_estimate(0.5)
    flow.load_state_dict(old)  # a flow saved before the blur estimate: no blur, as it was trained
    assert flow.image_blur.sigma == 0.0 and flow.prepare_clean(images) is images
    flow.image_blur.load_estimate(0.7)
    prepared = flow.prepare_clean(image_to_tensor(half("coffee")[:32, :32])[None])
    assert torch.equal(prepared, torch.round(prepared * 255) / 255)  # 8-bit, as a saved blurred image


def saved(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255) / 255


@pytest.mark.parametrize("amount", [0.4, 1.0])
def test_the_sharpening_of_the_same_scenes_is_found(amount):
    clean = [half(name) for name in CLEAN]
    estimate, per_orientation = estimate_sharpening(clean, [saved(unsharp_mask(c, amount)) for c in clean], list)
    assert estimate == pytest.approx(amount, abs=0.05) and per_orientation.shape == (4,)


def test_the_sharpening_of_other_scenes_is_found_on_top_of_their_own_sharpness():
    clean = [half(name) for name in CLEAN]
    other = [half(name) for name in ("camera", "coins", "brick", "gravel")]
    as_they_are, _ = estimate_sharpening(clean, other, list)
    sharpened, _ = estimate_sharpening(clean, [saved(unsharp_mask(image, 0.5)) for image in other], list)
    # These scenes are sharper than the clean ones (measured: 0.25 unsharpened, 0.66 sharpened by 0.5).
    assert as_they_are < 0.35 and 0.25 <= sharpened - as_they_are <= 0.75


def test_noise_is_not_taken_for_sharpening():
    clean = [half(name) for name in CLEAN]

    def add_noise(images, seed=0):
        rng = np.random.default_rng(seed)
        return [image + 0.05 * rng.standard_normal(image.shape) for image in images]

    real = [saved(image) for image in add_noise(clean, seed=1)]
    calibrated, _ = estimate_sharpening(clean, real, add_noise)
    uncalibrated, _ = estimate_sharpening(clean, real, list)
    assert calibrated < 0.05 and uncalibrated > calibrated + 0.1


def test_image_sharpening_applies_the_unsharp_mask_and_old_flows_load():
    images = torch.rand(1, 3, 16, 16)
    blur = ImageBlur()
    blur.load_sharpening(0.6)
    assert torch.allclose(blur(images), images + 0.6 * (images - gaussian_blur(images, SHARPEN_SIGMA)))
    again = ImageBlur()
    again.load_state_dict(blur.state_dict())
    assert again.amount == pytest.approx(0.6) and again.sigma == 0.0
    flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    old = {name: value for name, value in flow.state_dict().items() if name != "image_blur.sharpen_amount"}
    flow.image_blur.load_sharpening(0.5)
    flow.load_state_dict(old)  # a flow saved before the sharpening estimate: none, as it was trained
    assert flow.image_blur.amount == 0.0 and flow.prepare_clean(images) is images
    flow.image_blur.load_sharpening(1.0)
    prepared = flow.prepare_clean(images)
    assert prepared.min() >= 0 and prepared.max() <= 1  # halos clip, as in a saved image
    assert torch.equal(prepared, torch.round(prepared * 255) / 255)


@pytest.mark.parametrize("amount", [0.3, 0.6])
def test_the_local_contrast_boost_of_the_same_scenes_is_found(amount):
    clean = [half(name) for name in CLEAN]
    assert estimate_local_contrast(clean, [saved(local_contrast(c, amount)) for c in clean], list) == pytest.approx(
        amount, abs=0.05
    )


def test_other_scenes_read_a_boost_only_where_they_have_one():
    clean = [half(name) for name in CLEAN]
    colour, grey = (
        [other_half(name) for name in COLOUR_OTHER],
        [half(n) for n in ("camera", "coins", "brick", "gravel")],
    )
    # Measured: colour 0.00, grey 0.23 (coins' steps overshoot a little: the largest reading without a boost seen).
    assert estimate_local_contrast(clean, [saved(image) for image in colour], list) < 0.05
    assert estimate_local_contrast(clean, [saved(image) for image in grey], list) < CLEAR_BOOST
    for other in (colour, grey):  # measured: 0.82 and 1.5 (the grid's end) for a boost of 0.4
        assert estimate_local_contrast(clean, [saved(local_contrast(image, 0.4)) for image in other], list) > 0.4


def test_noise_is_not_taken_for_a_boost():
    clean = [half(name) for name in CLEAN]

    def add_noise(images, seed=0):
        rng = np.random.default_rng(seed)
        return [image + 0.05 * rng.standard_normal(image.shape) for image in images]

    assert estimate_local_contrast(clean, [saved(image) for image in add_noise(clean, seed=1)], add_noise) < 0.1
    boosted = [saved(image) for image in add_noise([local_contrast(c, 0.4) for c in clean], seed=1)]
    assert estimate_local_contrast(clean, boosted, add_noise) == pytest.approx(0.4, abs=0.15)  # measured: 0.51


def test_too_few_steps_leave_the_boost_unmeasured():
    flat = [np.full((40, 40, 3), 0.5, dtype=np.float32)] * 4
    assert np.isnan(estimate_local_contrast([half(name) for name in CLEAN], flat, list))


def test_the_local_contrast_boost_applies_after_the_sharpening_and_old_flows_load():
    images = torch.rand(1, 3, 32, 32)
    blur = ImageBlur()
    blur.load_sharpening(0.5)
    blur.load_local_contrast(0.4)
    sharpened = images + 0.5 * (images - gaussian_blur(images, SHARPEN_SIGMA))
    expected = sharpened + 0.4 * (sharpened - gaussian_blur(sharpened, LOCAL_CONTRAST_SIGMA))
    assert torch.allclose(blur(images), expected, atol=1e-6)
    again = ImageBlur()
    again.load_state_dict(blur.state_dict())
    assert again.boost == pytest.approx(0.4) and not again.is_identity
    flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    old = {name: value for name, value in flow.state_dict().items() if name != "image_blur.boost_amount"}
    flow.image_blur.load_local_contrast(0.5)
    flow.load_state_dict(old)  # a flow saved before the boost estimate: none, as it was trained
    assert flow.image_blur.boost == 0.0 and flow.prepare_clean(images) is images


@pytest.mark.parametrize(("boost", "setting"), [(0.0, "auto"), (0.6, "auto"), (0.6, False)])
def test_the_boost_is_logged_and_applied_where_clear(boost, setting):
    clean_hr = [real_photo(name) for name in CLEAN]  # x2 below: clean LR at half the photos' size
    real_lr = [saved(local_contrast(other_half(name), boost)) for name in COLOUR_OTHER]
    dataset = SimpleNamespace(clean_hr=SimpleNamespace(images=clean_hr), real_lr=SimpleNamespace(images=real_lr))
    flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    lines = "\n".join(estimate_image_degradations(flow, FlowModelConfig(image_local_contrast=setting), dataset, 2))
    if setting is False:
        assert flow.image_blur.boost == 0.0 and "not applied (model.image_local_contrast false)" in lines, lines
    elif boost:
        assert flow.image_blur.boost >= CLEAR_BOOST, lines
        assert (
            f"applied to samples (model.image_local_contrast auto: the real images are boosted by {CLEAR_BOOST}+"
            in lines
        )
    else:
        assert flow.image_blur.boost == 0.0 and "image local contrast 0.00" in lines, lines
        assert "not applied (model.image_local_contrast auto: the real images are not boosted" in lines


@pytest.mark.parametrize("real_blur", [0.0, 0.9])
def test_the_blur_applies_where_clearly_blurred_and_the_compression_wherever_found(real_blur):
    clean_hr = [real_photo(name) for name in CLEAN]  # x2 below: clean LR at half the photos' size
    real_lr = [jpeg(blurred(half(name), real_blur), 50) for name in ("camera", "coins", "brick", "gravel")]
    dataset = SimpleNamespace(clean_hr=SimpleNamespace(images=clean_hr), real_lr=SimpleNamespace(images=real_lr))

    def estimated(model: FlowModelConfig) -> tuple[DegradationFlow, str]:
        flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
        return flow, "\n".join(estimate_image_degradations(flow, model, dataset, scale=2))

    flow, lines = estimated(FlowModelConfig(image_compression="auto"))
    assert "image chroma blur not measured: too few colour edges" in lines  # grey photos
    if real_blur:
        assert 0.5 < flow.image_blur.sigma < 1.0 and flow.image_compression.is_estimated, lines
        # The JPEG round trip subsamples the samples' chroma itself: no chroma blur on top (grey photos here anyway).
        assert flow.image_blur.chroma_sigma == 0.0
        assert "applied to samples (model.image_blur auto: the real images are blurred" in lines
    else:  # as sharp as the clean set: the JPEG is found, and left out with the blur
        assert flow.image_blur.sigma == 0.0 and not flow.image_compression.is_estimated, lines
        assert "not applied (model.image_compression auto: the real images are not blurred" in lines
    flow, lines = estimated(FlowModelConfig())  # the defaults: the blur where clear, the JPEG wherever found
    assert (flow.image_blur.sigma > 0.5) == bool(real_blur) and flow.image_compression.is_estimated, lines
    assert "samples are compressed in that proportion, at those qualities (model.image_compression true)" in lines


@pytest.mark.parametrize("sigma", [0.8, 1.6])
def test_the_chroma_blur_of_other_scenes_is_found(sigma):
    clean = [half(name) for name in CLEAN]
    other = [other_half(name) for name in COLOUR_OTHER]
    as_they_are = estimate_chroma_blur(clean, other)
    estimate = estimate_chroma_blur(clean, [saved(chroma_blurred(image, sigma)) for image in other])
    # Three of these scenes were JPEGs, so their colour is a little softer to begin with (measured: 0.40 as
    # they are; 0.85 and 1.72 blurred by 0.8 and 1.6): the estimate errs a little high, never low.
    assert as_they_are < 0.5 and sigma <= estimate <= sigma + 0.3


def test_jpeg_chroma_subsampling_reads_as_a_chroma_blur():
    clean = [half(name) for name in CLEAN]
    other = [other_half(name) for name in COLOUR_OTHER]
    subsampled = estimate_chroma_blur(clean, [jpeg(image, 75) for image in other])
    full_chroma = estimate_chroma_blur(clean, [jpeg(image, 75, subsampling_420=False) for image in other])
    assert subsampled > 1.0 and full_chroma < 0.75, (subsampled, full_chroma)  # measured: 1.26, 0.59


def test_grey_images_have_no_chroma_blur_to_measure():
    grey = [half(name) for name in ("camera", "coins", "brick", "gravel")]
    assert np.isnan(estimate_chroma_blur([half(name) for name in CLEAN], grey))


def test_the_chroma_blur_keeps_luma_and_old_flows_load():
    images = image_to_tensor(half("coffee")[:48, :48])[None]
    blur = ImageBlur()
    blur.load_chroma_blur(1.2)
    assert not blur.is_identity
    softened = blur(images)
    luma = torch.from_numpy(RGB_TO_YCBCR).float()
    ycbcr, softened_ycbcr = (torch.einsum("ij,bjhw->bihw", luma, x) for x in (images, softened))
    assert torch.allclose(softened_ycbcr[:, 0], ycbcr[:, 0], atol=1e-5)  # the luma is untouched
    assert softened_ycbcr[:, 1:].diff(dim=-1).abs().mean() < 0.7 * ycbcr[:, 1:].diff(dim=-1).abs().mean()
    # The estimate's calibration (numpy, OpenCV) and the samples (torch) blur alike away from the borders.
    reference = chroma_blurred(images[0].permute(1, 2, 0).numpy(), 1.2)
    assert np.allclose(softened[0].permute(1, 2, 0).numpy()[8:-8, 8:-8], reference[8:-8, 8:-8], atol=1e-4)
    again = ImageBlur()
    again.load_state_dict(blur.state_dict())
    assert again.chroma_sigma == pytest.approx(1.2) and again.sigma == 0.0 and again.amount == 0.0
    flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    old = {name: value for name, value in flow.state_dict().items() if name != "image_blur.chroma_sigma_lr_px"}
    flow.image_blur.load_chroma_blur(0.9)
    flow.load_state_dict(old)  # a flow saved before the chroma estimate: none, as it was trained
    assert flow.image_blur.chroma_sigma == 0.0 and flow.prepare_clean(images) is images


def test_a_chroma_blur_for_uncompressed_samples_goes_to_those_the_jpeg_draw_leaves_alone():
    flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    flow.image_compression.load_estimate(JpegEstimate(qualities=[60], uncompressed=1, images=2))  # half and half
    flow.image_blur.load_chroma_blur(1.5, uncompressed_only=True)
    images = image_to_tensor(other_half("flower")[:48, :48])[None].repeat(8, 1, 1, 1)
    seeds = list(range(8))
    left_alone = torch.tensor([quality == 0 for quality in flow.image_compression.draw(seeds)])
    assert 0 < left_alone.sum() < 8  # both kinds among these seeds
    prepared = flow.prepare_clean(images, seeds)
    softened = (prepared - torch.round(images * 255) / 255).abs().flatten(1).amax(dim=1) > 0
    assert torch.equal(softened, left_alone)
    assert (flow.prepare_clean(images) != torch.round(images * 255) / 255).flatten(1).any(dim=1).all()  # no JPEG
    again = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    again.load_state_dict(flow.state_dict())
    assert again.image_blur.chroma_where_uncompressed and torch.equal(again.prepare_clean(images, seeds), prepared)
    old = {name: value for name, value in flow.state_dict().items() if "chroma_uncompressed_only" not in name}
    again.load_state_dict(old)  # a flow saved before this setting: the chroma blur on every sample, as it was
    assert not again.image_blur.chroma_where_uncompressed


@pytest.mark.parametrize("setting, real_blur", [("auto", 0.0), ("auto", 0.9), (None, 0.0)])
def test_the_chroma_blur_is_estimated_logged_and_applied_where_asked_and_samples_are_not_compressed(setting, real_blur):
    clean_hr = [real_photo(name) for name in CLEAN]  # x2 below: clean LR at half the photos' size
    real_lr = [jpeg(blurred(other_half(name), real_blur), 50) for name in COLOUR_OTHER]  # 4:2:0 chroma
    dataset = SimpleNamespace(clean_hr=SimpleNamespace(images=clean_hr), real_lr=SimpleNamespace(images=real_lr))
    flow = build_flow(FlowModelConfig(num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0))
    # The compression's old rule (auto: only with the blur), so that the sharp real images leave samples uncompressed.
    chroma = {} if setting is None else {"image_chroma_blur": setting}
    model = FlowModelConfig(image_compression="auto", **chroma)
    lines = "\n".join(estimate_image_degradations(flow, model, dataset, scale=2))
    if real_blur:  # clearly blurred: the samples are blurred and JPEG-compressed, which subsamples their chroma
        assert flow.image_compression.is_estimated and flow.image_blur.chroma_where_uncompressed, lines
        # Every real image here is a JPEG, so no sample is left uncompressed to take the chroma blur.
        assert "applied to the samples left uncompressed (0%) (model.image_chroma_blur auto" in lines
        return
    assert "image chroma blur 1." in lines, lines
    if setting == "auto":  # these sharp real images are not compressed in samples
        assert (
            flow.image_blur.chroma_sigma > 1.0
            and "applied to samples (model.image_chroma_blur auto: the samples" in lines
        )
    else:  # the default: measured and logged, not applied (it cost SR PSNR: README, fidelity)
        assert flow.image_blur.chroma_sigma == 0.0 and "not applied (model.image_chroma_blur false)" in lines


def test_the_faithful_config_applies_every_estimate_found():
    clean_hr = [real_photo(name) for name in CLEAN]  # x2 below: clean LR at half the photos' size
    real_lr = [jpeg(blurred(other_half(name), 0.2), 50) for name in COLOUR_OTHER]  # sharp-ish, 4:2:0 chroma
    dataset = SimpleNamespace(clean_hr=SimpleNamespace(images=clean_hr), real_lr=SimpleNamespace(images=real_lr))
    model = load_config(FlowConfig, "configs/deflow_faithful.yaml").model
    tiny = dataclasses.replace(model, num_levels=1, num_steps=1, hidden_channels=8, cond_channels=4, cond_blocks=0)
    flow = build_flow(tiny)
    lines = "\n".join(estimate_image_degradations(flow, model, dataset, scale=2))
    # deflow_light.yaml leaves all three out for real images this sharp (the tests above): this one applies them.
    assert flow.image_compression.is_estimated and "JPEG in 4 of 4" in lines, lines
    assert flow.image_blur.chroma_sigma > 1.0 and "applied to samples (model.image_chroma_blur true)" in lines
    assert "applied to samples (model.image_blur true)" in lines  # too little blur to change a pixel here
