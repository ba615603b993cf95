"""The flow's sample grid for TensorBoard and run folders: clean LR, samples at three temperatures, real LR."""

from __future__ import annotations

import numpy as np
import torch

from unpaired_sr.common.figures import grid, upscale_nearest
from unpaired_sr.degradation.flow import DegradationFlow

SAMPLE_TEMPERATURES = (0.5, 0.8, 1.0)


@torch.no_grad()
def sample_figure(flow: DegradationFlow, clean_lr: torch.Tensor, real_lr: torch.Tensor, seed: int = 0) -> np.ndarray:
    """Rows of: clean LR | synthesized at 0.5 / 0.8 / 1.0 | an (unpaired) real LR crop, 4x nearest."""
    was_training = flow.training
    flow.eval()
    count = min(4, clean_lr.shape[0])
    clean, real = clean_lr[:count], real_lr[:count]
    generator = torch.Generator().manual_seed(seed)
    noise = flow.sample_noise(count, *clean.shape[2:], generator=generator, device=clean.device)
    seeds = [seed + index for index in range(count)]  # the compression's qualities, as SR training draws them
    synthesized = [flow.synthesize(*flow.degrade_parts(clean, noise, t, seeds), seeds) for t in SAMPLE_TEMPERATURES]
    flow.train(was_training)
    to_image = lambda t: upscale_nearest(t.permute(1, 2, 0).float().cpu().numpy(), 4)
    rows = [[to_image(clean[i]), *(to_image(s[i]) for s in synthesized), to_image(real[i])] for i in range(count)]
    titles = ["clean LR", *(f"T={t}" for t in SAMPLE_TEMPERATURES), "real LR (unpaired)"]
    return grid(rows, titles)
