"""Image-space noise estimated from the quietest patches of unpaired clean and real LR images.

The flow moves latents; what a latent perturbation becomes in the image is
scaled by the inverse flow's local gain, which a flow trained on clean images
makes small where they are smooth and large where they are textured. Sensor
noise does the opposite: it sits on flat sky as much as on foliage, and its
level follows brightness, not texture. So the noise is modelled here, in the
image, from what the real images show where their content is least (the
classical way to estimate a noise level function from images alone: Liu et
al., CVPR 2006; Foi et al., TIP 2008):

* all 8x8 LR patches (stride 4), their mean removed, are binned by brightness;
  in each bin the quietest ``quiet_fraction`` of each set are kept;
* the cross-channel covariance of the real patches minus that of the clean
  ones gives the noise's colour axes (its principal components: luma-like
  and chroma-like noise);
* along each axis, the real patches' power spectrum minus the clean ones' is
  the noise's spectrum in that bin: its sum is the noise variance at that
  brightness, its shape (pooled over bins) the grain. Keeping only quiet
  patches also keeps those where the noise happened to be weak; a simulation
  of the estimated noise says by how much, and the variance is divided by it.

Subtracting the clean set removes the flat content both sets share (gentle
shading, the last of the texture); content only ever adds variance, so a bin
that rises above both its neighbours (where the real set happens to hold
texture) is capped at them. Where the real images are smoother than the
clean ones (blur, compression) the difference is negative and no noise is
added: blur and compression remain the flow's to model.

With four or five photos a side the two sets' flattest content differs, and
the estimate follows the photo split: over the 23 development benchmarks'
sources, the median level against the true residual in the flattest tenth
of each brightness bin was 1.26x on the benchmarks' split and 0.72x and
0.77x on two others, where the clean photos' quietest patches hold more of
their scenes than the real ones'. The real set's quiet patches alone
(``against_clean=False``) read their own flattest content as noise but do not
collapse there (1.38x, 1.03x, 0.92x; README: fidelity, thirty-first round):
an option for sets of unlike scenes.

Where the clean set's quiet patches in a bin hold more than the real ones'
noise, subtracting them leaves next to nothing (on the second photo split,
the middle bin read 0.6-1.5 levels on seven of nine development sources
whose true residual there is 2.9-6.1). What the real set's quiet patches
hold by themselves bounds the noise from above; ``real_floor``
(``model.image_noise_real_floor``) bounds it from below at a share of that,
per colour axis, each bound corrected for the quiet selection with its own
spectrum. At 0.7, on those nine sources, it leaves the benchmarks' own
split within 0.1 level in every upper bin (the mean |log ratio| to the true
level 0.316 -> 0.319) and brings the other two splits closer (0.594 ->
0.253, 0.304 -> 0.276; README: fidelity, forty-second round).

An 8x8 patch with its mean removed holds little of noise correlated over
more pixels: the colour blotches of a night shot or of a phone's noise
reduction (``lowlight``: in flat regions, the residual's colour beyond 2 px
had a std of 3.8-4.1 levels, the samples' 1.5, with the scenes the same).
``estimate_coarse_noise`` measures what the fine estimate leaves of the
colour at twice the scale, and ``coarse_image_noise`` samples it at half
resolution (``model.image_coarse_noise``; on in the faithful config).

Clipping takes the noise where the images reach black or white, and a
black sky or crushed shadows are the quietest dark patches of all: with
them, the darkest bin reads little or no noise (under a level on 10 of 14
development benchmarks, whose true residual there is 1.7-6.1 levels).
``unclipped=True`` (``model.image_noise_unclipped``, an option) leaves such
patches out of both sets and caps the end bins at their one neighbour; the
darkest bin then comes within 2x of the truth on 10 of the 14 (README:
fidelity, thirty-fifth round).

Sampling draws the noise's texture along each axis from the real set's own
quiet patches (``NoiseEstimate.texture``, loaded by ``ImageNoise.load_texture``;
``model.image_noise_texture patches``, an option): patches picked at random,
overlapped at half a patch under a window whose squares sum to one, each
brightness bin's scaled to unit variance so that the estimate alone sets the
level. What the real noise holds beyond a spectrum (rare strong specks, dots,
stripes, what a codec left of it) comes with them; so does the flattest
content the quiet patches hold. Without a texture (``gaussian``, the default,
and every checkpoint from before) it filters white noise along each axis with the
zero-phase kernel of its spectrum. Either way it scales the texture per
pixel by the gain at the clean image's local brightness (interpolated
between the brightness each bin was measured at) and rotates it back to RGB::

    estimate = estimate_noise(clean_lr_images, real_lr_images)
    noise = ImageNoise.from_estimate(estimate)
    noise.load_texture(estimate)
    white = torch.randn(batch, 3, height + PATCH - 1, width + PATCH - 1)
    noisy = clean_lr + noise(clean_lr, white)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import LUMA_WEIGHTS, image_to_tensor, to_float32
from unpaired_sr.common.matlab_resize import clean_lr_from_hr

PATCH = 8
STRIDE = 4
NUM_BINS = 5  # brightness bins of equal width over [0, 1]
MIN_PATCHES = 8  # fewer patches than this in a bin (either domain): the bin borrows its neighbour's noise
MAX_IMAGES = 200  # per domain: the estimate needs hundreds of quiet patches, not every image of a large set
MAX_PATCHES_PER_IMAGE = 500  # a random subset of a large image's patches (memory: 8x8x3 float64 each)
# ``estimate_noise(unclipped=True)`` leaves out a patch with more than a quarter of its pixels this close to black or
# white in all three channels: clipping took its noise (a black sky, crushed shadows, blown highlights are the
# quietest patches of all). Kept in, the darkest bin read under a level on 10 of 14 development benchmarks (their
# true residual there 1.7-6.1; README: fidelity, thirty-fifth round). Two levels, as a codec's ringing lifts clipped
# black by a level or two; a quarter, as strong noise in the dark reaches black in a few pixels of every patch; all
# three channels, as a saturated colour (one channel at 0) is flat content both sets hold: left out of both, the
# clean set lost its flattest patches of the middle bins, whose estimates fell (`grain` 4.3 -> 1.7, `webcam`
# 6.7 -> 2.9 levels at 0.2-0.4) and the samples' energy with them.
CLIP_MARGIN = 2.5 / 255
MAX_CLIPPED = 0.25


def rgb_std(gains: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(NUM_BINS, 3): the std per RGB channel in each brightness bin of noise with these gains along these axes."""
    return np.sqrt((gains[:, None, :] ** 2 * axes[None] ** 2).sum(axis=2))


