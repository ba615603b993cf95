"""Building the SR network from its config and loading a trained one."""

from __future__ import annotations

from pathlib import Path

import torch

from common.checkpoint import JOINT_KIND, SR_KIND, load_checkpoint, load_weights, network_state
from common.config import config_from_dict
from common.errors import ConfigError, UserError
from sr.config import SRConfig, SRModelConfig
from sr.model import VDSR


def build_sr(model: SRModelConfig, scale: int) -> VDSR:
    return VDSR(
        scale=scale, form=model.form, num_features=model.num_features, num_layers=model.num_layers, norm=model.norm
    )


def load_sr(path: str | Path, device: torch.device | str = "cpu") -> tuple[VDSR, SRConfig]:
    """A trained SR network (EMA weights, eval mode) and its config, from an SR or joint checkpoint (or export)."""
    saved = network_state(load_checkpoint(path, (SR_KIND, JOINT_KIND)), "sr")
    try:
        config = config_from_dict(SRConfig, saved["config"])
    except ConfigError as error:
        raise UserError(f"{path}: its config does not fit this version of the SR network ({error})") from error
    model = build_sr(config.model, config.data.scale)
    weights = saved.get("ema") or saved["model"]
    if "input_offset" not in weights:  # saved before the network centred its input
        weights = {**weights, "input_offset": torch.tensor(0.0)}
    load_weights(model, weights, path, "SR network")
    return model.to(device).eval(), config
