"""Aliasing: a source that samples its sensor without an anti-alias filter, estimated from unpaired images.

A camera that reads out every ``scale``-th pixel (a dashcam keeping its frame
rate, one field of an interlaced frame, a player's bilinear scaling) skips the
low-pass filter that a proper downscale applies first. Detail finer than the
LR grid then folds back into it: edges look jagged, fine texture turns into
moire, and the image holds *more* energy near the Nyquist frequency than a
bicubic downscale of the same scene. Sharpening cannot make that: it raises
the mid frequencies as well, and it cannot recreate detail that the bicubic
downscale has already removed. Samples of such a source therefore start from
the HR image itself: a light Gaussian (``sigma`` LR px; the optics and the
pixel's area) and point sampling at the LR pixel centres that bicubic uses
(``decimate``), instead of the bicubic clean LR.

The statistic, for a set of LR images: the log10 ratio of the luma's power in
a high band (0.42-0.5 cycles per pixel) to that in a mid band (0.25-0.35),
averaged over 32x32 Hann-windowed tiles. The real images' value is compared
with the clean ones' (bicubic, with the estimated image noise added and
rounded to 8 bits, since noise raises the high band too), and the excess is
read off the same clean photos decimated after a grid of Gaussians (and the
same noise). Measured here on the eleven benchmarks (x4; the excess, log10):
``dashcam`` (point sampling after 0.3-0.6 HR px) +0.28, read as 0.15 LR px;
``stream`` (a bilinear 2x downscale without an anti-alias filter, then
sharpening) +0.08; an unsharp mask alone (amount 0.4) +0.04-0.05; the other
nine -0.05 (``phone``) down to -0.52 (``webcam``), where blur and JPEG empty
the high band. Two unpaired sets of other photos differ by up to 0.12 (the
demo's training and test photos, bicubic both), so only an excess of
``CLEAR_ALIASING`` (0.15) or more counts: below it, samples start from the
bicubic clean LR as before.

The decimation's grid is bicubic's (LR pixel ``i`` at HR coordinate
``(i + 0.5) * scale - 0.5``); a source whose grid sits elsewhere (``dashcam``
reads out at a random offset) differs from it by a sub-pixel shift that no
unpaired method can read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import LUMA_WEIGHTS, image_to_tensor, to_float32
from unpaired_sr.common.matlab_resize import clean_lr_from_hr
from unpaired_sr.degradation.noise import spread_evenly

SIGMA_GRID = np.round(np.arange(0.075, 0.3751, 0.025), 3)  # LR px; at 0.375 the decimation is as soft as bicubic
CLEAR_ALIASING = 0.15  # log10 excess of the high/mid band power ratio over the clean images'
TILE = 32
MID_BAND = (0.25, 0.35)  # cycles per LR pixel, radial
HIGH_BAND = (0.42, 0.5)
MAX_TILES = 64  # per image, spread evenly: the ratio of averages needs a few thousand tiles, not every one
MAX_IMAGES = 48  # per set (as the blur's): the calibration runs over the grid


def decimate(hr: torch.Tensor, scale: int, sigma_lr_px: float) -> torch.Tensor:
    """HR batch (B, C, H, W) -> LR (B, C, H // scale, W // scale): a Gaussian, then point sampling, 8-bit.

    The Gaussian's sigma is ``sigma_lr_px * scale`` HR pixels. Samples sit at
    bicubic's LR pixel centres; for an even scale such a centre falls between
    four HR pixels, which are averaged.
    """
    if sigma_lr_px > 0:
        hr = gaussian_blur(hr, sigma_lr_px * scale)
    first = (scale - 1) // 2
    taps = 2 - scale % 2
    height, width = hr.shape[2] // scale, hr.shape[3] // scale
    lr = F.avg_pool2d(hr[:, :, first:, first:], kernel_size=taps, stride=scale)[:, :, :height, :width]
    return torch.round(lr.clamp(0, 1) * 255) / 255


def hr_batches(images: list[np.ndarray], scale: int) -> list[torch.Tensor]:
    """(H, W, 3) HR images of any depth -> (1, 3, H', W') float batches cropped to multiples of ``scale``."""
    batches = [image_to_tensor(to_float32(np.asarray(image)))[None] for image in images]
    return [hr[:, :, : hr.shape[2] // scale * scale, : hr.shape[3] // scale * scale] for hr in batches]


def _window_and_bands() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frequencies = np.fft.fftfreq(TILE)
    radius = np.hypot(frequencies[:, None], frequencies[None, :])
    window = np.outer(np.hanning(TILE), np.hanning(TILE))
    mid = (radius >= MID_BAND[0]) & (radius < MID_BAND[1])
    high = (radius >= HIGH_BAND[0]) & (radius <= HIGH_BAND[1])
    return window, mid, high


def high_band_ratio(images: list[np.ndarray]) -> float:
    """log10 of the luma's high-band to mid-band power over ``images`` ((H, W, 3) floats); NaN without a tile."""
    window, mid, high = _window_and_bands()
    mid_power = high_power = 0.0
    for image in images:
        luma = np.asarray(image, dtype=np.float32) @ LUMA_WEIGHTS.astype(np.float32)
        starts = [
            (top, left)
            for top in range(0, luma.shape[0] - TILE + 1, TILE // 2)
            for left in range(0, luma.shape[1] - TILE + 1, TILE // 2)
        ]
        if not starts:
            continue
        starts = [starts[int(i * len(starts) / MAX_TILES)] for i in range(min(len(starts), MAX_TILES))]
        tiles = np.stack([luma[top : top + TILE, left : left + TILE] for top, left in starts])
        tiles = tiles - tiles.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fft2(tiles * window)) ** 2
        mid_power += float(power[:, mid].mean(axis=1).sum())
        high_power += float(power[:, high].mean(axis=1).sum())
    if mid_power == 0 or high_power == 0:
        return float("nan")
    return float(np.log10(high_power / mid_power))


@dataclass
class AliasingEstimate:
    excess: float  # the real images' high_band_ratio beyond the noisy clean ones' (NaN: not measured)
    sigma_lr_px: float  # the decimation's Gaussian that matches it (NaN below the grid's softest end)

    @property
    def clear(self) -> bool:
        return bool(np.isfinite(self.excess) and self.excess >= CLEAR_ALIASING)

    def describe(self) -> str:
        if not np.isfinite(self.excess):
            return "image aliasing not measured: the images are smaller than 32x32"
        found = (
            f"as point sampling after a Gaussian of {self.sigma_lr_px:.3f} LR px gives"
            if np.isfinite(self.sigma_lr_px)
            else "no more than a bicubic downscale gives"
        )
        ratio = f"{10**self.excess:.2f}x the clean images' (log10 {self.excess:+.2f})"
        return f"image aliasing: high-band power {ratio}, {found}"


def estimate_aliasing(
    clean_hr: list[np.ndarray],
    real_lr: list[np.ndarray],
    scale: int,
    add_noise: Callable[[list[np.ndarray]], list[np.ndarray]],
) -> AliasingEstimate:
    """How much more of the LR grid's finest detail the real images hold than bicubic clean LR (module doc).

    Args:
        clean_hr: (H, W, 3) clean HR images of any depth (uint8, uint16, float in [0, 1]).
        real_lr: (H, W, 3) float real LR images in [0, 1], unpaired.
        add_noise: adds the real domain's estimated noise to clean LR images (``list``: none known).
    """
    hr_tensors = hr_batches(spread_evenly(clean_hr, MAX_IMAGES), scale)
    real = spread_evenly(real_lr, MAX_IMAGES)

    def ratio(lr_batches: list[torch.Tensor]) -> float:
        images = [lr[0].permute(1, 2, 0).numpy() for lr in lr_batches]
        return high_band_ratio([np.round(np.clip(image, 0, 1) * 255) / 255 for image in add_noise(images)])

    with torch.no_grad():
        clean = ratio([clean_lr_from_hr(hr, scale) for hr in hr_tensors])
        excess = high_band_ratio(real) - clean
        if not np.isfinite(excess):
            return AliasingEstimate(excess, float("nan"))
        calibration = np.array([ratio([decimate(hr, scale, s) for hr in hr_tensors]) for s in SIGMA_GRID]) - clean
    if excess <= calibration[-1]:  # no more than the softest decimation, as soft as bicubic, gives
        return AliasingEstimate(excess, float("nan"))
    # falls as sigma grows; beyond its sharpest end the sharpest sigma
    return AliasingEstimate(excess, float(np.interp(-excess, -calibration, SIGMA_GRID)))


class ImageDownscale(nn.Module):
    """HR -> the LR that samples start from: bicubic (``clean_lr_from_hr``), or ``decimate`` where real images alias.

    Bicubic until an estimate is loaded; flows saved before it load as bicubic.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("sigma_lr_px", torch.zeros(()))
        self.sigma = 0.0  # on the host too: read on every call
        self.register_load_state_dict_post_hook(ImageDownscale._note_estimate)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "sigma_lr_px", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _note_estimate(module: ImageDownscale, incompatible_keys) -> None:
        module.sigma = float(module.sigma_lr_px)

    @property
    def is_decimating(self) -> bool:
        return self.sigma > 0

    def load_estimate(self, sigma_lr_px: float) -> None:
        self.sigma_lr_px.fill_(sigma_lr_px)
        self.sigma = float(sigma_lr_px)

    def forward(self, hr: torch.Tensor, scale: int) -> torch.Tensor:
        """(B, 3, H, W) HR in [0, 1], H and W multiples of ``scale`` -> (B, 3, H / scale, W / scale), 8-bit."""
        if self.sigma > 0:
            return decimate(hr, scale, self.sigma)
        return clean_lr_from_hr(hr, scale)
