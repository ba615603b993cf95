"""JPEG compression read off the real images, and applied to samples the same way.

A JPEG leaves a fingerprint in the pixels it decodes to: on the 8x8 block
grid, each DCT coefficient of the luma is a multiple of its quantization
step, give or take the 8-bit rounding of the decoded pixels (about 0.35 of a
level). ``estimate_jpeg`` looks for that lattice in every real LR image at
each of the 64 grid offsets and reads the lowest quality whose IJG (libjpeg)
steps the nine lowest AC frequencies sit on. Images with no lattice (never
compressed, compressed at a quality near 100, or resized after compression,
which scatters it) count as uncompressed. Samples are compressed at a quality
drawn from the qualities found, uncompressed in the share found so, with
4:2:0 chroma, libjpeg's and most cameras' default; the chroma's own tables
are not estimated. The real images' noise estimate (``degradation/noise.py``)
is read from the compressed images: it is the noise their codec left. So a
sample's content is compressed and its noise goes on afterwards
(``DegradationFlow.synthesize``); compressing a noisy sample, as samples
were made until the twenty-seventh round, thinned noise that compression
had already thinned once (``camera``'s chroma noise lost 45-67% of its std),
and the light config left JPEG out wherever the real images were not also
clearly blurred. In the new order it compresses wherever the lattice shows:
on the sixteen benchmarks whose samples that changes, the Frechet distance
of the light samples' residual fell on all sixteen, and SR was level on the
five measured (README: fidelity).

Other codecs (WebP, AVIF, JPEG 2000, video) and a JPEG resized after
compression leave no lattice. What every lossy codec does leave is its loss
of detail: transform coefficients below the quantization step vanish, so
low-contrast texture flattens while strong edges keep their weight, and
colour loses its fine detail first. ``estimate_equivalent_jpeg`` measures
that without pairs, as a profile of the images' detail (``detail_profile``),
and finds the JPEG quality whose loss of detail, applied to the clean images
as the samples are before compression, matches the real images' profile.
JPEG stands in for the unknown codec: samples are compressed at the
qualities that match (``model.image_matched_compression``: in the light
config only where the real images are clearly blurred, since SR lost
0.12-0.27 dB on two such sources in either order of noise and JPEG).
Training runs it where the lattice shows in no real image. Where the
lattice does show, on the thirteen JPEG benchmarks, the
range it matches overlaps the qualities read off the lattice on eleven;
``phone`` (noise reduction) and ``camcorder`` (colour at a quarter of the
width) read as 30-55 and 35-50 against 84-88 and 73-92: the profile takes
any loss of fine, low-contrast detail for compression. Noise, sharpening,
and a blur the samples carry too (the blur estimate's) do not read as
compression; a blur they lack does (the tests and README: fidelity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from unpaired_sr.common.image_io import RGB_TO_YCBCR
from unpaired_sr.degradation.noise import spread_evenly

# The IJG (libjpeg) base luminance table, row-major: what "quality" scales.
IJG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
# The lowest AC frequencies (zigzag order 1-9): present in almost every block, so their lattice is seen.
FREQUENCIES = ((0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0))
MIN_COEFFICIENTS = 30  # coefficients off zero an image needs before its lattice is read
LATTICE = 0.6  # mean cos(2 pi c / q) above which the coefficients sit on multiples of the steps q
SEARCH_BLOCKS = 256  # blocks per grid offset while looking for the grid
MAX_BLOCKS = 4096  # blocks on which the grid's quality is read (a 512x512 image's)
MAX_JPEG_IMAGES = 64  # real images whose compression is read (``estimate_jpeg``)


def ijg_table(quality: int) -> np.ndarray:
    """libjpeg's luminance quantization table at ``quality`` (1-100)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((IJG_LUMA * scale + 50) / 100), 1, 255)


def _dct_matrix() -> np.ndarray:
    k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    matrix = np.sqrt(2 / 8) * np.cos((2 * n + 1) * k * np.pi / 16)
    matrix[0] /= np.sqrt(2)
    return matrix  # orthonormal DCT-II: JPEG's FDCT, coefficient for coefficient


DCT = _dct_matrix()


