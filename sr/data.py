"""Where the SR network's (LQ, HR) training pairs come from.

* ``pairs``: a folder of LQ images matched by name with the HR folder;
* ``flow``: HR crops degraded on the training device by a trained flow, with
  fresh noise every step (per-sample seeds, so a run is reproducible);
* a classical preset of ``data_tools.degrade_classical`` (``bicubic``,
  ``noise_jpeg``, ``realesrgan``, ``camera``), applied in the DataLoader workers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from unpaired_sr.common.image_io import image_to_tensor, to_float32
from unpaired_sr.common.seeds import derived_seed
from unpaired_sr.data_tools.datasets import ImageFolderCache, random_crop
from unpaired_sr.data_tools.degrade_classical import degrade
from unpaired_sr.degradation.flow import DegradationFlow


class DegradedCrops(Dataset):
    """``{"lq", "hr"}``: HR crops degraded by a classical preset, each sample seeded by ``(seed, index)``."""

    def __init__(
        self, hr: ImageFolderCache, lr_crop_size: int, scale: int, preset: str, seed: int = 0, augment: bool = True
    ):
        self.hr, self.hr_crop_size, self.scale = hr, lr_crop_size * scale, scale
        self.preset, self.seed, self.augment = preset, seed, augment

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        crop = random_crop(self.hr, self.hr_crop_size, rng, self.augment)
        hr = to_float32(np.ascontiguousarray(crop))
        lq = degrade(hr, self.scale, self.preset, rng)
        lq = np.round(np.clip(lq, 0, 1) * 255) / 255  # stored LR images are 8-bit
        return {"lq": image_to_tensor(lq.astype(np.float32)), "hr": image_to_tensor(hr)}


def noise_seed(seed: int, sample_index: int) -> int:
    """The latent-noise seed of one training sample."""
    return derived_seed(seed, 0x5EED, sample_index)


def flow_degrade(
    flow: DegradationFlow, hr: torch.Tensor, scale: int, temperature: float, seeds: list[int]
) -> torch.Tensor:
    """HR batch -> flow-synthesized LQ batch on the same device, 8-bit like a stored image.

    Sample ``i`` uses latent noise from ``torch.Generator().manual_seed(seeds[i])``,
    exactly as ``degradation.synthesize.degrade_image`` does for one image, so
    both give the same LQ for the same seed. Differentiable in the flow's
    parameters (the rounding passes gradients straight through).
    """
    clean_lr = flow.downscale(hr, scale, seeds)  # bicubic, or decimated where the real images alias
    height, width = clean_lr.shape[2:]
    per_sample = [flow.sample_noise(1, height, width, torch.Generator().manual_seed(s)) for s in seeds]
    noise = [torch.cat(level).to(hr.device, non_blocking=True) for level in zip(*per_sample)]
    return flow.synthesize(*flow.degrade_parts(clean_lr, noise, temperature, seeds), seeds)
