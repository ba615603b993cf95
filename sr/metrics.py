"""PSNR and SSIM with the conventions SR papers report (those of BasicSR's ``psnr_ssim.py``).

* Images are RGB in [0, 1] (float) or 0-255 (uint8), compared in float64 on a 0-255 scale.
* ``crop_border`` pixels are removed at every border first (usually the scale).
* ``y_channel=True`` compares BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
  (RGB in [0, 1]), the default of most papers; otherwise every RGB channel.
* SSIM uses an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  over the valid region only, averaged over channels.
"""

from __future__ import annotations

import cv2
import numpy as np

SSIM_MIN_SIZE = 11  # the Gaussian window (sigma 1.5) needs this many pixels each way


def _as_255(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float64)
    return image.astype(np.float64) * 255.0


def rgb_to_y(image_255: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] from RGB on a 0-255 scale, shape (H, W, 1)."""
    weights = np.array([65.481, 128.553, 24.966]) / 255.0
    return (image_255 @ weights + 16.0)[:, :, None]


def prepare(image: np.ndarray, crop_border: int, y_channel: bool) -> np.ndarray:
    """Float64 on 0-255, cropped, optionally luma: what the metrics compare."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    image = _as_255(image)
    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
    return rgb_to_y(image) if y_channel else image


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    _check_pair(sr, hr)
    a, b = prepare(sr, crop_border, y_channel), prepare(hr, crop_border, y_channel)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = kernel @ kernel.T
    filtered = lambda x: cv2.filter2D(x, -1, window)[5:-5, 5:-5]  # valid region only
    mu_a, mu_b = filtered(a), filtered(b)
    var_a = filtered(a * a) - mu_a**2
    var_b = filtered(b * b) - mu_b**2
    cov = filtered(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """Structural similarity (1 for identical images), averaged over channels."""
    _check_pair(sr, hr)
    a, b = prepare(sr, crop_border, y_channel), prepare(hr, crop_border, y_channel)
    if min(a.shape[:2]) < SSIM_MIN_SIZE:
        raise ValueError(
            f"SSIM needs at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels after cropping, got {a.shape[1]}x{a.shape[0]}"
        )
    return float(np.mean([_ssim_channel(a[:, :, c], b[:, :, c]) for c in range(a.shape[2])]))
