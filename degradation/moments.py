"""Detail statistics per content region: a fixed, cheap critic of the flow's samples.

The discriminator of ``degradation.adversarial`` learns what tells real crops
from synthesized ones, and with two *unpaired* photo sets that includes how
their scenes differ: more texture in one set reads as "more detail", and the
flow is pushed to add noise to make up for it. What identifies a degradation
from unpaired data is how its detail depends on content: in flat areas of a
real image the detail *is* the noise; in textured ones it is texture plus
noise; in dark areas a camera's noise differs from its noise in bright ones.

So the samples are compared region by region: pixels are binned by the local
brightness and the local texture of a blurred version of the image (blurred
enough that noise hardly moves a pixel between bins), and in each bin three
bands of detail (the image minus a sigma-1 blur; sigma 1 to 3, where blotchy
chroma noise lives; sigma 3 to 8, so that no scale that ``keep_low_pass_sigma``
lets the flow change goes unwatched) are summarised by their per-channel energy,
their cross-channel correlations and their lag-1 autocorrelations. The
critic's loss is the distance between the samples' statistics and a running
average of the real images' statistics (log ratio for energies, difference
for correlations), weighted by each bin's share of pixels. Fixed features,
no adversary: it cannot learn set differences beyond these statistics, and it
does not oscillate (feature matching, Salimans et al. 2016, with hand-chosen
features).
"""

from __future__ import annotations

import torch
from torch import nn

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import LUMA_WEIGHTS

LUMA_EDGES = (0.3, 0.6)  # dark / middle / bright
CONTENT_SIGMA = 2.0  # blur before binning: noise of 15/255 moves the blurred luma by ~2/255
BAND_SIGMAS = (1.0, 3.0, 8.0)  # bands: above 1, 1 to 3, 3 to 8 (keep_low_pass_sigma's usual scale)
MIN_SHARE = 0.02  # bins with fewer pixels than this share of the batch are left out
EPS = 1e-6


def content_bins(images: torch.Tensor, texture_threshold: torch.Tensor | float) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H, W) bin index in [0, 6): 3 brightness bins x {flat, textured}."""
    weights = torch.as_tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    luma = (gaussian_blur(images, CONTENT_SIGMA) * weights).sum(dim=1)
    brightness = (luma > LUMA_EDGES[0]).long() + (luma > LUMA_EDGES[1]).long()
    return brightness * 2 + (texture(luma) > texture_threshold).long()


def texture(luma: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of a (B, H, W) luma map (central differences, edges replicated)."""
    padded = torch.nn.functional.pad(luma[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dx = padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]
    dy = padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    return torch.sqrt(dx**2 + dy**2 + EPS)


def detail_bands(images: torch.Tensor) -> list[torch.Tensor]:
    low = [images] + [gaussian_blur(images, sigma) for sigma in BAND_SIGMAS]
    return [finer - coarser for finer, coarser in zip(low[:-1], low[1:])]


def bin_statistics(images: torch.Tensor, bins: torch.Tensor, num_bins: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per band and bin: 3 channel energies, 3 cross-channel and 6 lag-1 (x, y per channel) correlations.

    Returns ``(stats (bands, bins, 12), share (bins,))``; energies are raw second moments, the
    correlations are normalised by them.
    """
    one_hot = torch.nn.functional.one_hot(bins, num_bins).permute(0, 3, 1, 2).to(images.dtype)  # (B, K, H, W)
    share = one_hot.mean(dim=(0, 2, 3))
    out = []
    for detail in detail_bands(images):

        def moment(product: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, H', W') -> (K,)
            return (product[:, None] * mask).sum(dim=(0, 2, 3)) / mask.sum(dim=(0, 2, 3)).clamp_min(1)

        energy = torch.stack([moment(detail[:, c] ** 2, one_hot) for c in range(3)], dim=1)  # (K, 3)
        cross = torch.stack(
            [moment(detail[:, i] * detail[:, j], one_hot) for i, j in ((0, 1), (0, 2), (1, 2))], dim=1
        ) / torch.sqrt(energy[:, [0, 0, 1]] * energy[:, [1, 2, 2]] + EPS)
        lag_x = torch.stack(
            [moment(detail[:, c, :, 1:] * detail[:, c, :, :-1], one_hot[:, :, :, 1:]) for c in range(3)], dim=1
        )
        lag_y = torch.stack([moment(detail[:, c, 1:] * detail[:, c, :-1], one_hot[:, :, 1:]) for c in range(3)], dim=1)
        lags = torch.cat([lag_x, lag_y], dim=1) / (energy.repeat(1, 2) + EPS)
        out.append(torch.cat([energy, cross, lags], dim=1))
    return torch.stack(out), share


class DetailMoments(nn.Module):
    """Keeps a running average of the real images' bin statistics; scores samples against it.

    Args:
        flat_only: score only the flat bins (below the real images' median texture), where
            detail is the degradation in any scene; textured bins also carry how the two sets'
            scenes differ (measured: README, fidelity section).
    """

    def __init__(self, momentum: float = 0.05, flat_only: bool = False):
        super().__init__()
        self.momentum, self.flat_only = momentum, flat_only
        self.register_buffer("real_stats", torch.zeros(len(BAND_SIGMAS), 6, 12))
        self.register_buffer("real_share", torch.zeros(6))
        self.register_buffer("texture_threshold", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, real_lr: torch.Tensor) -> None:
        """Fold a batch of real LR crops into the running statistics."""
        weights = torch.as_tensor(LUMA_WEIGHTS, dtype=real_lr.dtype, device=real_lr.device).view(1, 3, 1, 1)
        luma = (gaussian_blur(real_lr, CONTENT_SIGMA) * weights).sum(dim=1)
        rate = 1.0 if self.updates == 0 else self.momentum
        self.texture_threshold.lerp_(texture(luma).median().to(self.texture_threshold), rate)
        stats, share = bin_statistics(real_lr.float(), content_bins(real_lr, self.texture_threshold))
        present = share > 0
        self.real_stats[:, present] = torch.lerp(self.real_stats[:, present], stats[:, present], rate)
        self.real_share.lerp_(share, rate)
        self.updates += 1

    def forward(self, synthesized: torch.Tensor) -> torch.Tensor:
        """Distance of the samples' statistics from the real ones (0: identical)."""
        bins = content_bins(synthesized.detach(), self.texture_threshold)
        stats, share = bin_statistics(synthesized.float(), bins)
        used = (share >= MIN_SHARE) & (self.real_share >= MIN_SHARE)
        if self.flat_only:
            used = used & (torch.arange(len(used), device=used.device) % 2 == 0)  # even bins are the flat ones
        if not used.any():
            return synthesized.sum() * 0
        energy = (torch.log(stats[:, :, :3] + EPS) - torch.log(self.real_stats[:, :, :3] + EPS)) ** 2
        correlation = (stats[:, :, 3:] - self.real_stats[:, :, 3:]) ** 2
        per_bin = energy.sum(dim=2) + correlation.sum(dim=2)  # (bands, bins)
        weights = share * used
        return (per_bin * weights).sum() / weights.sum() / len(BAND_SIGMAS)
