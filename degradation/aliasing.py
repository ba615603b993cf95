"""Aliasing: a source that samples its sensor without an anti-alias filter, estimated from unpaired images.

A camera that reads out every ``scale``-th pixel (a dashcam keeping its frame
rate), every ``scale``-th line (one field of an interlaced frame), or an app
that shrinks with an interpolating resize (OpenCV's) skips the low-pass filter
that a proper downscale applies first. Detail finer than the LR grid then
folds back into it: edges turn jagged, fine texture turns into moire, and the
image holds *more* power near the grid's limit than a bicubic downscale of
the same scene. A bicubic image cannot be made to hold it (the detail is
gone), and sharpening raises the mid frequencies with the high ones. So the
samples of such a source start from the HR image itself: per axis, a light
Gaussian (``sigma`` LR px: the optics, the pixel's area) and point sampling at
the LR pixel centres that bicubic uses (``decimate``), or bicubic along an
axis that does not alias.

The statistic, per axis, for a set of LR images: the log10 ratio of the
luma's power in a high band (0.42-0.5 cycles per pixel along the axis) to
that in a mid band (0.25-0.35), both within 0.25 cycles per pixel across it,
summed over 32x32 Hann-windowed tiles. A sensor's rows and columns are where
it skips, so the axes are measured apart: a field of an interlaced frame
aliases vertically and is soft horizontally. The real images' value is
compared with the clean ones' (bicubic, with the estimated image noise added
in four draws, ``noisy_copies``, and rounded to 8 bits, since noise raises
the high band too), and the excess
is read off the same clean photos point-sampled after a grid of Gaussians
(0.075-0.375 LR px; at 0.375 the sampling is as soft as bicubic) with the same
noise. Measured on the benchmarks (x4; vertical / horizontal, high-band power
against the clean images'): ``dashcam`` (pixels skipped after 0.3-0.6 HR px)
2.18x / 1.68x, read as 0.17 / 0.21 LR px; ``camcorder`` (lines skipped, each
line blurred by 1.2-2.2 HR px) 2.05x / 0.57x, read as 0.19 LR px / bicubic;
``thumbnail`` (OpenCV's cubic resize, no anti-alias filter) 2.25x / 1.93x;
``actioncam`` (pixels binned in pairs, every other pair kept) 2.08x / 1.56x;
``stream`` (a bilinear 2x downscale without an anti-alias filter, then
sharpening) 1.36x / 1.29x; the nine others 0.35x-0.97x, where blur, JPEG and
noise reduction empty the high band. Two sets of four other photos differ
by up to 1.48x (log10 0.17; 60 random splits of the bundled photos, median
0.07), so a source counts as aliasing only where one axis reaches 1.58x
(``CLEAR_ALIASING``, log10 0.2); below it samples start from the bicubic
clean LR as before. An unsharp mask of amount 0.6 adds less than 1.26x
(log10 0.1; the tests). The content moves the real images' value as much:
one source's real images against the same source applied to the clean
photos differ by -0.22 to +0.27 (log10, vertical) over three splits of the
bundled photos, so on a few photos per side the Gaussian read off the
calibration is uncertain by about 0.1 LR px (``dashcam``'s 0.075-0.15 reads
as 0.16-0.21 on the benchmarks' split, whose real photos are smoother).

The decimation's grid is bicubic's (LR pixel ``i`` at HR coordinate
``(i + 0.5) * scale - 0.5``); a source whose grid sits elsewhere (``dashcam``
reads out at a random offset) differs from it by a sub-pixel shift that no
unpaired method can read. With ``random_phase`` each sample's grid is moved
by its own shift, drawn uniformly within half an LR pixel of bicubic's along
each axis that aliases (``sampling_phases``): a network trained on such
samples does not commit to one position of the LR grid against the HR one.
At x2 most photos hold little detail beyond the LR grid's limit to fold
back, so aliasing there is rarely clear.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from unpaired_sr.common.image_io import LUMA_WEIGHTS, image_to_tensor, to_float32
from unpaired_sr.common.matlab_resize import clean_lr_from_hr, device_matrix, mirrored_matrix, resize_matrix
from unpaired_sr.common.seeds import derived_seed
from unpaired_sr.degradation.noise import spread_evenly

SIGMA_GRID = np.round(np.arange(0.075, 0.3751, 0.025), 3)  # LR px; at 0.375 the decimation is as soft as bicubic
CLEAR_ALIASING = 0.2  # log10 excess of the high/mid band power ratio over the clean images', along either axis
TILE = 32
MID_BAND = (0.25, 0.35)  # cycles per LR pixel along the axis measured...
HIGH_BAND = (0.42, 0.5)
ACROSS = 0.25  # ...while below this across it: the strips of the spectrum that one axis's sampling folds into
AXES = ("vertical", "horizontal")
MAX_TILES = 64  # per image, spread evenly: the ratio of averages needs a few thousand tiles, not every one
MAX_IMAGES = 48  # per set (as the blur's): the calibration runs over the grid


@lru_cache(maxsize=64)
def sampling_matrix(in_length: int, scale: int, sigma_lr_px: float) -> np.ndarray:
    """The float64 ``(in_length // scale, in_length)`` matrix of one axis of ``decimate``: a Gaussian, then sampling.

    Samples sit at bicubic's LR pixel centres (``i`` at HR coordinate ``(i + 0.5) * scale - 0.5``); for an
    even scale such a centre falls between two HR pixels, which are averaged. Borders are mirrored, as
    ``resize_matrix`` mirrors them. Kept beside ``shifted_sampling_matrix`` (which at shift 0 centres one
    Gaussian between the two pixels instead) so that samples on bicubic's grid stay as they were.
    """
    sigma = sigma_lr_px * scale
    radius = int(math.ceil(3 * sigma)) + 1
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) if sigma > 0 else (offsets == 0).astype(np.float64)
    weights = weights / weights.sum()
    out_length, taps = in_length // scale, 2 - scale % 2
    first = (scale - 1) // 2 + scale * np.arange(out_length)  # the HR pixel at or just before each centre
    index = np.concatenate([(first + tap)[:, None] + offsets[None, :] for tap in range(taps)], axis=1)
    return mirrored_matrix(index, np.tile(weights / taps, (out_length, taps)), in_length)


def shifted_sampling_matrix(in_length: int, scale: int, sigma_lr_px: float, shift_hr_px: float) -> np.ndarray:
    """``sampling_matrix`` with every sample moved by ``shift_hr_px`` HR px along the axis.

    Each LR pixel is a Gaussian of ``sigma_lr_px`` centred on its (fractional) HR position, so every phase
    is treated alike: at sigma 0 the nearest HR pixel (two at a tie, averaged).
    """
    sigma = max(sigma_lr_px * scale, 1e-3)
    radius = int(math.ceil(3 * sigma)) + 2
    centres = (np.arange(in_length // scale) + 0.5) * scale - 0.5 + shift_hr_px
    index = np.floor(centres)[:, None].astype(np.int64) + np.arange(-radius, radius + 1)[None, :]
    log_weights = -0.5 * ((index - centres[:, None]) / sigma) ** 2
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    return mirrored_matrix(index, weights / weights.sum(axis=1, keepdims=True), in_length)


def sampling_phases(seeds: list[int], scale: int) -> torch.Tensor:
    """(len(seeds), 2) per sample, the grid's shift along each axis (vertical, horizontal) in HR px: uniform in
    half an LR pixel either side of bicubic's, drawn from each sample's own seed."""
    return torch.stack([(torch.rand(2, generator=torch.Generator().manual_seed(seed)) - 0.5) * scale for seed in seeds])


def decimate(
    hr: torch.Tensor, scale: int, sigmas: tuple[float | None, float | None], shifts: torch.Tensor | None = None
) -> torch.Tensor:
    """HR batch (B, C, H, W), H and W multiples of ``scale`` -> LR (B, C, H / scale, W / scale), 8-bit.

    ``sigmas``: per axis (vertical, horizontal), the Gaussian (LR px; ``sigma * scale`` HR px) after which that
    axis is point-sampled (``sampling_matrix``), or None: that axis is downscaled by MATLAB's bicubic, as
    ``clean_lr_from_hr`` does. A sensor can skip lines and average along them (one field of an interlaced
    frame), or skip both. ``shifts``: (B, 2) HR px, each sample's grid moved along the axes it point-samples
    (``shifted_sampling_matrix``); None: bicubic's grid.
    """
    if sigmas[0] is None and sigmas[1] is None:
        return clean_lr_from_hr(hr, scale)
    dtype = hr.dtype if hr.dtype in (torch.float32, torch.float64) else torch.float32
    if shifts is not None:
        lr = _axis_matrices(hr, scale, sigmas, shifts, 0, dtype) @ hr.to(dtype)
        lr = lr @ _axis_matrices(hr, scale, sigmas, shifts, 1, dtype).transpose(-1, -2)
        return torch.round(lr.clamp(0, 1) * 255) / 255
    rows, cols = (
        # kept on the device: SR training asks for the same two on every batch
        device_matrix(resize_matrix, length, length // scale, 1.0 / scale, device=hr.device, dtype=dtype)
        if sigma is None
        else device_matrix(sampling_matrix, length, scale, sigma, device=hr.device, dtype=dtype)
        for length, sigma in zip(hr.shape[2:], sigmas, strict=True)
    )
    lr = rows @ hr.to(dtype) @ cols.T
    return torch.round(lr.clamp(0, 1) * 255) / 255


def _axis_matrices(
    hr: torch.Tensor,
    scale: int,
    sigmas: tuple[float | None, float | None],
    shifts: torch.Tensor,
    axis: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """One axis of a shifted ``decimate``: (B, 1, out, in), each sample's own grid, or (1, 1, out, in) bicubic's."""
    length, sigma = hr.shape[2 + axis], sigmas[axis]
    if sigma is None:
        return device_matrix(resize_matrix, length, length // scale, 1.0 / scale, device=hr.device, dtype=dtype)[
            None, None
        ]
    # a new matrix for every shift, so none is kept; built on the host and moved in one transfer
    matrices = np.stack([shifted_sampling_matrix(length, scale, sigma, float(shift)) for shift in shifts[:, axis]])
    return torch.from_numpy(matrices).to(hr.device, dtype)[:, None]


def hr_batches(images: list[np.ndarray], scale: int) -> list[torch.Tensor]:
    """(H, W, 3) HR images of any depth -> (1, 3, H', W') float batches cropped to multiples of ``scale``."""
    batches = [image_to_tensor(to_float32(np.asarray(image)))[None] for image in images]
    return [hr[:, :, : hr.shape[2] // scale * scale, : hr.shape[3] // scale * scale] for hr in batches]


def _bands(axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(TILE, TILE) masks of a tile's spectrum: the mid and the high band along ``axis`` (0: vertical)."""
    frequencies = np.abs(np.fft.fftfreq(TILE))
    along, across = np.meshgrid(frequencies, frequencies, indexing="ij")  # axis 0: vertical frequencies
    if axis == 1:
        along, across = across, along
    mid = (along >= MID_BAND[0]) & (along < MID_BAND[1]) & (across < ACROSS)
    high = (along >= HIGH_BAND[0]) & (along <= HIGH_BAND[1]) & (across < ACROSS)
    return mid, high


def high_band_ratio(images: list[np.ndarray]) -> np.ndarray:
    """(2,) per axis (vertical, horizontal): log10 of the luma's high-band to mid-band power over ``images``.

    ``images``: (H, W, 3) floats; NaN where no image holds a 32x32 tile.
    """
    bands = [_bands(axis) for axis in (0, 1)]
    window = np.outer(np.hanning(TILE), np.hanning(TILE))
    mid_power, high_power = np.zeros(2), np.zeros(2)
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
        for axis, (mid, high) in enumerate(bands):
            mid_power[axis] += float(power[:, mid].mean(axis=1).sum())
            high_power[axis] += float(power[:, high].mean(axis=1).sum())
    if not (mid_power > 0).all() or not (high_power > 0).all():
        return np.full(2, np.nan)
    return np.log10(high_power / mid_power)


@dataclass
class AliasingEstimate:
    excess: np.ndarray  # (2,) per axis: the real images' high_band_ratio beyond the noisy clean ones' (NaN: none)
    sigmas: tuple[float | None, float | None]  # per axis: the decimation's Gaussian that matches it, or None

    @property
    def clear(self) -> bool:
        """Whether the real images clearly alias along either axis (``CLEAR_ALIASING``)."""
        return bool(np.isfinite(self.excess).all() and self.excess.max() >= CLEAR_ALIASING)

    def describe(self) -> str:
        if not np.isfinite(self.excess).all():
            return "image aliasing not measured: the images are smaller than 32x32"
        parts = []
        for name, excess, sigma in zip(AXES, self.excess, self.sigmas):
            found = "as bicubic" if sigma is None else f"as point sampling after {sigma:.3f} LR px"
            parts.append(f"{name} {10**excess:.2f}x ({found})")
        return "image aliasing: high-band power against the clean images' " + ", ".join(parts)


def estimate_aliasing(
    hr_tensors: list[torch.Tensor],
    real_lr: list[np.ndarray],
    scale: int,
    add_noise: Callable[[list[np.ndarray]], list[np.ndarray]],
) -> AliasingEstimate:
    """How much more of the LR grid's finest detail the real images hold than bicubic clean LR, per axis.

    Args:
        hr_tensors: clean HR images as ``hr_batches`` makes them (at most ``MAX_IMAGES``: the calibration
            decimates each at every sigma of the grid).
        real_lr: (H, W, 3) float real LR images in [0, 1], unpaired.
        add_noise: adds the real domain's estimated noise to clean LR images (``list``: none known).
    """

    def ratio(lr_batches: list[torch.Tensor]) -> np.ndarray:
        images = [lr[0].permute(1, 2, 0).numpy() for lr in lr_batches]
        return high_band_ratio([np.round(np.clip(image, 0, 1) * 255) / 255 for image in add_noise(images)])

    with torch.no_grad():
        clean = ratio([clean_lr_from_hr(hr, scale) for hr in hr_tensors])
        excess = high_band_ratio(spread_evenly(real_lr, MAX_IMAGES)) - clean
        if not np.isfinite(excess).all():
            return AliasingEstimate(excess, (None, None))
        # (len(SIGMA_GRID), 2): falls as sigma grows, on both axes
        calibration = np.stack([ratio([decimate(hr, scale, (s, s)) for hr in hr_tensors]) for s in SIGMA_GRID])
    calibration = calibration - clean
    sigmas = tuple(
        # no more than the softest decimation, as soft as bicubic, gives: bicubic; beyond the sharpest: the sharpest
        None
        if excess[axis] <= calibration[-1, axis]
        else float(np.interp(-excess[axis], -calibration[:, axis], SIGMA_GRID))
        for axis in (0, 1)
    )
    return AliasingEstimate(excess, sigmas)


class ImageDownscale(nn.Module):
    """HR -> the LR that samples start from: bicubic (``clean_lr_from_hr``), or ``decimate`` where real images alias.

    Bicubic until an estimate is loaded; flows saved before it load as bicubic, on bicubic's grid.
    """

    def __init__(self):
        super().__init__()
        # Per axis (vertical, horizontal): the decimation's Gaussian in LR px, or -1: bicubic along that axis.
        self.register_buffer("sigma_lr_px", torch.full((2,), -1.0))
        # 1: each sample drawn with a seed decimates on a grid shifted by its own phase (``sampling_phases``).
        self.register_buffer("random_phase", torch.zeros(()))
        # on the host too: read on every call
        self.sigmas: tuple[float | None, float | None] = (None, None)
        self.has_random_phase = False
        self.register_load_state_dict_post_hook(ImageDownscale._note_estimate)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "sigma_lr_px", torch.full((2,), -1.0))
        state_dict.setdefault(prefix + "random_phase", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _note_estimate(module: ImageDownscale, incompatible_keys) -> None:
        module.sigmas = tuple(None if value < 0 else value for value in module.sigma_lr_px.tolist())
        module.has_random_phase = bool(module.random_phase)

    @property
    def is_decimating(self) -> bool:
        return self.sigmas != (None, None)

    def load_estimate(self, sigmas: tuple[float | None, float | None], random_phase: bool = False) -> None:
        self.sigma_lr_px.copy_(torch.tensor([-1.0 if sigma is None else sigma for sigma in sigmas]))
        self.sigmas = tuple(None if sigma is None else float(sigma) for sigma in sigmas)
        self.random_phase.fill_(float(random_phase))
        self.has_random_phase = bool(random_phase)

    def forward(self, hr: torch.Tensor, scale: int, seeds: list[int] | None = None) -> torch.Tensor:
        """(B, 3, H, W) HR in [0, 1], H and W multiples of ``scale`` -> (B, 3, H / scale, W / scale), 8-bit.

        ``seeds``: one per sample; with ``random_phase``, each sample's grid is shifted by its own phase.
        """
        shifts = None
        if seeds is not None and self.is_decimating and self.has_random_phase:
            shifts = sampling_phases([derived_seed(seed, "sampling phase") for seed in seeds], scale)
        return decimate(hr, scale, self.sigmas, shifts)
