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

Sampling filters white noise along each axis with the zero-phase kernel of
its spectrum, scales it per pixel by the gain at the clean image's local
brightness (interpolated between the brightness each bin was measured at)
and rotates it back to RGB::

    noise = ImageNoise.from_estimate(estimate_noise(clean_lr_images, real_lr_images))
    white = torch.randn(batch, 3, height + PATCH - 1, width + PATCH - 1)
    noisy = clean_lr + noise(clean_lr, white)
"""

from __future__ import annotations

from dataclasses import dataclass

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
        return f"std R/G/B x255 by brightness ({levels}); from {clean} clean and {real} real patches"


def _patches_by_brightness(images: list[np.ndarray], seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """8x8 patches (stride 4), mean removed, binned by brightness.

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
    clean_lr: list[np.ndarray], real_lr: list[np.ndarray], quiet_fraction: float = 0.05, seed: int = 0
) -> NoiseEstimate:
    """The real domain's noise beyond the clean domain's, from the quietest patches of both sets.

    Args:
        clean_lr, real_lr: (H, W, 3) float images in [0, 1]; unpaired, any sizes of at least 8x8.
        quiet_fraction: share of each brightness bin's patches, those of least variance, that are used.
        seed: picks the patches of images with more than ``MAX_PATCHES_PER_IMAGE``.
    """
    clean_bins, _ = _patches_by_brightness(clean_lr, seed)
    real_bins, real_brightness = _patches_by_brightness(real_lr, seed)
    counts = np.array([[len(p) for p in clean_bins], [len(p) for p in real_bins]])
    usable = [b for b in range(NUM_BINS) if counts[:, b].min() >= MIN_PATCHES]
    if not usable:
        raise ValueError(
            f"too few {PATCH}x{PATCH} patches to estimate the noise (clean {counts[0].sum()}, "
            f"real {counts[1].sum()}); the images are too small or too few"
        )
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

    _, axes = np.linalg.eigh(channel_covariance(real_bins) - channel_covariance(clean_bins))
    axes = axes[:, ::-1].copy()  # strongest axis first
    spectra = {
        b: np.clip(_power_spectrum(real_bins[b] @ axes) - _power_spectrum(clean_bins[b] @ axes), 0, None)
        for b in usable
    }
    shape = sum(spectra[b] * counts[1, b] for b in usable)
    kernels = _kernels(shape)
    gains = np.zeros((NUM_BINS, 3))
    for b in usable:
        variances = spectra[b].sum(axis=(1, 2))
        bias = _selection_bias(shape, variances, quiet_fraction, counts[1, b], seed=b)
        gains[b] = np.sqrt(variances / max(bias, 1e-3))
    for b in range(NUM_BINS):  # bins without enough patches take the nearest usable one's noise
        if b not in usable:
            gains[b] = gains[min(usable, key=lambda u: abs(u - b))]
    # Content only ever adds variance, and a bin that rises above both its
    # neighbours is one where the real set happens to hold texture (noise
    # levels change smoothly with brightness): it is capped at its neighbours.
    capped = gains.copy()
    for b in range(1, NUM_BINS - 1):
        capped[b] = np.minimum(gains[b], np.maximum(gains[b - 1], gains[b + 1]))
    return NoiseEstimate(axes=axes, gains=capped, kernels=kernels, brightness=brightness, patch_counts=counts)


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


def add_image_noise(noise: ImageNoise, images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """``images`` ((H, W, 3) float in [0, 1]) with ``noise`` added, drawn from a generator seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    noisy = []
    with torch.no_grad():
        for image in images:
            clean = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
            white = torch.randn(1, 3, clean.shape[2] + PATCH - 1, clean.shape[3] + PATCH - 1, generator=generator)
            clean = clean.to(noise.gains.device)  # where the module is (a training's flow may be on a GPU)
            noisy.append((clean + noise(clean, white))[0].permute(1, 2, 0).cpu().numpy())
    return noisy


def spread_evenly(images: list[np.ndarray], count: int) -> list[np.ndarray]:
    """At most ``count`` of ``images``, evenly spread over the list (all of them when there are fewer)."""
    step = max(1, len(images) / count)
    return [images[int(i * step)] for i in range(min(len(images), count))]


class ImageNoise(nn.Module):
    """Brightness-dependent, spatially and cross-channel correlated Gaussian noise (buffers from ``estimate_noise``).

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
        along_axes = F.conv2d(white, self.kernels.to(clean_lr.dtype), groups=channels)
        along_axes = along_axes * self.local_gains(clean_lr)
        return torch.einsum("ij,bjhw->bihw", self.axes.to(clean_lr.dtype), along_axes)
