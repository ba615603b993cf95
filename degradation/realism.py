"""How realistic are synthesized LR images? Statistics with and without ground truth.

With an oracle (a benchmark that knows the true degradation of the clean
photos), residuals ``lr - clean_lr`` of synthesized and true LR images of the
*same* photos are compared: per channel, per region of brightness and
texture, at several spatial lags, in luma and chroma, and as a Frechet
distance between Gaussian fits of 8x8x3 residual patches.

Without one (a user's own data), a small CNN is trained to tell real LR crops
from synthesized LR crops of *other* photos, and its accuracy on held-out
images says how distinguishable the two are: 50% is indistinguishable, 100%
is plainly different. It looks at what a degradation changes, the detail
above a low-pass (``high_pass``), plus the local brightness, so that scene
content (which differs between unpaired sets) tells it as little as possible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unpaired_sr.common.filters import gaussian_blur
from unpaired_sr.common.image_io import RGB_TO_YCBCR

PATCH = 8
LUMA_BIN_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)
TEXTURE_NAMES = ("flat", "medium", "textured")


# ----------------------------------------------------------------------------- residual statistics


def luma(image: np.ndarray) -> np.ndarray:
    return image @ RGB_TO_YCBCR[0]


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the luma of an (H, W, 3) image, lightly smoothed: local texture."""
    y = luma(image).astype(np.float32)
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    return cv2.GaussianBlur(np.sqrt(gx**2 + gy**2), (0, 0), 1.0)


@dataclass
class RegionMap:
    """Per-pixel region labels of a set of clean LR images: brightness bin x texture tercile."""

    labels: list[np.ndarray]  # (H, W) int: luma_bin * 3 + texture_bin
    texture_edges: tuple[float, float]

    @classmethod
    def of(cls, clean_lr: list[np.ndarray]) -> RegionMap:
        gradients = [gradient_magnitude(image) for image in clean_lr]
        edges = tuple(np.quantile(np.concatenate([g.ravel() for g in gradients]), [1 / 3, 2 / 3]).tolist())
        labels = []
        for image, gradient in zip(clean_lr, gradients):
            luma_bin = np.clip(np.digitize(luma(image), LUMA_BIN_EDGES) - 1, 0, len(LUMA_BIN_EDGES) - 2)
            labels.append(luma_bin * 3 + np.digitize(gradient, edges))
        return cls(labels, edges)

    @staticmethod
    def name(label: int) -> str:
        low, high = LUMA_BIN_EDGES[label // 3], min(1.0, LUMA_BIN_EDGES[label // 3 + 1])
        return f"luma {low:.1f}-{high:.1f} {TEXTURE_NAMES[label % 3]}"


def region_std(residuals: list[np.ndarray], regions: RegionMap, min_pixels: int = 200) -> dict[int, list[float]]:
    """Residual std per channel in each region with at least ``min_pixels`` pixels."""
    labels = np.concatenate([label.ravel() for label in regions.labels])
    values = np.concatenate([r.reshape(-1, 3) for r in residuals])
    return {
        int(label): values[labels == label].std(axis=0).tolist()
        for label in np.unique(labels)
        if (labels == label).sum() >= min_pixels
    }


def autocorrelation(residuals: list[np.ndarray], lag: int, masks: list[np.ndarray] | None = None) -> float:
    """Mean of the horizontal and vertical autocorrelation at ``lag`` pixels (channels pooled); with ``masks``
    ((H, W) bool per residual), over the pairs of pixels both in their mask only."""
    pairs = []
    for index, r in enumerate(residuals):
        for first, second in (
            ((slice(None), slice(None, -lag)), (slice(None), slice(lag, None))),
            ((slice(None, -lag), slice(None)), (slice(lag, None), slice(None))),
        ):
            both = slice(None) if masks is None else masks[index][first] & masks[index][second]
            pairs.append(np.stack([r[first][both].ravel(), r[second][both].ravel()]))
    joined = np.concatenate(pairs, axis=1)
    if joined.std(axis=1).min() < 1e-12:
        return 0.0
    return float(np.corrcoef(joined)[0, 1])


def residual_statistics(residuals: list[np.ndarray]) -> dict[str, float | list[float]]:
    """Whole-set statistics of (H, W, 3) residuals in [0, 1] units.

    ``mean`` and ``std`` per channel, mean cross-channel correlation,
    autocorrelation at lags 1-4, and the share of the residual energy in luma.
    """
    pixels = np.concatenate([r.reshape(-1, 3) for r in residuals]).astype(np.float64)
    std = pixels.std(axis=0)
    stats: dict[str, float | list[float]] = {"mean": pixels.mean(axis=0).tolist(), "std": std.tolist()}
    if np.all(std < 1e-8):
        return stats | {"cross_channel_corr": 0.0, "autocorr": [0.0] * 4, "luma_energy_share": 0.0}
    corr = np.corrcoef(pixels.T)
    stats["cross_channel_corr"] = float(np.nanmean([corr[0, 1], corr[0, 2], corr[1, 2]]))
    stats["autocorr"] = [autocorrelation(residuals, lag) for lag in (1, 2, 3, 4)]
    energy = ((pixels @ RGB_TO_YCBCR.T) ** 2).mean(axis=0)
    stats["luma_energy_share"] = float(energy[0] / energy.sum())
    return stats


def patches(residuals: list[np.ndarray], stride: int = 4) -> np.ndarray:
    """All 8x8x3 patches (stride 4) as rows of 192 values."""
    rows = []
    for r in residuals:
        windows = np.lib.stride_tricks.sliding_window_view(r, (PATCH, PATCH, 3))[::stride, ::stride, 0]
        rows.append(windows.reshape(-1, PATCH * PATCH * 3))
    return np.concatenate(rows).astype(np.float64)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two sets of row vectors (in 0-255 units squared).

    ``|mu_a - mu_b|^2 + Tr(A + B - 2 (A^1/2 B A^1/2)^1/2)``: the symmetric form is exact for
    covariance matrices and stays well defined when one of them is singular (no degradation).
    """
    a, b = a * 255.0, b * 255.0
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


# ----------------------------------------------------------------------------- two-sample classifier


def high_pass(images: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 4, H, W): the detail above a Gaussian low-pass (3 channels) and the low-pass luma."""
    low = gaussian_blur(images, sigma)
    weights = torch.tensor(RGB_TO_YCBCR[0], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    # Detail is a few levels in size: x10 brings it to the scale of the centred luma for the first conv.
    return torch.cat([(images - low) * 10, (low * weights).sum(dim=1, keepdim=True) - 0.5], dim=1)


class TwoSampleClassifier(nn.Module):
    """A small CNN: (B, 3, H, W) LR crops -> logit of "real". One full-resolution layer sees single pixels."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(4 * width, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(high_pass(images)).mean(dim=(2, 3))).squeeze(1)


def random_crops(images: list[np.ndarray], count: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` random ``size`` crops (random image, position, flip/rotation) as (count, 3, size, size)."""
    crops = []
    for _ in range(count):
        image = images[rng.integers(len(images))]
        top = rng.integers(image.shape[0] - size + 1)
        left = rng.integers(image.shape[1] - size + 1)
        crop = np.rot90(image[top : top + size, left : left + size], k=int(rng.integers(4)))
        crops.append(crop[:, ::-1] if rng.integers(2) else crop)
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops)).transpose(0, 3, 1, 2).astype(np.float32))


