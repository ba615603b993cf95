"""Building a flow from its config and loading a trained one from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from unpaired_sr.common.checkpoint import load_network, load_weights
from unpaired_sr.degradation.config import FlowConfig, FlowModelConfig
from unpaired_sr.degradation.flow import DegradationFlow


def build_flow(model: FlowModelConfig, seed: int = 0) -> DegradationFlow:
    return DegradationFlow(
        num_levels=model.num_levels,
        num_steps=model.num_steps,
        hidden_channels=model.hidden_channels,
        cond_channels=model.cond_channels,
        cond_blocks=model.cond_blocks,
        scale_bound=model.scale_bound,
        conditional_shift=model.conditional_shift,
        cond_noise=model.cond_noise,
        keep_low_pass_sigma=model.keep_low_pass_sigma,
        sees_image=model.sees_image,
        clean_only_flow=model.clean_only_flow,
        sample_latent_shift=model.sample_latent_shift,
        seed=seed,
    )


def load_flow(path: str | Path, device: torch.device | str = "cpu") -> tuple[DegradationFlow, FlowConfig]:
    """A trained flow (in eval mode, on ``device``) and its config, from a flow or joint checkpoint (or export)."""
    saved, config = load_network(path, "flow", FlowConfig, "flow")
    flow = build_flow(config.model)
    load_weights(flow, saved["model"], path, "flow")
    # Channels-last is oneDNN's faster layout for the flow's small convolutions: synthesis 1.6x on the CPU
    # (README: speed). CUDA keeps the default layout, not yet measured for the flow.
    layout = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
    return flow.to(device, memory_format=layout).eval(), config
