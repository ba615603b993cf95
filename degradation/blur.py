"""Optical blur and in-camera sharpening, estimated from edges of unpaired clean and real LR images.

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

By default (``model.image_blur: auto``) it is applied, with the image
compression, only where the real images are *clearly* blurred: by
``CLEAR_BLUR`` (0.3 LR px) or more at every edge orientation. Measured with
SR (README: the SR section): alone, on ``blur_jpeg``, the blur cost 0.28 dB
PSNR-Y (1000 steps, one seed); with the compression, on the clean image plus
the image noise (the shipped samples), SR gained 0.21 dB on the defocused
``webcam`` (0.54-0.64 by orientation) and lost 0.07-0.11 dB on ``camera``,
``lowlight`` and ``film``, whose least orientation reads 0.00 (their
median 0.00-0.35). The estimate is logged at the start of every training.

Sharpening is the other side of the same statistic: a camera or a player
that sharpens makes edges steeper than the clean images' (``stream``: the
edge ratio 2.16-2.24 against the clean images' 1.95-2.06). Noise does too,
so the amount is read off clean images sharpened by a grid of unsharp masks
(radius 1 LR px) *with the estimated image noise added* (four draws of it:
over single draws ``stream`` read 0.31-0.51), and, since the
statistic of two unpaired sets of other scenes differs by orientation by up
to the effect itself (``grain``'s real set reads 0.67 in one orientation and
0 in two), the estimate is the least amount over the orientations: only a
set that is sharper at every orientation counts as sharpened. Measured on
the benchmarks: ``stream`` 0.39 (0.39-1.26 by orientation; its player
sharpens by 0.3-0.6 at radius 0.8 after a softening bilinear downscale), 0
on ``camera``, ``grain``, ``lowlight``, ``blur_jpeg`` and ``handheld`` (whose
sharpening undoes its camera shake at the edges). Unlike the blur, SR
profits: an SR network that never saw sharpened inputs sharpens them again
(README: fidelity), so it is on by default (``model.image_sharpening``).

Colour is softened more than luma by most sources: JPEG's 4:2:0 chroma
subsampling and coarse chroma quantization, a phone's chroma noise
reduction, demosaicing. ``estimate_chroma_blur`` reads it with the same edge
statistic on the Cb-Cr plane (orientations pooled), against the clean images
as samples start from (blurred and sharpened as estimated), and samples blur
their Cb and Cr by it, luma untouched. Measured on the benchmarks (light
flow, T=1.0): 0.88-1.97 LR px on the seven whose samples are not compressed,
where the samples' residual is too luma-heavy (0.61-0.94 against the real
0.42-0.80); with it the Frechet distance fell 13-55% on all seven and the
two-sample classifier fell on all seven (``camera`` 91% -> 76%). Where
samples are JPEG-compressed (the round trip subsamples their chroma itself)
``model.image_chroma_blur: auto`` leaves it out. It is off by default: SR
trained on such samples lost 0.03-0.14 dB PSNR-Y on the four benchmarks
measured (README: fidelity).

A phone's local tone mapping (HDR) boosts the detail above a local mean:
``image + a * (image - Gaussian(image, 4 LR px))``. The detail, the noise and
a halo beside every large edge grow. ``estimate_local_contrast`` reads it at
isolated straight steps (an edge between two flat areas in focus, read on
the profile across it averaged over 7 rows along it): a boost lifts the
bright side 2-5 px out and sinks the dark side, a lens, scenes and noise
hardly do. The median overshoot of the real steps is placed on the clean
images (as samples start from) boosted by a grid of amounts, with the image
noise added. Measured (light config's estimates, no training): ``hdrphone``,
whose boost above a Gaussian of 3-6 LR px is 0.25-0.45 in its highlights up
to 1-1.8 in its shadows, reads 0.39; the thirty-one other benchmark sets
(two of them second photo splits) read 0.00-0.02; four grey photos of
high-contrast scenes against four colour ones read 0.23 (tests), the largest
reading without a boost seen, so samples are boosted only from
``CLEAR_BOOST`` (0.25) up (``model.image_local_contrast: auto``). Two other
statistics failed unpaired: the gradient ratio at coarse edges and isolated
steps without the sharp core read the content difference of two photo sets
as a boost or a glare (README: fidelity, thirty-sixth round). Glare (a
negative amount: a toy lens's veil) is not read: soft or defocused real
scenes read as glare as strongly as the real glare does (``camera`` -0.33,
``toycam`` -0.34), and a wrong amount of either sign cost SR 0.7-0.8 dB on
``grain``.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import LUMA_WEIGHTS, RGB_TO_YCBCR
from unpaired_sr.degradation.noise import spread_evenly

ORIENTATIONS = 4
SIGMA_GRID = np.round(np.arange(0.0, 2.01, 0.1), 2)  # LR pixels
EDGE_FRACTION = 0.1  # the strongest 10% of edge points
MIN_EDGE = 0.02  # gradient magnitude (per pixel, in [0, 1] units) below which a point is no edge
MIN_EDGES = 50  # per orientation: fewer and it is left out
# Per set: medians of thousands of edges need no more, and the calibration runs over the grid (21 times):
# 200 images of 480x480 took 26 s here; capped at 48 of each set, 9 s.
MAX_IMAGES = 48


def _gradient(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference x and y gradients of an (H, W) or (H, W, C) float32 array."""
    gx = cv2.Sobel(planes, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(planes, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT_101)
    return gx, gy


def _strong_edges(smoothed: np.ndarray, min_edge: float) -> np.ndarray | None:
    """(H, W) bool: local maxima of the smoothed gradient magnitude in its top ``EDGE_FRACTION`` and above
    ``min_edge``, away from the borders the filters mirror; None for an image too small to have such points."""
    inner = np.zeros_like(smoothed, dtype=bool)
    inner[4:-4, 4:-4] = True
    if not inner.any():
        return None
    peaks = (smoothed >= cv2.dilate(smoothed, np.ones((3, 3), np.uint8))) & inner
    return peaks & (smoothed > max(np.quantile(smoothed[inner], 1 - EDGE_FRACTION), min_edge))


def _edge_ratios(image: np.ndarray, sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Raw / smoothed gradient at the strong edges of one image (after an optional blur): ratios, orientation bins."""
    luma = (np.asarray(image, dtype=np.float32) @ LUMA_WEIGHTS.astype(np.float32)).astype(np.float32)
    if sigma > 0:
        luma = cv2.GaussianBlur(luma, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    smooth = cv2.GaussianBlur(luma, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)
    raw = np.hypot(*_gradient(luma))
    sx, sy = _gradient(smooth)
    smoothed = np.hypot(sx, sy)
    edges = _strong_edges(smoothed, MIN_EDGE)
    if edges is None:
        return np.zeros(0), np.zeros(0, dtype=int)
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


def _read_off(real: np.ndarray, calibration: np.ndarray, grid: np.ndarray, falling: bool) -> np.ndarray:
    """(ORIENTATIONS,) the grid value at which each orientation's calibrated statistic meets the real one.

    ``calibration`` (len(grid), ORIENTATIONS) is the statistic of the clean images processed at each
    grid value, falling or rising with it; beyond its ends the end values; NaN where either is missing.
    """
    sign = -1.0 if falling else 1.0  # np.interp wants increasing x
    per_orientation = np.full(ORIENTATIONS, np.nan)
    for k in range(ORIENTATIONS):
        if np.isfinite(real[k]) and np.isfinite(calibration[:, k]).all():
            per_orientation[k] = np.interp(sign * real[k], sign * calibration[:, k], grid)
    return per_orientation


def estimate_blur(clean_lr: list[np.ndarray], real_lr: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """The real images' Gaussian blur beyond the clean ones', in LR pixels, and its value per orientation.

    Args:
        clean_lr, real_lr: (H, W, 3) float images in [0, 1], unpaired.
    """
    clean_lr, real_lr = spread_evenly(clean_lr, MAX_IMAGES), spread_evenly(real_lr, MAX_IMAGES)
    calibration = np.stack([_median_ratios(clean_lr, sigma) for sigma in SIGMA_GRID])  # falls as sigma grows
    per_orientation = _read_off(_median_ratios(real_lr), calibration, SIGMA_GRID, falling=True)
    if not np.isfinite(per_orientation).any():
        return 0.0, per_orientation
    return float(np.nanmedian(per_orientation)), per_orientation


# LR pixels: the blur at which the edge statistic starts to move (below it a Gaussian changes an image by
# about its 8-bit rounding), so a set blurred by this much at *every* orientation is blurred for certain.
CLEAR_BLUR = 0.3


def clearly_blurred(per_orientation: np.ndarray) -> bool:
    """Whether ``estimate_blur``'s per-orientation values all reach ``CLEAR_BLUR`` (NaN: not measured, left out).

    The least over the orientations, as for the sharpening: two unpaired sets of
    other scenes differ by orientation by up to 0.35 LR px (``camera``'s real set
    reads 0.00 / 0.31 / 0.00 / 0.35 for a true blur of 0.15-0.25), while a
    blurred source reads high at every orientation (``webcam``: 0.54-0.64).
    """
    measured = per_orientation[np.isfinite(per_orientation)]
    return measured.size > 0 and float(measured.min()) >= CLEAR_BLUR


def _saved(images: list[np.ndarray]) -> list[np.ndarray]:
    """``images`` clipped to [0, 1] and rounded to 8 bits, as a saved image would be (the calibrations' grids)."""
    return [np.round(np.clip(image, 0, 1) * 255) / 255 for image in images]


SHARPEN_SIGMA = 1.0  # LR pixels: the unsharp mask's radius, a common in-camera one
AMOUNT_GRID = np.round(np.arange(0.0, 1.51, 0.1), 2)


def unsharp_mask(image: np.ndarray, amount: float) -> np.ndarray:
    """``image + amount * (image - Gaussian(image))``: what in-camera sharpening does, halos included."""
    if amount == 0:
        return image
    smooth = cv2.GaussianBlur(image, (0, 0), SHARPEN_SIGMA, borderType=cv2.BORDER_REFLECT_101)
    return image + amount * (image - smooth)


def estimate_sharpening(
    clean_lr: list[np.ndarray], real_lr: list[np.ndarray], add_noise: Callable[[list[np.ndarray]], list[np.ndarray]]
) -> tuple[float, np.ndarray]:
    """The unsharp-mask amount that the real images show beyond the clean ones, and its value per orientation.

    The same edge statistic as ``estimate_blur``, placed on the clean images
    sharpened by a grid of amounts, with the estimated image noise added
    (``add_noise``: a list of images in, the same with noise out), since
    noise alone makes edges look sharper. Sharpening is isotropic while
    scenes are not: the two unpaired sets' edges differ by orientation as
    much as by +-0.1 in the statistic (measured on the benchmarks, same
    degradation, other scenes), so the estimate is the *smallest* amount over
    the orientations, 0 unless the real images are sharper in every one.

    Args:
        clean_lr, real_lr: (H, W, 3) float images in [0, 1], unpaired.
        add_noise: adds the real domain's estimated noise to clean images (identity: no noise known).
    """
    clean_lr, real_lr = spread_evenly(clean_lr, MAX_IMAGES), spread_evenly(real_lr, MAX_IMAGES)
    calibration = np.stack(
        [_median_ratios(_saved(add_noise([unsharp_mask(image, a) for image in clean_lr]))) for a in AMOUNT_GRID]
    )  # rises with the amount
    per_orientation = _read_off(_median_ratios(real_lr), calibration, AMOUNT_GRID, falling=False)
    if not np.isfinite(per_orientation).any():
        return 0.0, per_orientation
    return float(np.nanmin(per_orientation)), per_orientation


LOCAL_CONTRAST_SIGMA = 4.0  # LR pixels: the local mean a tone mapper boosts the detail above
BOOST_GRID = np.round(np.arange(0.0, 1.51, 0.1), 2)
# The least boost applied: unpaired sets without one read at most 0.02 on the benchmarks, but four grey photos
# of high-contrast scenes against four colour ones 0.23 (tests); hdrphone's boost of 0.3-1.8 reads 0.39.
CLEAR_BOOST = 0.25
MIN_STEPS = 30  # isolated steps per set: fewer and the boost is not measured
STEP_REACH = 9  # LR px: the profile across a step is read this far each side
STEP_WIDTH = 3  # LR px: and this far each side along the edge (7 rows averaged)
MIN_STEP = 0.04  # the least step height (8-bit levels / 255) counted


def local_contrast(image: np.ndarray, amount: float) -> np.ndarray:
    """``image + amount * (image - Gaussian(image, LOCAL_CONTRAST_SIGMA))``: a local tone mapper's detail boost
    (``amount`` > 0): detail and noise grow, and a halo of a few pixels follows every large edge."""
    if amount == 0:
        return image
    local_mean = cv2.GaussianBlur(image, (0, 0), LOCAL_CONTRAST_SIGMA, borderType=cv2.BORDER_REPLICATE)
    return image + amount * (image - local_mean)


def _step_overshoots(image: np.ndarray) -> np.ndarray:
    """The overshoot beside each isolated straight step of one image, as a fraction of the step's height.

    A step is a local maximum of the luma gradient (after a Gaussian of 2 px) whose profile across the edge,
    averaged over 7 rows along it (noise down by about 2.6x), is flat at both ends (levels within 10% of the
    step), has the same height all along the edge (within 10%) and a sharp core (40% of the step within
    +-1 px): an edge between two flat areas in focus. A boost above a local mean lifts the bright side just
    beside it and sinks the dark side (2-5 px out); a sharp or blurred lens, scenes and noise hardly do.
    """
    luma = (np.asarray(image, dtype=np.float32) @ LUMA_WEIGHTS.astype(np.float32)).astype(np.float32)
    gx, gy = _gradient(cv2.GaussianBlur(luma, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT_101))
    luma = cv2.GaussianBlur(luma, (0, 0), 0.7, borderType=cv2.BORDER_REFLECT_101)  # the profile's own noise
    magnitude, angle = np.hypot(gx, gy), np.arctan2(gy, gx)
    height, width = luma.shape
    margin = STEP_REACH + STEP_WIDTH
    if height <= 2 * margin or width <= 2 * margin:
        return np.zeros(0)
    rows, cols = np.mgrid[0:height, 0:width]
    step_x, step_y = np.rint(np.cos(angle)).astype(int), np.rint(np.sin(angle)).astype(int)
    ahead = magnitude[np.clip(rows + step_y, 0, height - 1), np.clip(cols + step_x, 0, width - 1)]
    behind = magnitude[np.clip(rows - step_y, 0, height - 1), np.clip(cols - step_x, 0, width - 1)]
    inner = np.zeros_like(magnitude, dtype=bool)
    inner[margin:-margin, margin:-margin] = True
    ys, xs = np.nonzero((magnitude >= ahead) & (magnitude >= behind) & inner & (magnitude > MIN_EDGE / 2))
    if len(ys) == 0:
        return np.zeros(0)
    across = np.arange(-STEP_REACH, STEP_REACH + 1, dtype=np.float32)
    along = np.arange(-STEP_WIDTH, STEP_WIDTH + 1, dtype=np.float32)
    normal_x, normal_y = np.cos(angle[ys, xs])[:, None, None], np.sin(angle[ys, xs])[:, None, None]
    map_x = xs[:, None, None] + across * normal_x - along[:, None] * normal_y
    map_y = ys[:, None, None] + across * normal_y + along[:, None] * normal_x
    grid = cv2.remap(
        luma,
        map_x.reshape(len(ys), -1).astype(np.float32),
        map_y.reshape(len(ys), -1).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    ).reshape(map_x.shape)  # (steps, along, across)
    profile = grid.mean(axis=1)
    low, high = profile[:, :3].mean(axis=1), profile[:, -3:].mean(axis=1)
    step = high - low
    flat = np.maximum(profile[:, :4].std(axis=1), profile[:, -4:].std(axis=1))
    consistency = (grid[:, :, -4:].mean(axis=2) - grid[:, :, :4].mean(axis=2)).std(axis=1)
    core = profile[:, STEP_REACH + 1] - profile[:, STEP_REACH - 1]
    isolated = (step > MIN_STEP) & (flat < 0.1 * step) & (consistency < 0.1 * step) & (core > 0.4 * step)
    relative = (profile[isolated] - low[isolated, None]) / step[isolated, None]
    beside_high = relative[:, (across >= 2) & (across <= 5)].mean(axis=1) - 1
    beside_low = -relative[:, (across >= -5) & (across <= -2)].mean(axis=1)
    return beside_high + beside_low


def _median_overshoot(images: list[np.ndarray]) -> float:
    overshoots = np.concatenate([_step_overshoots(image) for image in images])
    return float(np.median(overshoots)) if len(overshoots) >= MIN_STEPS else np.nan


def estimate_local_contrast(
    clean_lr: list[np.ndarray], real_lr: list[np.ndarray], add_noise: Callable[[list[np.ndarray]], list[np.ndarray]]
) -> float:
    """The detail boost above a local mean (``local_contrast``'s amount) that the real images show beyond the
    clean ones; NaN where either set has too few isolated steps.

    The overshoot beside isolated steps (``_step_overshoots``), read off the clean images boosted by a grid of
    amounts with the estimated image noise added; 0 where the real images overshoot no more than the clean
    ones. Glare (a negative amount) is not read: the statistic mistakes soft or out-of-focus real scenes for
    it (module notes).

    Args:
        clean_lr: (H, W, 3) float images in [0, 1], as samples start from (blurred and sharpened as estimated).
        real_lr: (H, W, 3) float images in [0, 1], unpaired.
        add_noise: adds the real domain's estimated noise to clean images (identity: no noise known).
    """
    clean_lr, real_lr = spread_evenly(clean_lr, MAX_IMAGES), spread_evenly(real_lr, MAX_IMAGES)
    real = _median_overshoot(real_lr)
    calibration = np.array(
        [_median_overshoot(_saved(add_noise(_saved([local_contrast(c, a) for c in clean_lr])))) for a in BOOST_GRID]
    )  # rises with the amount
    if not np.isfinite(real) or not np.isfinite(calibration).all():
        return np.nan
    return float(np.interp(real, np.maximum.accumulate(calibration), BOOST_GRID))


YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)  # exact: the chroma blur keeps Y exactly
CHROMA_MIN_EDGE = 0.01  # chroma gradients are weaker than luma ones: half MIN_EDGE


def _chroma(image: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32: the Cb and Cr planes of an (H, W, 3) RGB image."""
    return (np.asarray(image, dtype=np.float32) @ RGB_TO_YCBCR[1:].T.astype(np.float32)).astype(np.float32)


def chroma_blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    """An (H, W, 3) image with its Cb and Cr planes blurred by a Gaussian of ``sigma`` px, its luma kept."""
    if sigma == 0:
        return image
    chroma = _chroma(image)
    softened = cv2.GaussianBlur(chroma, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return image + (softened - chroma) @ YCBCR_TO_RGB[:, 1:].T.astype(np.float32)


def _chroma_edge_ratios(image: np.ndarray) -> np.ndarray:
    """Raw / smoothed gradient of the Cb-Cr plane at its strongest edges (``_edge_ratios`` on chroma)."""
    chroma = _chroma(image)
    smooth = cv2.GaussianBlur(chroma, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)
    raw, smoothed = (np.sqrt(sum((g**2).sum(axis=2) for g in _gradient(planes))) for planes in (chroma, smooth))
    edges = _strong_edges(smoothed, CHROMA_MIN_EDGE)
    return np.zeros(0) if edges is None else raw[edges] / smoothed[edges]


def _chroma_median_ratio(images: list[np.ndarray]) -> float:
    ratios = np.concatenate([_chroma_edge_ratios(image) for image in images])
    return float(np.median(ratios)) if len(ratios) >= MIN_EDGES else np.nan


def estimate_chroma_blur(clean_lr: list[np.ndarray], real_lr: list[np.ndarray]) -> float:
    """How much softer the real images' colour is than the clean ones': a Gaussian sigma on Cb and Cr, LR px.

    The edge statistic of ``estimate_blur`` on the colour-difference planes,
    read off the clean images with their chroma blurred by a grid of Gaussians
    (their luma untouched). All orientations are pooled: colour edges are
    fewer than luma ones, and what softens colour (chroma subsampling and
    the coarse chroma quantization of JPEG, a phone's chroma noise
    reduction, demosaicing) is isotropic. 0 where the real colour is as sharp
    as the clean one, NaN where either set has too few colour edges; the grid
    ends at 2 LR px. Noise makes edges look sharper, so on a noisy source the
    estimate errs low, as the luma blur's does.

    Args:
        clean_lr: (H, W, 3) float images in [0, 1], as samples start from (the image blur and
            sharpening applied, if any).
        real_lr: (H, W, 3) float images in [0, 1], unpaired.
    """
    clean_lr, real_lr = spread_evenly(clean_lr, MAX_IMAGES), spread_evenly(real_lr, MAX_IMAGES)
    real = _chroma_median_ratio(real_lr)
    calibration = np.array(
        [_chroma_median_ratio(_saved([chroma_blurred(c, s) for c in clean_lr])) for s in SIGMA_GRID]
    )  # falls as sigma grows
    if not np.isfinite(real) or not np.isfinite(calibration).all():
        return np.nan
    return float(np.interp(-real, -calibration, SIGMA_GRID))


class ImageBlur(nn.Module):
    """The estimated Gaussian blur (``estimate_blur``), unsharp mask (``estimate_sharpening``), local contrast
    boost (``estimate_local_contrast``) and chroma blur (``estimate_chroma_blur``) of clean images.

    The identity until an estimate is loaded; applied in that order.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("sigma_lr_px", torch.zeros(()))
        self.register_buffer("sharpen_amount", torch.zeros(()))
        self.register_buffer("boost_amount", torch.zeros(()))
        self.register_buffer("chroma_sigma_lr_px", torch.zeros(()))
        # 1: the chroma blur goes only to samples that their JPEG leaves uncompressed (its subsampling softens the
        # others' colour itself); the sampler says which (``chroma_mask``).
        self.register_buffer("chroma_uncompressed_only", torch.zeros(()))
        self.register_buffer("ycbcr", torch.from_numpy(RGB_TO_YCBCR).float(), persistent=False)
        self.register_buffer("ycbcr_inverse", torch.from_numpy(YCBCR_TO_RGB).float(), persistent=False)
        # All kept on the host too: the kernels are built from them on every call.
        self.sigma = 0.0
        self.amount = 0.0
        self.boost = 0.0
        self.chroma_sigma = 0.0
        self.chroma_where_uncompressed = False
        self.register_load_state_dict_post_hook(ImageBlur._note_estimates)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Flows saved before these estimates have none: they keep degrading as they were trained.
        state_dict.setdefault(prefix + "sigma_lr_px", torch.zeros(()))
        state_dict.setdefault(prefix + "sharpen_amount", torch.zeros(()))
        state_dict.setdefault(prefix + "boost_amount", torch.zeros(()))
        state_dict.setdefault(prefix + "chroma_sigma_lr_px", torch.zeros(()))
        state_dict.setdefault(prefix + "chroma_uncompressed_only", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _note_estimates(module: ImageBlur, incompatible_keys) -> None:
        module.sigma = float(module.sigma_lr_px)
        module.amount = float(module.sharpen_amount)
        module.boost = float(module.boost_amount)
        module.chroma_sigma = float(module.chroma_sigma_lr_px)
        module.chroma_where_uncompressed = bool(module.chroma_uncompressed_only)

    @property
    def is_identity(self) -> bool:
        return self.sigma == 0 and self.amount == 0 and self.boost == 0 and self.chroma_sigma == 0

    def load_estimate(self, sigma: float) -> None:
        self.sigma_lr_px.fill_(sigma)
        self.sigma = float(sigma)

    def load_sharpening(self, amount: float) -> None:
        self.sharpen_amount.fill_(amount)
        self.amount = float(amount)

    def load_local_contrast(self, amount: float) -> None:
        self.boost_amount.fill_(amount)
        self.boost = float(amount)

    def load_chroma_blur(self, sigma: float, uncompressed_only: bool = False) -> None:
        self.chroma_sigma_lr_px.fill_(sigma)
        self.chroma_uncompressed_only.fill_(float(uncompressed_only))
        self.chroma_sigma = float(sigma)
        self.chroma_where_uncompressed = uncompressed_only

    def forward(self, clean_lr: torch.Tensor, chroma_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``chroma_mask`` (B,) bool: which images get the chroma blur (None: all)."""
        if self.sigma > 0:
            clean_lr = gaussian_blur(clean_lr, self.sigma)
        if self.amount > 0:
            clean_lr = clean_lr + self.amount * (clean_lr - gaussian_blur(clean_lr, SHARPEN_SIGMA))
        if self.boost > 0:
            clean_lr = clean_lr + self.boost * (clean_lr - gaussian_blur(clean_lr, LOCAL_CONTRAST_SIGMA))
        if self.chroma_sigma > 0:
            ycbcr = torch.einsum("ij,bjhw->bihw", self.ycbcr.to(clean_lr.dtype), clean_lr)
            softened = torch.cat([ycbcr[:, :1], gaussian_blur(ycbcr[:, 1:], self.chroma_sigma)], dim=1)
            softened = torch.einsum("ij,bjhw->bihw", self.ycbcr_inverse.to(clean_lr.dtype), softened)
            if chroma_mask is None:
                clean_lr = softened
            else:
                clean_lr = torch.where(chroma_mask.to(clean_lr.device).view(-1, 1, 1, 1), softened, clean_lr)
        return clean_lr