@dataclass
class NoiseEstimate:
    """What ``estimate_noise`` measured: enough to sample the noise, and to report it."""

    axes: np.ndarray  # (3, 3): columns are the noise's colour axes in RGB
    gains: np.ndarray  # (NUM_BINS, 3): noise std along each axis, per brightness bin
    kernels: np.ndarray  # (3, PATCH, PATCH): unit-energy zero-phase filter per axis
    brightness: np.ndarray  # (NUM_BINS,): mean luma of the real patches each bin's gains were measured on
    patch_counts: np.ndarray  # (2, NUM_BINS): patches per bin, clean and real
    # (N, 3, PATCH, PATCH): the real set's quiet patches along the axes, each bin's scaled to unit variance per
    # axis: the noise's texture as the real images show it (``ImageNoise.load_texture``); empty: none kept
    texture: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, PATCH, PATCH)))
    # (NUM_BINS,): the bins whose noise the real floor lifted (``estimate_noise(real_floor=...)``)
    floored: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, dtype=bool))

    def rgb_std(self) -> np.ndarray:
        """(NUM_BINS, 3): the noise std per RGB channel in each brightness bin."""
        return rgb_std(self.gains, self.axes)

    def describe(self) -> str:
        """One line: the std per brightness bin, and how many patches it came from."""
        levels = "; ".join(
            f"{b / NUM_BINS:.1f}-{(b + 1) / NUM_BINS:.1f}: " + "/".join(f"{255 * s:.1f}" for s in std)
            for b, std in enumerate(self.rgb_std())
        )
        clean, real = self.patch_counts.sum(axis=1)
        floored = ", ".join(f"{b / NUM_BINS:.1f}-{(b + 1) / NUM_BINS:.1f}" for b in np.flatnonzero(self.floored))
        floored = f"; at the real floor: {floored}" if floored else ""
        return f"std R/G/B x255 by brightness ({levels}); from {clean} clean and {real} real patches{floored}"


