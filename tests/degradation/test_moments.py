"""Detail statistics per content region: zero for the real images themselves, large for the wrong noise."""

from __future__ import annotations

import torch

from tests.conftest import real_photo
from unpaired_sr.common.image_io import image_to_tensor
from unpaired_sr.degradation.moments import DetailMoments, content_bins


def crops(name: str, noise: float, seed: int, correlated: bool = False) -> torch.Tensor:
    photo = image_to_tensor(real_photo(name, 128)).unfold(1, 32, 32).unfold(2, 32, 32)
    photo = photo.permute(1, 2, 0, 3, 4).reshape(-1, 3, 32, 32)
    generator = torch.Generator().manual_seed(seed)
    grain = torch.randn(photo.shape, generator=generator) * noise
    if correlated:  # the same noise energy, spread over 2x2 blocks
        grain = torch.nn.functional.interpolate(grain[:, :, ::2, ::2], scale_factor=2, mode="nearest")
    return (photo + grain).clamp(0, 1)


def test_the_real_images_score_zero_and_the_wrong_noise_scores_high():
    critic = DetailMoments()
    real = crops("coffee", 12 / 255, seed=0)
    critic.update(real)
    assert float(critic(real)) < 1e-6
    same_kind = float(critic(crops("coffee", 12 / 255, seed=1)))
    clean = float(critic(crops("coffee", 0.0, seed=1)))
    blotchy = float(critic(crops("coffee", 12 / 255, seed=1, correlated=True)))
    too_strong = float(critic(crops("coffee", 30 / 255, seed=1)))
    assert same_kind < 0.05
    assert min(clean, blotchy, too_strong) > 10 * same_kind


def test_bins_follow_content_not_noise():
    clean = crops("astronaut", 0.0, seed=0)
    noisy = crops("astronaut", 10 / 255, seed=0)
    threshold = torch.tensor(0.02)
    agreement = (content_bins(clean, threshold) == content_bins(noisy, threshold)).float().mean()
    assert agreement > 0.8


def test_the_gradient_reaches_the_samples():
    critic = DetailMoments()
    critic.update(crops("coffee", 12 / 255, seed=0))
    samples = crops("coffee", 0.0, seed=1).requires_grad_(True)
    critic(samples).backward()
    assert samples.grad is not None and samples.grad.abs().sum() > 0


def test_flat_only_ignores_the_textured_regions():
    critic = DetailMoments(flat_only=True)
    real = crops("coffee", 12 / 255, seed=0)
    critic.update(real)
    samples = real.clone()
    textured = content_bins(samples, critic.texture_threshold) % 2 == 1
    noisier = samples + 0.2 * torch.randn(samples.shape, generator=torch.Generator().manual_seed(3)) * textured[:, None]
    assert float(critic(noisier)) < float(_all_bins(critic)(noisier))


def _all_bins(critic: DetailMoments) -> DetailMoments:
    everything = DetailMoments()
    everything.load_state_dict(critic.state_dict())
    return everything