def photo_group(name: str) -> str:
    """The photo a file comes from: its name without a tile suffix (``_t003``, ``_s012``)."""
    return re.sub(r"_[ts]\d+$", "", name)


def split_half(
    images: list[np.ndarray], groups: list[str] | None, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Halves by group (tiles of one photo stay together, so the test half shows unseen scenes)."""
    groups = groups or [str(i) for i in range(len(images))]
    if len(groups) != len(images):
        raise ValueError(f"{len(groups)} group names for {len(images)} images")
    names = sorted(set(groups))
    if len(names) < 2:
        names, groups = [str(i) for i in range(len(images))], [str(i) for i in range(len(images))]
    chosen = {names[i] for i in rng.permutation(len(names))[: (len(names) + 1) // 2]}
    train = [image for image, group in zip(images, groups) if group in chosen]
    test = [image for image, group in zip(images, groups) if group not in chosen]
    return train, test


def two_sample_accuracy(
    real: list[np.ndarray],
    synthesized: list[np.ndarray],
    crop_size: int = 32,
    steps: int = 300,
    batch_size: int = 16,
    test_crops: int = 512,
    seed: int = 0,
    real_groups: list[str] | None = None,
    synthesized_groups: list[str] | None = None,
    splits: int = 1,
) -> dict[str, float | list[float]]:
    """Train the classifier on half of the images of each set; its accuracy on crops of the other half.

    With ``*_groups`` (one photo name per image, e.g. from ``photo_group``),
    the halves are split by photo, so the test measures the degradation on
    scenes the classifier has not seen rather than how well it remembers them.
    With few photos, which ones land in which half sways the accuracy by more
    than the degradation does (the benchmarks' 4-5 photos a set: 26-75% for
    one pair of sets over five splits), so ``splits`` > 1 repeats the test on
    that many random splits (seeds ``seed``, ``seed + 1``, ...) and averages.

    Images are (H, W, 3) float arrays in [0, 1], at least ``crop_size`` in size;
    each set needs at least 2 images. Returns ``accuracy`` (on a balanced set of
    ``2 * test_crops`` held-out crops per split, averaged over the splits), its
    standard error (binomial for one split, else from the spread over the
    splits), ``split_accuracies``, and the training accuracy of the last 50
    steps (near 50% there: the classifier found nothing to learn, not that it
    failed to generalize).
    """
    for what, images in (("real", real), ("synthesized", synthesized)):
        if len(images) < 2:
            raise ValueError(f"the two-sample test needs at least 2 {what} images, got {len(images)}")
        small = [image.shape for image in images if min(image.shape[:2]) < crop_size]
        if small:
            raise ValueError(f"{what} images must be at least {crop_size} px, one is {small[0][1]}x{small[0][0]}")
    if splits < 1:
        raise ValueError(f"splits must be at least 1, got {splits}")
    runs = [
        _one_split(
            real, synthesized, crop_size, steps, batch_size, test_crops, seed + k, real_groups, synthesized_groups
        )
        for k in range(splits)
    ]
    accuracies = [run[0] for run in runs]
    accuracy = float(np.mean(accuracies))
    if splits == 1:
        stderr = float(np.sqrt(accuracy * (1 - accuracy) / (2 * test_crops)))
    else:
        stderr = float(np.std(accuracies, ddof=1) / np.sqrt(splits))
    return {
        "accuracy": accuracy,
        "stderr": stderr,
        "split_accuracies": accuracies,
        "train_accuracy": float(np.mean([run[1] for run in runs])),
    }


def _one_split(
    real: list[np.ndarray],
    synthesized: list[np.ndarray],
    crop_size: int,
    steps: int,
    batch_size: int,
    test_crops: int,
    seed: int,
    real_groups: list[str] | None,
    synthesized_groups: list[str] | None,
) -> tuple[float, float]:
    """One split of ``two_sample_accuracy``: (test accuracy, training accuracy of the last 50 steps)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    real_train, real_test = split_half(real, real_groups, rng)
    synth_train, synth_test = split_half(synthesized, synthesized_groups, rng)
    classifier = TwoSampleClassifier()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3)
    labels = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)])
    recent = []
    for _ in range(steps):
        batch = torch.cat(
            [
                random_crops(real_train, batch_size, crop_size, rng),
                random_crops(synth_train, batch_size, crop_size, rng),
            ]
        )
        logits = classifier(batch)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent = (recent + [((logits > 0).float() == labels).float().mean().item()])[-50:]
    classifier.eval()
    correct = 0
    with torch.no_grad():
        for images, label in ((real_test, 1.0), (synth_test, 0.0)):
            crops = random_crops(images, test_crops, crop_size, rng)
            predictions = torch.cat([classifier(chunk) > 0 for chunk in crops.split(256)])
            correct += int((predictions.float() == label).sum())
    return correct / (2 * test_crops), float(np.mean(recent))


