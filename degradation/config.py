"""The degradation flow's config: one dataclass per YAML section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class FlowDataConfig:
    clean_dir: str = ""  # clean HR photos; bicubic-downscaled on the fly to clean LR
    real_dir: str = ""  # real LR images (unpaired)
    scale: int = 4
    crop_size: int = 32  # LR crop size; the HR crop is crop_size * scale
    num_workers: int = 2
    seed: int = 0


@dataclass
class FlowModelConfig:
    num_levels: int = 2
    num_steps: int = 8
    hidden_channels: int = 80
    cond_channels: int = 32
    cond_blocks: int = 2
    scale_bound: float = 1.0
    dequant_bins: int = 64  # uniform dequantization of width 1 / dequant_bins
    conditional_shift: bool = False  # let the shift depend on local content (an ablation: see README)


@dataclass
class FlowTrainConfig:
    n_iter: int = 30000
    batch_size: int = 16
    lr: float = 2e-4
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_iter: int = 200
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    grad_clip: float = 10.0
    content_penalty: float = 0.01  # pulls the domain shift's content scale a towards 1
    shift_lr_mult: float = 10.0  # the domain shift's few global statistics learn this much faster
    save_every: int = 1000
    log_every: int = 100
    sample_every: int = 2000
    keep_last: int = 3
    max_bad_steps: int = 20
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # bf16 autocast for the coupling subnets (CUDA only)


@dataclass
class FlowConfig:
    data: FlowDataConfig = field(default_factory=FlowDataConfig)
    model: FlowModelConfig = field(default_factory=FlowModelConfig)
    train: FlowTrainConfig = field(default_factory=FlowTrainConfig)
