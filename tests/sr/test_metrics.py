"""PSNR/SSIM against scikit-image on real photos, hand-computed values, and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.conftest import real_photo
from unpaired_sr.common.matlab_resize import imresize
from unpaired_sr.data_tools.degrade_classical import degrade, image_rng
from unpaired_sr.sr.metrics import prepare, psnr, ssim


def restored_pair(name: str):
    hr = real_photo(name)[:120, :160]
    lr = degrade(hr, 4, "noise_jpeg", image_rng(0, name))
    return np.clip(imresize(lr, 4), 0, 1), hr


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("y_channel", [True, False])
def test_agrees_with_scikit_image(name, y_channel):
    sr, hr = restored_pair(name)
    a, b = prepare(sr, 4, y_channel), prepare(hr, 4, y_channel)
    expected_psnr = peak_signal_noise_ratio(b, a, data_range=255)
    assert psnr(sr, hr, crop_border=4, y_channel=y_channel) == pytest.approx(expected_psnr, abs=1e-6)
    expected_ssim = structural_similarity(
        b, a, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(sr, hr, crop_border=4, y_channel=y_channel) == pytest.approx(expected_ssim, abs=1e-4)


def test_identical_images():
    image = real_photo("rocket", 64)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_hand_computed_psnr():
    hr = np.zeros((20, 20, 3), np.uint8)
    sr = hr.copy()
    sr[:10] = 10  # half the pixels off by 10 in every channel: MSE = 50 on RGB
    assert psnr(sr, hr, y_channel=False) == pytest.approx(10 * math.log10(255**2 / 50), abs=1e-12)
    # On Y, a gray offset of 10 (0-255) moves luma by 10 * (65.481 + 128.553 + 24.966) / 255 = 8.588...
    y_offset = 10 * (65.481 + 128.553 + 24.966) / 255
    assert psnr(sr, hr, y_channel=True) == pytest.approx(10 * math.log10(255**2 / (y_offset**2 / 2)), abs=1e-9)
    # The border crop removes exactly crop_border pixels from each side: differences in that frame do not count.
    framed = hr.copy()
    framed[:4], framed[-4:], framed[:, :4], framed[:, -4:] = 50, 50, 50, 50
    assert psnr(framed, hr, crop_border=4) == math.inf and ssim(framed, hr, crop_border=4) == pytest.approx(1.0)
    assert psnr(framed, hr, crop_border=3) < 30 and ssim(framed, hr, crop_border=3) < 1
    one_pixel = hr.copy()
    one_pixel[15, 4] = 10  # 4 from the left, 4 from the bottom (20 - 15 - 1)
    assert psnr(one_pixel, hr, crop_border=4, y_channel=False) < math.inf
    assert psnr(one_pixel, hr, crop_border=5, y_channel=False) == math.inf


def test_mismatched_and_small_inputs_raise():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((12, 12, 3)), np.zeros((12, 12, 3)), crop_border=2)
    with pytest.raises(ValueError, match="RGB"):
        psnr(np.zeros((8, 8)), np.zeros((8, 8)))
