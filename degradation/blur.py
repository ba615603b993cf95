"""Optical blur estimated from edges of unpaired clean and real LR images.

The flow learns the real domain's difference from the clean one in latent
space, and on a strongly blurred source (``blur_jpeg``: Gaussian blur of
1.2-2.4 HR pixels, JPEG 20-40) its samples kept too much detail: the
two-sample classifier told them from the real images 92% of the time. Blur
is the one degradation that is easy to measure without pairs, at strong
edges, so it is measured here and applied in the image, like the noise
(``degradation/noise.py``):

* at each strong edge (local maxima of the gradient magnitude of the luma
  after a Gaussian of 1 LR pixel, the top 10% and at least 0.02), the ratio
  of the raw gradient to the smoothed one: a sharp edge loses much of its
  gradient to the smoothing, a blurred one little;
* per edge orientation (4 bins, since camera shake and anisotropic optics
  blur one direction more), the median ratio of the real images is placed on
  the same statistic of the clean images blurred by a grid of Gaussians
  (0 to 2 LR pixels): the real images' blur beyond the clean ones', in LR
  pixels;
* the median over orientations is the estimate, 0 where the real images are
  as sharp as the clean ones.

The statistic changes little below about 0.3 LR pixels, so weak blur reads
as (nearly) none; there a Gaussian of that size changes an image by less
than its 8-bit rounding. Measured on the benchmarks (true blur in LR
pixels: the HR blur divided by the scale, on top of bicubic's own):
``blur_jpeg`` 0.48 (per orientation 0.41-0.54; the same statistic on the
oracle pairs, same scenes: 0.56-0.63), ``camera`` 0.16, ``grain`` 0.16,
``lowlight`` (none) 0.0, and 0.0 for an unblurred real set of other scenes.
Noise makes edges look sharper, so a noisy source's blur is underestimated,
and so is the blur of real scenes sharper than the clean ones (four bundled
photos blurred by 0.6 / 0.9 / 1.3 against four others: 0.46 / 0.67 / 0.97).

Samples blur the clean image by the estimate (rounded to 8 bits, as a saved
image would be) before the flow degrades it; the flow itself trains on the
unblurred clean images, as before. Measured on ``blur_jpeg`` (light flow,
2000 steps, T=1.0): training the flow on blurred clean images as well made
its latent shift learn less of the blur, and its samples ended up sharper
than with the blur at sampling alone (Frechet 9656 against 7522, classifier
72% against 43%; no blur: 10422 and 92%). The estimate errs low (below), and
what the flow learned of the blur from sharp clean images makes up part of
the rest.

It is off by default (``model.image_blur``): on ``blur_jpeg`` the SR network
trained on these more faithful samples scored *lower* (PSNR-Y 27.71 against
28.03 without the blur, 1000 steps, one seed), so it is an option to measure
on one's own data, and the estimate is logged at the start of every training.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import LUMA_WEIGHTS
from unpaired_sr.degradation.noise import spread_evenly

ORIENTATIONS = 4
SIGMA_GRID = np.round(np.arange(0.0, 2.01, 0.1), 2)  # LR pixels
EDGE_FRACTION = 0.1  # the strongest 10% of edge points
MIN_EDGE = 0.02  # gradient magnitude (per pixel, in [0, 1] units) below which a point is no edge
MIN_EDGES = 50  # per orientation: fewer and it is left out
# Per set: medians of thousands of edges need no more, and the calibration runs over the grid (21 times):
# 200 images of 480x480 took 26 s here; capped at 48 of each set, 9 s.
MAX_IMAGES = 48


def _edge_ratios(image: np.ndarray, sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Raw / smoothed gradient at the strong edges of one image (after an optional blur): ratios, orientation bins."""
    luma = (np.asarray(image, dtype=np.float32) @ LUMA_WEIGHTS.astype(np.float32)).astype(np.float32)
    if sigma > 0:
        luma = cv2.GaussianBlur(luma, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    smooth = cv2.GaussianBlur(luma, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)

    def gradient(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx = cv2.Sobel(plane, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT_101)
        gy = cv2.Sobel(plane, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT_101)
        return gx, gy

    raw = np.hypot(*gradient(luma))
    sx, sy = gradient(smooth)
    smoothed = np.hypot(sx, sy)
    inner = np.zeros_like(smoothed, dtype=bool)
    inner[4:-4, 4:-4] = True  # away from the borders the filters mirror
    if not inner.any():
        return np.zeros(0), np.zeros(0, dtype=int)
    peaks = (smoothed >= cv2.dilate(smoothed, np.ones((3, 3), np.uint8))) & inner
    threshold = max(np.quantile(smoothed[inner], 1 - EDGE_FRACTION), MIN_EDGE)
    edges = peaks & (smoothed > threshold)
    angle = np.mod(np.arctan2(sy[edges], sx[edges]), np.pi)
    bins = (angle / np.pi * ORIENTATIONS + 0.5).astype(int) % ORIENTATIONS
    return raw[edges] / smoothed[edges], bins


def _median_ratios(images: list[np.ndarray], sigma: float = 0.0) -> np.ndarray:
    """(ORIENTATIONS,) median edge ratio per orientation over ``images`` (NaN where too few edges)."""
    ratios, bins = zip(*(_edge_ratios(image, sigma) for image in images))
    ratios, bins = np.concatenate(ratios), np.concatenate(bins)
    return np.array(
        [np.median(ratios[bins == k]) if (bins == k).sum() >= MIN_EDGES else np.nan for k in range(ORIENTATIONS)]
    )


def estimate_blur(clean_lr: list[np.ndarray], real_lr: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """The real images' Gaussian blur beyond the clean ones', in LR pixels, and its value per orientation.

    Args:
        clean_lr, real_lr: (H, W, 3) float images in [0, 1], unpaired.
    """
    clean_lr, real_lr = spread_evenly(clean_lr, MAX_IMAGES), spread_evenly(real_lr, MAX_IMAGES)
    calibration = np.stack([_median_ratios(clean_lr, sigma) for sigma in SIGMA_GRID])  # falls as sigma grows
    real = _median_ratios(real_lr)
    per_orientation = np.full(ORIENTATIONS, np.nan)
    for k in range(ORIENTATIONS):
        if np.isfinite(real[k]) and np.isfinite(calibration[:, k]).all():
            # np.interp wants increasing x: the ratio falls with sigma, so both are negated.
            per_orientation[k] = np.interp(-real[k], -calibration[:, k], SIGMA_GRID)
    if not np.isfinite(per_orientation).any():
        return 0.0, per_orientation
    return float(np.nanmedian(per_orientation)), per_orientation


class ImageBlur(nn.Module):
    """A Gaussian blur of the estimated size (``estimate_blur``); the identity until one is loaded."""

    def __init__(self):
        super().__init__()
        self.register_buffer("sigma_lr_px", torch.zeros(()))
        # The size kept on the host too: the blur's kernel is built from it on every call.
        self.sigma = 0.0
        self.register_load_state_dict_post_hook(ImageBlur._note_sigma)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Flows saved before the blur estimate have none: they keep degrading as they were trained.
        state_dict.setdefault(prefix + "sigma_lr_px", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _note_sigma(module: ImageBlur, incompatible_keys) -> None:
        module.sigma = float(module.sigma_lr_px)

    def load_estimate(self, sigma: float) -> None:
        self.sigma_lr_px.fill_(sigma)
        self.sigma = float(sigma)

    def forward(self, clean_lr: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(clean_lr, self.sigma) if self.sigma > 0 else clean_lr