def _patches_by_brightness(
    images: list[np.ndarray], seed: int = 0, unclipped: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """8x8 patches (stride 4), mean removed, binned by brightness; ``unclipped``: those clipped at black or white
    (``CLIP_MARGIN``, ``MAX_CLIPPED``) left out.

    Per bin: the patches (N, PATCH, PATCH, 3) and their mean luma (N,).
    """
    rng = np.random.default_rng(seed)
    residuals, brightness = [], []
    for image in images:
        image = np.asarray(image, dtype=np.float64)
        if image.shape[0] < PATCH or image.shape[1] < PATCH:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(image, (PATCH, PATCH, 3))[::STRIDE, ::STRIDE, 0]
        windows = windows.reshape(-1, PATCH, PATCH, 3)
        if len(windows) > MAX_PATCHES_PER_IMAGE:
            windows = windows[np.sort(rng.choice(len(windows), MAX_PATCHES_PER_IMAGE, replace=False))]
        if unclipped:
            black, white = (windows <= CLIP_MARGIN).all(axis=3), (windows >= 1 - CLIP_MARGIN).all(axis=3)
            windows = windows[(black | white).mean(axis=(1, 2)) <= MAX_CLIPPED]
        means = windows.mean(axis=(1, 2))
        residuals.append(windows - means[:, None, None, :])
        brightness.append(means @ LUMA_WEIGHTS)
    if not residuals:
        return [np.zeros((0, PATCH, PATCH, 3))] * NUM_BINS, [np.zeros(0)] * NUM_BINS
    residuals_all, brightness_all = np.concatenate(residuals), np.concatenate(brightness)
    bins = np.clip((brightness_all * NUM_BINS).astype(int), 0, NUM_BINS - 1)
    return [residuals_all[bins == b] for b in range(NUM_BINS)], [brightness_all[bins == b] for b in range(NUM_BINS)]


def _quietest(patches: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the ``fraction`` of patches (at least MIN_PATCHES) with the least variance."""
    keep = min(len(patches), max(MIN_PATCHES, int(round(fraction * len(patches)))))
    variance = patches.reshape(len(patches), PATCH * PATCH * 3).var(axis=1)
    return np.argsort(variance, kind="stable")[:keep]


def _power_spectrum(components: np.ndarray) -> np.ndarray:
    """Mean power spectrum per axis of (N, PATCH, PATCH, 3) patches: (3, PATCH, PATCH), summing to the variance.

    The patches' means were removed, so the zero-frequency bin is empty; it is
    filled with the mean of its four neighbours, as the noise has power there too.
    """
    spectrum = np.abs(np.fft.fft2(components, axes=(1, 2))) ** 2
    spectrum = spectrum.mean(axis=0).transpose(2, 0, 1) / PATCH**4
    spectrum[:, 0, 0] = (spectrum[:, 0, 1] + spectrum[:, 1, 0] + spectrum[:, 0, -1] + spectrum[:, -1, 0]) / 4
    return spectrum


def _kernels(shape: np.ndarray) -> np.ndarray:
    """(3, PATCH, PATCH) zero-phase filters of unit energy whose power spectra have the given shapes."""
    kernels = np.zeros((3, PATCH, PATCH))
    for axis in range(3):
        total = shape[axis].sum()
        if total > 0:
            amplitude = np.sqrt(shape[axis] / total * PATCH**2)  # sum(kernel^2) = 1
            kernels[axis] = np.fft.fftshift(np.real(np.fft.ifft2(amplitude)))
    return kernels


def _selection_bias(shape: np.ndarray, variances: np.ndarray, fraction: float, count: int, seed: int) -> float:
    """Variance of the quietest ``fraction`` of pure-noise patches over that of all of them.

    Choosing the quietest patches keeps those where content is least, but also
    those where the noise happened to be weak; simulating noise of the
    estimated spectrum (``shape`` per axis, scaled to ``variances``) in bins of
    ``count`` patches tells by how much, so the estimate can be divided by it.
    (Per frequency, the same correction would also undo the whitening this
    selection does to grainy noise; measured, it made samples worse, since
    what content leaks into the quiet patches sits at those same low frequencies.)
    """
    rng = np.random.default_rng(seed)
    repeats = max(1, -(-4000 // count))
    totals = shape.sum(axis=(1, 2), keepdims=True)
    amplitude = np.sqrt(np.divide(shape, totals, out=np.zeros_like(shape), where=totals > 0) * PATCH**2)
    amplitude *= np.sqrt(variances)[:, None, None]
    white = rng.standard_normal((repeats, count, 3, PATCH, PATCH))
    fields = np.real(np.fft.ifft2(np.fft.fft2(white) * amplitude)).transpose(0, 1, 3, 4, 2)
    fields = fields - fields.mean(axis=(2, 3), keepdims=True)
    selected = np.concatenate([group[_quietest(group, fraction)] for group in fields])
    return float(selected.var() / max(fields.var(), 1e-20))


def estimate_noise(
    clean_lr: list[np.ndarray],
    real_lr: list[np.ndarray],
    quiet_fraction: float = 0.05,
    seed: int = 0,
    frequencies: np.ndarray | None = None,
    colour_only: bool = False,
    against_clean: bool = True,
    unclipped: bool = False,
    real_floor: float = 0.0,
) -> NoiseEstimate:
    """The real domain's noise beyond the clean domain's, from the quietest patches of both sets.

    Args:
        clean_lr, real_lr: (H, W, 3) float images in [0, 1]; unpaired, any sizes of at least 8x8.
        quiet_fraction: share of each brightness bin's patches, those of least variance, that are used
            (``model.image_noise_quiet_fraction``).
        seed: picks the patches of images with more than ``MAX_PATCHES_PER_IMAGE``.
        frequencies: (PATCH, PATCH) weights of the patches' DFT frequencies to measure (default: all).
        colour_only: measure only the colour of the noise (each pixel's R, G, B minus their mean).
        against_clean: subtract the clean set's quiet patches (their covariance and spectrum); False: the real
            set's quiet patches alone, their flattest content read as noise (``model.image_noise_against_clean``).
        unclipped: leave out the patches clipped at black or white, and cap the end bins at their one neighbour
            as the inner ones are capped at theirs (``model.image_noise_unclipped``).
        real_floor: with ``against_clean``, no bin's noise along any axis falls below this share of the std the
            real set's quiet patches hold by themselves (``model.image_noise_real_floor``; 0: no floor).
    """
    clean_bins, _ = _patches_by_brightness(clean_lr, seed, unclipped)
    real_bins, real_brightness = _patches_by_brightness(real_lr, seed, unclipped)
    counts = np.array([[len(p) for p in clean_bins], [len(p) for p in real_bins]])
    usable = [b for b in range(NUM_BINS) if counts[:, b].min() >= MIN_PATCHES]
    if not usable:
        left_out, cause = (
            (", those clipped at black or white left out", ", or clipped nearly everywhere") if unclipped else ("", "")
        )
        raise ValueError(
            f"too few {PATCH}x{PATCH} patches to estimate the noise (clean {counts[0].sum()}, "
            f"real {counts[1].sum()}{left_out}); the images are too small or too few{cause}"
        )
    if colour_only:
        clean_bins, real_bins = ([p - p.mean(axis=3, keepdims=True) for p in bins] for bins in (clean_bins, real_bins))
    clean_bins = [p[_quietest(p, quiet_fraction)] for p in clean_bins]
    real_quiet = [_quietest(p, quiet_fraction) for p in real_bins]
    real_bins = [p[quiet] for p, quiet in zip(real_bins, real_quiet)]
    # Where in its bin the noise was measured: a bin's patches crowd towards one end when the images do.
    brightness = (np.arange(NUM_BINS) + 0.5) / NUM_BINS
    for b in usable:
        brightness[b] = real_brightness[b][real_quiet[b]].mean()

    def channel_covariance(bins: list[np.ndarray]) -> np.ndarray:
        pixels = np.concatenate([bins[b].reshape(-1, 3) for b in usable])
        return pixels.T @ pixels / len(pixels)

    share = 1.0 if against_clean else 0.0  # how much of the clean set's quiet content is taken off
    _, axes = np.linalg.eigh(channel_covariance(real_bins) - share * channel_covariance(clean_bins))
    axes = axes[:, ::-1].copy()  # strongest axis first
    weights = np.ones((PATCH, PATCH)) if frequencies is None else frequencies
    real_spectra = {b: _power_spectrum(real_bins[b] @ axes) for b in usable}
    spectra = {
        b: np.clip(real_spectra[b] - share * _power_spectrum(clean_bins[b] @ axes), 0, None) * weights for b in usable
    }
    shape = sum(spectra[b] * counts[1, b] for b in usable)
    kernels = _kernels(shape)
    gains = np.zeros((NUM_BINS, 3))
    floored = np.zeros(NUM_BINS, dtype=bool)
    # The clean set's quiet patches hold other scenes: where theirs are the busier, taking them off leaves the real
    # set's noise at nothing. The real set's quiet patches by themselves bound the noise from above (all they hold
    # is taken for noise); a share of that bounds it from below.
    real_shape = sum(real_spectra[b] * weights * counts[1, b] for b in usable)
    for b in usable:
        variances = spectra[b].sum(axis=(1, 2))
        bias = _selection_bias(shape, variances, quiet_fraction, counts[1, b], seed=b)
        gains[b] = np.sqrt(variances / max(bias, 1e-3))
        if against_clean and real_floor > 0:
            alone = (real_spectra[b] * weights).sum(axis=(1, 2))
            alone_bias = _selection_bias(real_shape, alone, quiet_fraction, counts[1, b], seed=b)
            floor = real_floor * np.sqrt(alone / max(alone_bias, 1e-3))
            floored[b] = bool((floor > gains[b]).any())
            gains[b] = np.maximum(gains[b], floor)
    if unclipped:
        capped = _capped_at_neighbours(gains, usable)
    else:
        gains = _filled_from_nearest(gains, usable)  # bins without enough patches take the nearest usable one's noise
        # Content only ever adds variance, and a bin that rises above both its
        # neighbours is one where the real set happens to hold texture (noise
        # levels change smoothly with brightness): it is capped at its neighbours.
        capped = gains.copy()
        for b in range(1, NUM_BINS - 1):
            capped[b] = np.minimum(gains[b], np.maximum(gains[b - 1], gains[b + 1]))
    texture = _texture_bank([real_bins[b] @ axes for b in usable], seed)
    return NoiseEstimate(
        axes=axes,
        gains=capped,
        kernels=kernels,
        brightness=brightness,
        patch_counts=counts,
        texture=texture,
        floored=floored,
    )


def _capped_at_neighbours(gains: np.ndarray, usable: list[int]) -> np.ndarray:
    """``gains`` (NUM_BINS, 3) with each usable bin capped at the highest of its usable neighbours, then the bins
    without enough patches filled from the nearest usable one.

    Content only ever adds variance, and a bin that rises above every neighbour
    it has is one where the real set happens to hold texture (noise levels
    change smoothly with brightness). The end bins have one neighbour each and,
    once clipped patches are left out, the fewest patches, so the least flat.
    A bin that borrowed its neighbour's gains is no neighbour of its own.
    """
    capped = gains.copy()
    for index, b in enumerate(usable):
        neighbours = [gains[usable[n]] for n in (index - 1, index + 1) if 0 <= n < len(usable)]
        if neighbours:
            capped[b] = np.minimum(gains[b], np.maximum.reduce(neighbours))
    return _filled_from_nearest(capped, usable)


def _filled_from_nearest(gains: np.ndarray, usable: list[int]) -> np.ndarray:
    """``gains`` (NUM_BINS, 3) with each bin outside ``usable`` given the nearest usable bin's gains."""
    filled = gains.copy()
    for b in range(NUM_BINS):
        if b not in usable:
            filled[b] = gains[min(usable, key=lambda u: abs(u - b))]
    return filled


MAX_TEXTURE_PATCHES = 4096


def _texture_bank(bins: list[np.ndarray], seed: int) -> np.ndarray:
    """(N, 3, PATCH, PATCH): quiet patches along the noise's axes ((n, PATCH, PATCH, 3) per bin), each bin's
    scaled to unit variance per axis, so that the brightness sets only the level (``gains``), not the texture."""
    # Unit variance as the field sees them: through the overlap window (a patch's power at its edges counts less).
    weights = _overlap_window().double().numpy() ** 2
    weights = weights / weights.sum()
    scaled = []
    for patches in bins:
        power = np.einsum("nhwc,hw->c", patches**2, weights) / len(patches)
        scaled.append((patches / np.sqrt(np.maximum(power, 1e-12))).transpose(0, 3, 1, 2))
    bank = np.concatenate(scaled)
    if len(bank) > MAX_TEXTURE_PATCHES:
        bank = bank[np.sort(np.random.default_rng(seed).choice(len(bank), MAX_TEXTURE_PATCHES, replace=False))]
    return bank


COARSE = 2  # the coarse scale: the images averaged over 2x2 pixels, where an 8x8 patch spans 16x16 LR pixels
# What the coarse scale measures: its patches' lowest frequencies (0 and +-1 of 8 along each axis, below 1/8
# cycle per LR pixel), which the fine patches cannot resolve. Above them the fine estimate is in charge, and
# whatever it reads low there (its quiet patches keep some noise out) is not the coarse scale's to make up:
# measured on white noise, every frequency let the coarse scale add 0.7x the fine std as blotches.
COARSE_FREQUENCIES = np.zeros((PATCH, PATCH))
COARSE_FREQUENCIES[np.ix_([0, 1, PATCH - 1], [0, 1, PATCH - 1])] = 1.0


def box_downscale(image: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H // 2, W // 2, C): the mean of each 2x2 block (an odd last row or column is dropped)."""
    height, width = image.shape[0] // COARSE * COARSE, image.shape[1] // COARSE * COARSE
    blocks = np.asarray(image[:height, :width], dtype=np.float64)
    return blocks.reshape(height // COARSE, COARSE, width // COARSE, COARSE, -1).mean(axis=(1, 3))


def estimate_coarse_noise(
    clean_lr: list[np.ndarray], real_lr: list[np.ndarray], fine: ImageNoise, quiet_fraction: float = 0.05
) -> NoiseEstimate:
    """The colour noise that the fine estimate misses at twice its scale: blotches larger than its 8x8 patches.

    The same estimator on both sets averaged over 2x2 pixels, with the clean
    set carrying the fine noise (``fine``), at the lowest frequencies of its
    patches (``COARSE_FREQUENCIES``): what remains is noise correlated over
    more than the fine patches hold (the chroma blotches of a night shot or of
    a phone's noise reduction), which an 8x8 patch with its mean removed
    cannot see. Only its colour is measured: at this scale the two unpaired
    sets' quiet patches differ in shading far more than in colour (with the
    scenes' luma, a source without blotches, ``grain``, read 4-30 levels
    against the 0-1.7 the same estimator reads on its own scenes' true
    degradation; colour alone 0-1.0). Sampled at half resolution and upsampled
    (``coarse_image_noise``), whose interpolation softens the field: the gains
    are raised so that the sampled field, averaged over 2x2 pixels again, has
    the variance measured.

    Args:
        clean_lr, real_lr: (H, W, 3) float images in [0, 1], unpaired, as for ``estimate_noise``.
        fine: the fine estimate, loaded.
    """
    noisy_clean = add_image_noise(fine, clean_lr, seed=1)
    estimate = estimate_noise(
        [box_downscale(image) for image in noisy_clean],
        [box_downscale(image) for image in real_lr],
        quiet_fraction,
        frequencies=COARSE_FREQUENCIES,
        colour_only=True,
    )
    # The end bins have one neighbour each: capped at it, as the inner ones are at theirs (``estimate_noise``).
    estimate.gains[0] = np.minimum(estimate.gains[0], estimate.gains[1])
    estimate.gains[-1] = np.minimum(estimate.gains[-1], estimate.gains[-2])
    # How much of each axis's variance survives the upsampling and a 2x2 average back: one flat test field.
    module = ImageNoise.from_estimate(
        NoiseEstimate(
            axes=np.eye(3),
            gains=np.ones((NUM_BINS, 3)),
            kernels=estimate.kernels,
            brightness=estimate.brightness,
            patch_counts=estimate.patch_counts,
        )
    )
    grey = torch.full((1, 3, 256, 256), 0.5)
    white = torch.randn(coarse_white_shape(1, 256, 256), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        field = coarse_image_noise(module, grey, white)
    kept = F.avg_pool2d(field, COARSE).var(dim=(0, 2, 3)).double().numpy()
    estimate.gains = estimate.gains / np.sqrt(np.clip(kept, 0.05, None))[None, :]
    return estimate


def coarse_white_shape(batch: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The white field ``coarse_image_noise`` takes for ``height`` x ``width`` images: half size plus margins."""
    return (batch, 3, -(-height // COARSE) + 2 + PATCH - 1, -(-width // COARSE) + 2 + PATCH - 1)


def coarse_image_noise(noise: ImageNoise, clean_lr: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
    """``noise`` drawn at half resolution (brightness from the 2x2-averaged clean image), upsampled bilinearly.

    ``white``: standard normal of ``coarse_white_shape``. One pixel of margin on
    each side at half resolution lets the interpolation reach every border
    pixel, so a tile whose top and left are even gets the whole image's field.
    """
    _, _, height, width = clean_lr.shape
    half_h, half_w = -(-height // COARSE), -(-width // COARSE)
    padded = F.pad(clean_lr, (0, half_w * COARSE - width, 0, half_h * COARSE - height), mode="replicate")
    half = F.pad(F.avg_pool2d(padded, COARSE), (1, 1, 1, 1), mode="replicate")
    field = F.interpolate(noise(half, white), scale_factor=COARSE, mode="bilinear", align_corners=False)
    # Output pixel k of the upsampled padded field sits at full-resolution position k - 2.
    return field[:, :, 2 : 2 + height, 2 : 2 + width]


def training_lr_sets(
    clean_hr: list[np.ndarray], real_lr: list[np.ndarray], scale: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A flow's training images as the estimates read them: clean LR (downscaled as training does) and real LR.

    Images of any depth (uint8, uint16, float) in; float (H, W, 3) in [0, 1] out; at most
    ``MAX_IMAGES`` of each set, spread evenly.
    """

    clean_lr = [
        clean_lr_from_hr(image_to_tensor(to_float32(np.asarray(hr)))[None], scale)[0].permute(1, 2, 0).numpy()
        for hr in spread_evenly(clean_hr, MAX_IMAGES)
    ]
    return clean_lr, [to_float32(np.asarray(image)) for image in spread_evenly(real_lr, MAX_IMAGES)]


def add_image_noise(
    noise: ImageNoise, images: list[np.ndarray], seed: int = 0, coarse: ImageNoise | None = None
) -> list[np.ndarray]:
    """``images`` ((H, W, 3) float in [0, 1]) with ``noise`` added, drawn from a generator seeded by ``seed``;
    with ``coarse`` (an estimate of ``estimate_coarse_noise``), its noise too."""
    generator = torch.Generator().manual_seed(seed)
    # A stream of its own: the fine noise's draws stay those of a flow without the coarse noise.
    coarse_generator = torch.Generator().manual_seed(seed + 1_000_003)
    noisy = []
    with torch.no_grad():
        for image in images:
            clean = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
            white = torch.randn(1, 3, clean.shape[2] + PATCH - 1, clean.shape[3] + PATCH - 1, generator=generator)
            clean = clean.to(noise.gains.device)  # where the module is (a training's flow may be on a GPU)
            added = noise(clean, white)
            if coarse is not None and coarse.is_estimated:
                shape = coarse_white_shape(1, *clean.shape[2:])
                coarse_white = torch.randn(shape, generator=coarse_generator)
                added = added + coarse_image_noise(coarse, clean, coarse_white.to(clean.device))
            noisy.append((clean + added)[0].permute(1, 2, 0).cpu().numpy())
    return noisy


NOISE_DRAWS = 4  # draws per image when the noise goes into a calibration (``noisy_copies``)


def noisy_copies(
    noise: ImageNoise, images: list[np.ndarray], coarse: ImageNoise | None = None, draws: int = NOISE_DRAWS
) -> list[np.ndarray]:
    """``draws`` noisy copies of each of ``images`` (``add_image_noise`` with seeds 0 to ``draws - 1``), for the
    estimates that calibrate a statistic on clean images with the estimated noise added.

    One draw leaves the calibration at the mercy of that draw: over three single draws, ``actioncam``'s
    aliasing read 1.88x-2.19x and ``stream``'s sharpening 0.31-0.51 (the least over four orientations, so
    biased low by the spread); over four draws each, 2.10x-2.18x on ``dashcam`` and 0.35-0.39 on ``stream``.
    """
    return [copy for seed in range(draws) for copy in add_image_noise(noise, images, seed, coarse)]


def spread_evenly(images: list[np.ndarray], count: int) -> list[np.ndarray]:
    """At most ``count`` of ``images``, evenly spread over the list (all of them when there are fewer)."""
    step = max(1, len(images) / count)
    return [images[int(i * step)] for i in range(min(len(images), count))]


ESTIMATE_PIXELS = 2**20  # LR px per set that the estimates read (``estimation_crops``)
MIN_ESTIMATE_SIDE = 128  # LR px: however many images, each keeps at least this square
# The R2 sequence (Roberts 2018): successive points fill the unit square evenly, whatever their number.
R2_STEPS = (0.7548776662466927, 0.5698402909980532)


def estimation_side(count: int) -> int:
    """The side (LR px) of the square that ``estimation_crops`` keeps of each of ``count`` images."""
    return max(MIN_ESTIMATE_SIDE, math.isqrt(ESTIMATE_PIXELS // max(1, min(count, MAX_IMAGES))))


def estimation_sets(
    clean_hr: list[np.ndarray], real_lr: list[np.ndarray], scale: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The crops of both training sets the estimates read (``estimation_crops``): clean HR at a multiple of
    8 x ``scale`` HR px, real LR at a multiple of 8 (where a JPEG's blocks lie)."""
    clean_side, real_side = estimation_side(len(clean_hr)), estimation_side(len(real_lr))
    return (
        estimation_crops(clean_hr, clean_side * scale, multiple=8 * scale),
        estimation_crops(real_lr, real_side, multiple=8),
    )


def estimation_crops(images: list[np.ndarray], side: int, multiple: int = 1) -> list[np.ndarray]:
    """Each of ``images`` cut to at most ``side`` x ``side`` pixels (a view, not a copy), for the estimates.

    The estimates read statistics (quiet patches, edges, tiles, 8x8 blocks), which a million pixels of a set
    hold plenty of (``estimation_side``: 5 images keep 457 px, 39 images 163 px, 64 and more 128 px); whole
    camera-sized photos only make a training start wait: 150 real images of 480x352 and 60 clean ones of
    1536x1024 took 4 minutes. The square moves from image to image over the frame, so that a set's crops
    hold its corners as well as its centres (lens blur, vignetting); its corner sits at a multiple of
    ``multiple`` (8 keeps a JPEG's block grid where it was).
    """
    crops = []
    for index, image in enumerate(images):
        offsets = []
        for axis, step in enumerate(R2_STEPS):
            room = max(0, image.shape[axis] - side)
            position = ((index + 1) * step) % 1.0
            offsets.append(int(position * room) // multiple * multiple)
        top, left = offsets
        crops.append(image[top : top + side, left : left + side])
    return crops


class ImageNoise(nn.Module):
    """Brightness-dependent, spatially and cross-channel correlated noise (buffers from ``estimate_noise``): Gaussian
    of the estimated spectrum, or, with a ``texture`` loaded, the real set's quiet patches at the estimated level.

    ``forward(clean_lr, white)`` -> noise shaped like ``clean_lr`` (B, 3, H, W), from standard
    normal ``white`` of shape (B, 3, H + PATCH - 1, W + PATCH - 1). All zeros until an estimate is
    loaded (``is_estimated``, which follows ``load_estimate`` and ``load_state_dict``).
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("axes", torch.eye(3))
        self.register_buffer("gains", torch.zeros(NUM_BINS, 3))
        self.register_buffer("kernels", torch.zeros(3, 1, PATCH, PATCH))
        self.register_buffer("brightness", (torch.arange(NUM_BINS) + 0.5) / NUM_BINS)
        self.register_buffer("luma_weights", torch.from_numpy(LUMA_WEIGHTS), persistent=False)
        # Real quiet patches along the axes (``load_texture``); empty: the noise is Gaussian, shaped by ``kernels``.
        self.register_buffer("texture", torch.zeros(0, 3, PATCH, PATCH))
        self.register_buffer("window", _overlap_window(), persistent=False)
        # Whether an estimate is loaded, kept on the host: asking the gains on
        # every degrade would stop a GPU training step to wait for them.
        self.is_estimated = False
        self.register_load_state_dict_post_hook(ImageNoise._note_estimate)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints older than the image noise lack its buffers: such a flow keeps
        # sampling as it did when it was trained (the latent shift's noise).
        for name, buffer in self.named_buffers(recurse=False):
            if name not in self._non_persistent_buffers_set:
                state_dict.setdefault(prefix + name, buffer.detach().clone())
        texture = state_dict[prefix + "texture"]
        if texture.shape != self.texture.shape:  # as many patches as the estimate kept
            self.texture = torch.zeros_like(texture, device=self.texture.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _note_estimate(module: ImageNoise, incompatible_keys) -> None:
        module.is_estimated = bool(module.gains.abs().sum() > 0)

    @classmethod
    def from_estimate(cls, estimate: NoiseEstimate) -> ImageNoise:
        module = cls()
        module.load_estimate(estimate)
        return module

    def load_estimate(self, estimate: NoiseEstimate) -> None:
        self.axes.copy_(torch.as_tensor(estimate.axes, dtype=torch.float32))
        self.gains.copy_(torch.as_tensor(estimate.gains, dtype=torch.float32))
        self.kernels.copy_(torch.as_tensor(estimate.kernels, dtype=torch.float32)[:, None])
        self.brightness.copy_(torch.as_tensor(estimate.brightness, dtype=torch.float32))
        self.is_estimated = bool(np.abs(estimate.gains).sum() > 0)

    def load_texture(self, estimate: NoiseEstimate) -> None:
        """Sample the noise from the estimate's real quiet patches (its ``texture``) instead of filtered white noise."""
        self.texture = torch.as_tensor(estimate.texture, dtype=torch.float32).to(self.gains.device)

    def rgb_std(self) -> np.ndarray:
        """(NUM_BINS, 3): the loaded noise's std per RGB channel in each brightness bin."""
        return rgb_std(self.gains.cpu().double().numpy(), self.axes.cpu().double().numpy())

    def local_gains(self, clean_lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W): each axis's noise std at each pixel, from the clean image's local brightness."""
        weights = self.luma_weights.to(clean_lr.dtype)
        brightness = torch.einsum("c,bchw->bhw", weights, gaussian_blur(clean_lr, 1.0))
        knots = self.brightness.to(clean_lr.dtype)  # ascending: one per bin
        upper = torch.searchsorted(knots, brightness.contiguous()).clamp(1, NUM_BINS - 1)
        lower = upper - 1
        upper_weight = ((brightness - knots[lower]) / (knots[upper] - knots[lower]).clamp(min=1e-6)).clamp(0, 1)
        upper_weight = upper_weight.unsqueeze(1)
        gains = self.gains.to(clean_lr.dtype)
        below = gains[lower].permute(0, 3, 1, 2)
        above = gains[upper].permute(0, 3, 1, 2)
        return below + upper_weight * (above - below)

    def forward(self, clean_lr: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = clean_lr.shape
        if white.shape != (batch, channels, height + PATCH - 1, width + PATCH - 1):
            raise ValueError(f"white noise {tuple(white.shape)} does not fit images {tuple(clean_lr.shape)}")
        white = white.to(device=clean_lr.device, dtype=clean_lr.dtype)
        if len(self.texture):
            along_axes = self.texture_field(white, height, width)
        else:
            along_axes = F.conv2d(white, self.kernels.to(clean_lr.dtype), groups=channels)
        along_axes = along_axes * self.local_gains(clean_lr)
        return torch.einsum("ij,bjhw->bihw", self.axes.to(clean_lr.dtype), along_axes)

    def texture_field(self, white: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, 3, height, width) of unit variance per axis: ``texture`` patches overlapped and added.

        The patches sit on a grid of stride PATCH // 2 (PATCH px apart from the
        image's top left minus half a patch), each weighted by a sine window
        whose squares sum to one where four overlap, so a field of independent
        patches keeps their variance and shows no seams. Which patch goes where
        is read off ``white`` at the grid's points (its normal CDF picks an
        index): a tile whose top and left are multiples of the stride, given its
        part of a whole image's field (``crop_noise``), gets the same patches.
        """
        stride = PATCH // 2
        rows, cols = -(-height // stride) + 1, -(-width // stride) + 1
        picks = white[:, 0, : rows * stride : stride, : cols * stride : stride]
        uniform = 0.5 * (1 + torch.erf(picks / math.sqrt(2)))
        index = (uniform * len(self.texture)).long().clamp(0, len(self.texture) - 1)
        patches = self.texture.to(white.dtype)[index] * self.window.to(white.dtype)  # (B, rows, cols, 3, P, P)
        columns = patches.permute(0, 3, 4, 5, 1, 2).reshape(white.shape[0], 3 * PATCH * PATCH, rows * cols)
        field = F.fold(columns, ((rows - 1) * stride + PATCH, (cols - 1) * stride + PATCH), PATCH, stride=stride)
        return field[:, :, stride : stride + height, stride : stride + width]


def _overlap_window() -> torch.Tensor:
    """(PATCH, PATCH): a separable sine window; at half overlap the squares of four sum to one at every pixel."""
    ramp = torch.sin(math.pi * (torch.arange(PATCH, dtype=torch.float64) + 0.5) / PATCH)
    return (ramp[:, None] * ramp[None, :]).float()