# ----------------------------------------------------------------------------- latent space


@torch.no_grad()
def latent_check(
    flow, clean_lr: list[torch.Tensor], real_lr: list[torch.Tensor], num_bins: int, seed: int = 0
) -> list[dict[str, float]]:
    """Do encoded images fit the distributions the flow assumes? One row per level.

    Clean LR latents should be N(0, I): ``clean_mean`` ~ 0, ``clean_std`` ~ 1.
    Real LR latents should fit the learned real-domain Gaussian: the squared
    Mahalanobis distance per position over the channels C is ~ 1 on average
    (``real_mahalanobis_per_dim``), and ``real_outside_99`` ~ 1% of positions
    lie beyond the chi-square 99th percentile. Larger values mean real latents
    the shift does not cover; decoding such latents is what produces speckles.
    Images are (3, H, W) tensors whose sizes are multiples of ``flow.size_multiple``,
    dequantized with ``num_bins`` as in training (without it latents look too narrow).
    """
    from scipy.stats import chi2

    from unpaired_sr.degradation.flow import dequantize

    generator = torch.Generator().manual_seed(seed)
    noisy = lambda image: dequantize(image, num_bins, torch.rand(image.shape, generator=generator) - 0.5)  # noqa: E731
    clean_lr, real_lr = [noisy(image) for image in clean_lr], [noisy(image) for image in real_lr]
    device = next(flow.parameters()).device
    clean_latents: list[list[torch.Tensor]] = [[] for _ in flow.levels]
    distances: list[list[torch.Tensor]] = [[] for _ in flow.levels]
    for image in clean_lr:
        latents, _ = flow.encode(image[None].to(device))
        for level, eps in enumerate(latents):
            clean_latents[level].append(eps.flatten().cpu())
    for image in real_lr:
        batch = image[None].to(device)
        cond = flow.condition(batch)
        latents, _ = flow.encode(batch, cond)
        for level, (shift, eps, level_cond) in enumerate(zip(flow.shift.levels, latents, cond)):
            distances[level].append(shift.mahalanobis(eps, level_cond if shift.local is not None else None).cpu())
    rows = []
    for level, channels in enumerate(flow.level_channels):
        clean = torch.cat(clean_latents[level]).double()
        distance = torch.cat(distances[level])
        rows.append(
            {
                "level": level,
                "channels": channels,
                "clean_mean": clean.mean().item(),
                "clean_std": clean.std().item(),
                "real_mahalanobis_per_dim": (distance.mean() / channels).item(),
                "real_outside_99": (distance > chi2.ppf(0.99, channels)).double().mean().item(),
            }
        )
    return rows
