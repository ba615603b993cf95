"""The SR stage's config: one dataclass per YAML section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from unpaired_sr.common.config import CropDataConfig, TrainLoopConfig
from unpaired_sr.data_tools.degrade_classical import PRESETS

# Where the training pairs come from: a paired folder, the learned flow, or a classical preset.
PAIR_SOURCES = ("pairs", "flow")


@dataclass
class SRDataConfig(CropDataConfig):
    RANGES: ClassVar[dict[str, str]] = {
        "temperature": ">= 0",
        "degradation": "{" + ", ".join((*PAIR_SOURCES, *PRESETS)) + "}",
    }

    hr_dir: str = ""  # HR photos
    degradation: str = "bicubic"  # where the LQ of each pair comes from: a folder, the flow, or a classical preset
    lq_dir: str = ""  # with degradation=pairs: LQ images named like the HR ones
    flow_ckpt: str = ""  # with degradation=flow: a trained degradation flow
    temperature: float = 1.0  # with degradation=flow
    val_lr_dir: str = ""  # optional paired validation set
    val_hr_dir: str = ""


@dataclass
class SRModelConfig:
    RANGES: ClassVar[dict[str, str]] = {
        "num_features": ">= 1",
        "num_layers": ">= 2",
    }

    form: Literal["pre_upsample", "post_upsample"] = "post_upsample"
    num_features: int = 64
    num_layers: int = 20
    norm: Literal["none", "batch", "instance"] = "none"


@dataclass
class SRTrainConfig(TrainLoopConfig):
    RANGES: ClassVar[dict[str, str]] = {
        "lpips_weight": ">= 0",
        "ema_decay": "[0, 1)",
        "val_every": ">= 1",
    }

    grad_clip: float = 50.0  # CycleSR's grad_clip
    lpips_weight: float = 0.0  # adds an LPIPS loss (needs the AlexNet weights, see README)
    ema_decay: float = 0.999
    val_every: int = 1000
    channels_last: bool = True  # NHWC activations on CUDA (faster convolutions with bf16/TF32)


@dataclass
class SRConfig:
    data: SRDataConfig = field(default_factory=SRDataConfig)
    model: SRModelConfig = field(default_factory=SRModelConfig)
    train: SRTrainConfig = field(default_factory=SRTrainConfig)
