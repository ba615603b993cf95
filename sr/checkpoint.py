"""Building the SR network from its config and loading a trained one."""

from __future__ import annotations

from pathlib import Path

import torch

from unpaired_sr.common.checkpoint import load_network, load_weights
from unpaired_sr.sr.config import SRConfig, SRModelConfig
from unpaired_sr.sr.model import VDSR


def build_sr(model: SRModelConfig, scale: int) -> VDSR:
    return VDSR(
        scale=scale, form=model.form, num_features=model.num_features, num_layers=model.num_layers, norm=model.norm
    )


def load_sr(path: str | Path, device: torch.device | str = "cpu") -> tuple[VDSR, SRConfig]:
    """A trained SR network (EMA weights, eval mode) and its config, from an SR or joint checkpoint (or export)."""
    saved, config = load_network(path, "sr", SRConfig, "SR network")
    model = build_sr(config.model, config.data.scale)
    load_weights(model, saved.get("ema") or saved["model"], path, "SR network")
    return model.to(device).eval(), config