def block_coefficients(luma: np.ndarray, offset: tuple[int, int], max_blocks: int | None = None) -> np.ndarray:
    """The (N, 8, 8) DCT coefficients of the 8x8 blocks of ``luma`` (0-255, level-shifted inside) from ``offset``;
    with ``max_blocks``, of every k-th block only, k the least that keeps N at most about ``max_blocks``."""
    top, left = offset
    height, width = (luma.shape[0] - top) // 8 * 8, (luma.shape[1] - left) // 8 * 8
    blocks = luma[top : top + height, left : left + width] - 128.0
    blocks = blocks.reshape(height // 8, 8, width // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    if max_blocks is not None:
        blocks = blocks[:: max(1, len(blocks) // max_blocks)]  # before the transform: the rest would be thrown away
    return DCT @ blocks @ DCT.T


QUALITIES = np.arange(1, 100)  # quality 100 (every step 1) leaves no trace worth modelling
STEPS = np.stack([ijg_table(quality)[tuple(zip(*FREQUENCIES, strict=True))] for quality in QUALITIES])  # (99, 9)


def lattice_scores(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per quality: how well the blocks' low frequencies sit on multiples of its steps (mean cos(2 pi c / q)),
    and how many coefficients that counts. Only those at least half a step from 0 count: a coefficient
    quantized to 0 sits on every lattice."""
    rows, cols = zip(*FREQUENCIES)
    # float32: the cosine of (99, N, 9) values costs a third of float64's, and the scores move by 1e-7
    values = np.abs(coefficients[:, rows, cols]).astype(np.float32)  # (N, 9); the cosine is even
    cycles = values[None] / STEPS[:, None, :].astype(np.float32)  # (99, N, 9)
    counted = cycles > 0.5
    cosines = np.cos(np.float32(2 * np.pi) * cycles, where=counted, out=np.zeros_like(cycles))
    counts = counted.sum(axis=(1, 2))
    return cosines.sum(axis=(1, 2), dtype=np.float64) / np.maximum(counts, 1), counts


def image_luma(image: np.ndarray) -> np.ndarray:
    """JPEG's luma (BT.601, full range) of an RGB image in [0, 1], on 0-255, from its 8-bit values."""
    rgb = np.round(np.clip(image[..., :3].astype(np.float64), 0, 1) * 255)
    return rgb @ RGB_TO_YCBCR[0]


def estimate_quality(image: np.ndarray) -> int | None | str:
    """The JPEG quality an RGB image in [0, 1] was last compressed at, at its present size.

    None where it shows no JPEG lattice (uncompressed, or at a quality so high
    that the steps drown in the 8-bit rounding: about 90 and above);
    ``"unknown"`` where too little of it is off zero to tell (a flat image). Of
    the qualities whose lattice fits, the lowest: higher qualities' steps often
    divide the true ones, so their lattices fit too, while lower qualities' do
    not. Off the block grid the blocks straddle the real ones and no lattice
    shows: the grid is the best fit over the 64 offsets (found on a sample of
    the blocks, then read on more of them).
    """
    luma = image_luma(image)
    if min(luma.shape) < 16:
        return "unknown"
    best: tuple[float, tuple[int, int]] | None = None
    decidable = False
    for offset in [(top, left) for top in range(8) for left in range(8)]:
        scores, counts = lattice_scores(block_coefficients(luma, offset, SEARCH_BLOCKS))
        enough = counts >= MIN_COEFFICIENTS
        decidable = decidable or bool(enough[QUALITIES == 50].all())
        fits = np.flatnonzero(enough & (scores > LATTICE))
        if len(fits) and (best is None or scores[fits[0]] > best[0]):
            best = (float(scores[fits[0]]), offset)
    if best is None:
        return None if decidable else "unknown"
    scores, counts = lattice_scores(block_coefficients(luma, best[1], MAX_BLOCKS))
    fits = np.flatnonzero((counts >= MIN_COEFFICIENTS) & (scores > LATTICE))
    return int(QUALITIES[fits[0]]) if len(fits) else None


@dataclass
class JpegEstimate:
    qualities: list[int]  # one per real image where compression was found
    uncompressed: int  # real images that can tell and show none
    images: int  # real images looked at

    def describe(self) -> str:
        if not self.qualities:
            return f"JPEG: none found in {self.images} real images"
        low, median, high = np.percentile(self.qualities, [0, 50, 100])
        return (
            f"JPEG in {len(self.qualities)} of {self.images} real images, quality {low:.0f}-{high:.0f} "
            f"(median {median:.0f}), none in {self.uncompressed}"
        )


def estimate_jpeg(real_lr: list[np.ndarray]) -> JpegEstimate:
    """What compression the real LR images show: the qualities found, and how many that can tell show none.

    At most ``MAX_JPEG_IMAGES`` images, spread evenly over the set, are read: the grid search costs about
    0.2 s an image, and the proportion and the range of qualities need dozens of images, not hundreds.
    """
    images = spread_evenly(real_lr, MAX_JPEG_IMAGES)
    found = [estimate_quality(image) for image in images]
    qualities = [quality for quality in found if isinstance(quality, int)]
    return JpegEstimate(qualities, sum(quality is None for quality in found), len(images))


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """An 8-bit RGB (H, W, 3) image through libjpeg (OpenCV) at ``quality``, 4:2:0 chroma."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]


class ImageCompression(nn.Module):
    """JPEG as the real images show it (``estimate_jpeg``); the identity until an estimate is loaded.

    A count per quality 1-100 and one for uncompressed images (index 0), in a
    fixed-size buffer, so every flow's state dict has the same shape whatever
    was found: each sample draws from that distribution.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("quality_counts", torch.zeros(101))
        # The draw's probabilities, kept on the host (None: nothing estimated), as ImageNoise keeps
        # is_estimated: reading the buffer on every batch would stop a GPU training step to wait for it.
        self.probabilities: np.ndarray | None = None
        self.register_load_state_dict_post_hook(ImageCompression._note_estimate)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Flows saved before compression was estimated have none: their samples stay as they were.
        state_dict.setdefault(prefix + "quality_counts", torch.zeros(101))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _note_estimate(module: ImageCompression, incompatible_keys) -> None:
        counts = module.quality_counts.cpu().double().numpy()
        module.probabilities = counts / counts.sum() if counts[1:].sum() > 0 else None

    @property
    def is_estimated(self) -> bool:
        return self.probabilities is not None

    def load_estimate(self, estimate: JpegEstimate) -> None:
        self.quality_counts.zero_()
        if estimate.qualities:
            self.quality_counts[0] = estimate.uncompressed
            for quality in estimate.qualities:
                self.quality_counts[quality] += 1
        self._note_estimate(self, None)

    def draw(self, seeds: list[int]) -> list[int]:
        """The quality each seed's sample is compressed at (0: left uncompressed); all 0 until estimated."""
        if self.probabilities is None:
            return [0] * len(seeds)
        return [int(np.random.default_rng([seed, 0x1BE6]).choice(101, p=self.probabilities)) for seed in seeds]

    def forward(self, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """A batch (B, 3, H, W) in [0, 1] -> the same, each image compressed at a quality drawn with its seed.

        The identity until estimated; else 8-bit, and the identity for the
        gradient (straight through): JPEG's rounding has none.
        """
        if self.probabilities is None:
            return images
        pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        compressed = []
        for image, quality in zip(pixels, self.draw(seeds), strict=True):
            compressed.append(jpeg_round_trip(image, quality) if quality > 0 else image)
        result = torch.from_numpy(np.stack(compressed)).permute(0, 3, 1, 2).to(images.device, images.dtype) / 255
        return images + (result - images).detach()


# ----------------------------------------------------------------------------- any codec, matched as JPEG

PROFILE_STRIDE = 3  # 8x8 windows every 3 px: each phase of an 8 (or 4) px block grid equally often
# Windows are binned by the RMS of their lowest AC frequencies (u + v = 1, 2), in levels: a codec's
# quantization step is absolute, so how much of a window's detail survives depends on its contrast.
CONTRAST_EDGES = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, np.inf)
_FREQUENCY_SUM = np.add.outer(np.arange(8), np.arange(8))
LOW_BAND = (_FREQUENCY_SUM >= 1) & (_FREQUENCY_SUM <= 2)
DETAIL_BANDS = (
    (_FREQUENCY_SUM >= 3) & (_FREQUENCY_SUM <= 4),
    (_FREQUENCY_SUM >= 5) & (_FREQUENCY_SUM <= 7),
    _FREQUENCY_SUM >= 8,
)
MIN_WINDOWS = 100  # windows a contrast bin needs in both sets before it counts
ENERGY_FLOOR = 0.05  # levels^2: keeps the log finite where a codec empties a band
EQUIVALENT_QUALITIES = tuple(range(10, 100, 5))
# The best quality's distance at most this share of no compression's. On the sixteen benchmarks, every one
# compressed, the best share was 0.03-0.13 (the thirteen whose JPEG lattice shows; light flows) and 0.05,
# 0.07 and 0.23 (messenger, gallery and stream, which show none). On bicubic images of other photos, and
# on those with noise, sharpening, or blur and noise added, no compression matched best; with a blur alone
# (0.7 LR px, the samples blurred by the estimate, 0.6) the best JPEG's share was 0.33-0.82 over photo subsets.
CLEAR_MATCH = 0.25
NEAR_BEST = 1.1  # the qualities within 10% of the best distance form the range samples draw from
# The estimate reads at most this many tiles of each set, spread evenly over the images: a profile of a
# few hundred thousand pixels is steady, and twenty of them (one per quality) over a user's full-size
# images would hold a training start up for minutes (12 images of 512x384 in four noise draws: 90 s).
PROFILE_TILE = 48
PROFILE_TILES = 192
CLEAN_TILES = 48  # of the clean set, before the noise's four draws (noisy_copies) make them 192


@dataclass
class DetailProfile:
    """Per plane (Y, Cb, Cr) and contrast bin: the log mean energy of each detail band, and the window count."""

    log_energy: np.ndarray  # (3, bins, bands)
    windows: np.ndarray  # (3, bins)


def detail_profile(images: list[np.ndarray]) -> DetailProfile:
    """The detail profile of RGB images in [0, 1] (8-bit values): how much detail windows of each contrast keep."""
    bins, bands = len(CONTRAST_EDGES) - 1, len(DETAIL_BANDS)
    energy_sums, windows = np.zeros((3, bins, bands)), np.zeros((3, bins))
    for image in images:
        planes = np.round(np.clip(image[..., :3].astype(np.float64), 0, 1) * 255) @ RGB_TO_YCBCR.T
        for channel in range(3):
            plane = planes[..., channel]
            if min(plane.shape) < 8:
                continue
            view = np.lib.stride_tricks.sliding_window_view(plane, (8, 8))[::PROFILE_STRIDE, ::PROFILE_STRIDE]
            energy = (DCT @ view.reshape(-1, 8, 8) @ DCT.T) ** 2
            contrast = np.sqrt(energy[:, LOW_BAND].mean(axis=1))
            contrast_bin = np.digitize(contrast, CONTRAST_EDGES[1:-1])
            band_energy = np.stack([energy[:, band].mean(axis=1) for band in DETAIL_BANDS], axis=1)
            for band in range(bands):
                energy_sums[channel, :, band] += np.bincount(contrast_bin, band_energy[:, band], minlength=bins)
            windows[channel] += np.bincount(contrast_bin, minlength=bins)
    mean_energy = energy_sums / np.maximum(windows, 1)[..., None]
    return DetailProfile(np.log(mean_energy + ENERGY_FLOOR), windows)


def profile_distance(a: DetailProfile, b: DetailProfile) -> float:
    """Mean squared difference of two profiles' log band energies over the bins both fill, each bin weighted
    by the square root of its smaller window count. Infinite where no bin is shared."""
    shared = np.minimum(a.windows, b.windows)
    weights = np.where(shared >= MIN_WINDOWS, np.sqrt(shared), 0.0)[..., None]
    if weights.sum() == 0:
        return float("inf")
    squared = (a.log_energy - b.log_energy) ** 2
    return float((weights * squared).sum() / (weights.sum() * squared.shape[-1]))


@dataclass
class EquivalentJpeg:
    """The JPEG qualities whose loss of detail matches the real images' (none: no compression matches better)."""

    qualities: list[int]
    distances: dict[int, float]  # per candidate quality; 0 stands for no compression

    @property
    def best(self) -> int:
        return min(self.distances, key=self.distances.get)

    def describe(self) -> str:
        uncompressed = self.distances[0]
        if not np.isfinite(uncompressed):
            return "loss of detail not measured: too few 8x8 windows of like contrast in both sets"
        if not self.qualities:
            best = min((q for q in self.distances if q), key=self.distances.get)
            return (
                f"loss of detail: none clear (as JPEG, the best match, quality {best}, is "
                f"{self.distances[best] / uncompressed:.2f} of no compression's distance; at most {CLEAR_MATCH} counts)"
            )
        low, high = min(self.qualities), max(self.qualities)
        return (
            f"loss of detail as JPEG at quality {low if low == high else f'{low}-{high}'} (profile distance "
            f"{self.distances[self.best]:.3f}, uncompressed {uncompressed:.3f}; no lattice: another codec or a resize)"
        )

    def as_jpeg_estimate(self) -> JpegEstimate:
        """The estimate samples draw from: every quality in the range equally often, none left uncompressed."""
        return JpegEstimate(list(self.qualities), uncompressed=0, images=len(self.qualities))


def profile_tiles(images: list[np.ndarray], count: int = PROFILE_TILES) -> list[np.ndarray]:
    """At most ``count`` tiles of ``PROFILE_TILE`` px from ``images``, spread evenly over all of their tiles
    (an image smaller than a tile is one tile)."""
    tiles = []
    for image in images:
        height, width = image.shape[:2]
        tile_h, tile_w = min(PROFILE_TILE, height), min(PROFILE_TILE, width)
        for top in range(0, height - tile_h + 1, tile_h):
            for left in range(0, width - tile_w + 1, tile_w):
                tiles.append(image[top : top + tile_h, left : left + tile_w])
    return spread_evenly(tiles, count)


def estimate_equivalent_jpeg(
    clean_lr: list[np.ndarray],
    real_lr: list[np.ndarray],
    add_noise: Callable[[list[np.ndarray]], list[np.ndarray]] = list,
) -> EquivalentJpeg:
    """The JPEG qualities at which the clean images, as samples are before compression (aliased, blurred and
    sharpened as estimated; RGB in [0, 1]) and with the image noise (``add_noise``: a list of images in, the
    same with noise out; ``list``: none known), take on the real images' detail profile.

    The noise goes in before the compression here, as the real codec met it, although samples get it after
    (``DegradationFlow.synthesize``): the noise estimate is what the codec left in the real images' quietest
    patches, and added after a JPEG it puts back fine detail the codec took from low-contrast texture. Measured
    on ``gallery`` (AVIF): with the noise after, the best match came to 0.503 of profile distance (quality
    25-65) against 0.138 (30-55) with it before, no compression 2.056.

    Every quality in ``EQUIVALENT_QUALITIES`` and no compression are tried;
    a match counts where the best quality's profile distance is at most
    ``CLEAR_MATCH`` of no compression's, and the qualities within 10% of the
    best distance make the range (filled in steps of 5).
    """
    samples = add_noise(profile_tiles(clean_lr, CLEAN_TILES))
    real = detail_profile(profile_tiles(real_lr))
    pixels = [np.round(np.clip(image, 0, 1) * 255).astype(np.uint8) for image in samples]
    distances = {0: profile_distance(detail_profile(samples), real)}
    for quality in EQUIVALENT_QUALITIES:
        compressed = [
            jpeg_round_trip(np.ascontiguousarray(image), quality).astype(np.float32) / 255 for image in pixels
        ]
        distances[quality] = profile_distance(detail_profile(compressed), real)
    best = min(distances, key=distances.get)
    if best == 0 or not distances[best] <= CLEAR_MATCH * distances[0]:
        return EquivalentJpeg([], distances)
    near = [quality for quality in EQUIVALENT_QUALITIES if distances[quality] <= NEAR_BEST * distances[best]]
    return EquivalentJpeg(list(range(min(near), max(near) + 1, 5)), distances)
