"""The whole pipeline's config (``configs/joint.yaml``): data, both models, and one train section per stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from unpaired_sr.common.config import CropDataConfig, TrainLoopConfig
from unpaired_sr.degradation.config import FlowConfig, FlowDataConfig, FlowModelConfig, FlowTrainConfig
from unpaired_sr.sr.config import SRConfig, SRDataConfig, SRModelConfig, SRTrainConfig


@dataclass
class PipelineDataConfig(CropDataConfig):
    clean_dir: str = ""  # clean HR photos
    real_dir: str = ""  # real LR images (unpaired)
    val_lr_dir: str = ""  # optional paired validation set
    val_hr_dir: str = ""


@dataclass
class JointTrainConfig(TrainLoopConfig):
    """Stage 3. ``lr`` is the SR network's learning rate, ``flow_lr`` the flow's (CycleSR: 1e-4 and 2e-4)."""

    RANGES: ClassVar[dict[str, str]] = {
        "flow_lr": "> 0",
        "shift_lr_mult": "> 0",
        "cycle_sr_weight": ">= 0",
        "nll_weight": ">= 0",
        "content_penalty": ">= 0",
        "temperature": ">= 0",
        "ema_decay": "[0, 1)",
        "val_every": ">= 1",
        "sample_every": ">= 1",
        "adv_weight": ">= 0",
        "adv_high_pass_sigma": "> 0",
        "adv_width": ">= 1",
        "adv_lr": "> 0",
    }

    n_iter: int = 5000
    lr: float = 1e-4
    flow_lr: float = 2e-4
    shift_lr_mult: float = 10.0
    grad_clip: float = 50.0  # CycleSR's grad_clip, for both networks
    cycle_sr_weight: float = 10.0  # SR loss in the flow's loss (CycleSR's cycleSR_lam); 0: none (README: joint)
    nll_weight: float = 1.0  # weight of the flow's own likelihood loss (both domains)
    content_penalty: float = 0.01
    temperature: float = 1.0
    ema_decay: float = 0.999
    val_every: int = 1000
    sample_every: int = 1000
    channels_last: bool = True  # the SR network's activations NHWC on CUDA
    # A patch discriminator between the synthesized LQ and real LR crops (degradation/adversarial.py)
    # holds the samples in the real domain while the SR loss pulls on the flow; adv_weight 0: none.
    adv_weight: float = 0.0
    adv_high_pass_sigma: float = 4.0  # it sees the detail above a Gaussian low-pass of this sigma (LR px)
    adv_width: int = 32
    adv_lr: float = 2.0e-4


@dataclass
class PipelineConfig:
    data: PipelineDataConfig = field(default_factory=PipelineDataConfig)
    flow: FlowModelConfig = field(default_factory=FlowModelConfig)
    sr: SRModelConfig = field(default_factory=SRModelConfig)
    flow_train: FlowTrainConfig = field(default_factory=FlowTrainConfig)
    sr_train: SRTrainConfig = field(default_factory=SRTrainConfig)
    train: JointTrainConfig = field(default_factory=JointTrainConfig)


def flow_stage_config(config: PipelineConfig) -> FlowConfig:
    data = config.data
    return FlowConfig(
        data=FlowDataConfig(
            clean_dir=data.clean_dir,
            real_dir=data.real_dir,
            scale=data.scale,
            crop_size=data.crop_size,
            num_workers=data.num_workers,
            seed=data.seed,
            storage=data.storage,
        ),
        model=config.flow,
        train=config.flow_train,
    )


def sr_stage_config(config: PipelineConfig, flow_ckpt: str) -> SRConfig:
    data = config.data
    sr_data = SRDataConfig(
        hr_dir=data.clean_dir,
        degradation="flow",
        flow_ckpt=flow_ckpt,
        temperature=config.train.temperature,
        scale=data.scale,
        crop_size=data.crop_size,
        num_workers=data.num_workers,
        seed=data.seed,
        storage=data.storage,
        val_lr_dir=data.val_lr_dir,
        val_hr_dir=data.val_hr_dir,
    )
    return SRConfig(data=sr_data, model=config.sr, train=config.sr_train)
